#!/usr/bin/env bash
# The test command: install deps, build, start the throwaway test sshd, run every test, stop it.
# Extra arguments go to `swift test` (e.g. scripts/test.sh --filter SSHTests).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
start=$(date +%s)
swift build --build-tests
echo "test.sh: build took $(( $(date +%s) - start ))s"

# The CUDA kernels through NVRTC 12 and 13 for sm_80/sm_90 and ptxas (no GPU needed; wheels cached
# outside the clone). A kernel that does not compile fails the run; with CI=true a missing wheel too.
start=$(date +%s)
scripts/cuda-compile-check.sh
echo "test.sh: CUDA compile checks took $(( $(date +%s) - start ))s"

# The one-node Slurm cluster first: the test sshd is its login node (SLURM_CONF in its sessions).
# Without Slurm installed its tests skip, saying so; under CI=true a cluster that fails to start fails the run.
trap 'scripts/test-sshd.sh stop; scripts/test-slurm.sh stop' EXIT
if scripts/test-slurm.sh start; then
    eval "$(scripts/test-slurm.sh env)"
elif [ "${CI:-}" = true ]; then
    echo "test.sh: the test Slurm cluster did not start (CI=true)" >&2
    exit 1
else
    echo "test.sh: no test Slurm cluster (scripts/install-deps.sh installs slurm-wlm and munge); the Slurm tests skip" >&2
fi
# A fresh test sshd: one left running by an earlier `swift test` lacks this run's SLURM_CONF.
scripts/test-sshd.sh stop
scripts/test-sshd.sh start
eval "$(scripts/test-sshd.sh env)"

start=$(date +%s)
set +e
if [ $# -gt 0 ]; then
    swift test --skip-build "$@"
    status=$?
else
    # Three rounds: the engine's CPU-bound tests keep both cores (and both of Swift's cooperative
    # threads on a 2-core machine) busy for seconds at a time; the SSH, jobs and tunnel tests
    # measure time-outs, keepalives and reconnects, so they run on their own afterwards, with the
    # end-to-end tests of the commands over them (Tests/ferryTests suites named SSH*, Jobs*, Tunnels*);
    # last, the long jobs that would crowd those timings: the Slurm cluster's jobs, sweeps, time
    # limits and the 10,000-file transfers.
    network='^((SSHTests|JobsTests|TunnelsTests)\.|ferryTests\.(SSH|Jobs|Tunnels))'
    long='^(JobsTests\.TransferTests|ferryTests\.(JobsSlurm|JobsSweep|JobsTimeLimit))'
    swift test --skip-build --skip "$network"
    status=$?
    echo "test.sh: engine and CLI tests took $(( $(date +%s) - start ))s, exit status $status"
    round=$(date +%s)
    swift test --skip-build --filter "$network" --skip "$long"
    network_status=$?
    echo "test.sh: SSH, jobs and tunnel tests took $(( $(date +%s) - round ))s, exit status $network_status"
    [ $status -ne 0 ] || status=$network_status
    round=$(date +%s)
    swift test --skip-build --filter "$long"
    long_status=$?
    echo "test.sh: Slurm, sweep, time-limit and transfer tests took $(( $(date +%s) - round ))s, exit status $long_status"
    [ $status -ne 0 ] || status=$long_status
    # Last, accounting (sacct): the cluster restarted in its folder with slurmdbd and MariaDB (the
    # sshd's sessions keep their SLURM_CONF path) for the one suite that needs it; the rounds above
    # ran without accounting, the path most clusters' users see.
    if [ -n "${FERRY_TEST_SLURM_CONF:-}" ]; then
        round=$(date +%s)
        scripts/test-slurm.sh stop
        if FERRY_TEST_SLURM_ACCOUNTING=1 scripts/test-slurm.sh start; then
            eval "$(scripts/test-slurm.sh env)"
            swift test --skip-build --filter '^ferryTests\.JobsSlurmAccounting'
            accounting_status=$?
        elif [ "${CI:-}" = true ]; then
            echo "test.sh: the test cluster with accounting did not start (CI=true)" >&2
            accounting_status=1
        else
            echo "test.sh: no accounting (scripts/install-deps.sh installs slurmdbd and mariadb-server); its test skips" >&2
            accounting_status=0
        fi
        echo "test.sh: Slurm accounting tests took $(( $(date +%s) - round ))s, exit status $accounting_status"
        [ $status -ne 0 ] || status=$accounting_status
    fi
fi
set -e
echo "test.sh: tests took $(( $(date +%s) - start ))s, exit status $status"
exit $status
