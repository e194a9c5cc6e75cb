#!/usr/bin/env bash
# The main job: a Fashion-MNIST training job shipped through ferry's runner — on the embedded
# default `--host local`, then over SSH to a throwaway sshd on 127.0.0.1 when one can start (ferry
# installs itself there) — its log followed live, its progress shown, its best checkpoint fetched
# home. Kept short: 1 epoch of an MLP on 20,000 images. Works on a fresh Debian 12 machine as root.
#   scripts/demo.sh
# FERRY_DEMO_KEEP=1 keeps the demo's folder (registry, hosts, fetched runs) afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

scripts/install-deps.sh
swift build -c release --product ferry
FERRY=$ROOT/.build/release/ferry
"$FERRY" doctor || echo "demo: ferry doctor reports a problem (above); trying anyway"

DEMO=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
# The demo's own FERRY_HOME: its registry, its hosts and the local host's jobs; ~/.ferry is not touched.
export FERRY_HOME=$DEMO/home
PROJECT=$DEMO/project
mkdir -p "$PROJECT"
cleanup() {
    if [ -n "${FERRY_TEST_SSHD_DIR:-}" ]; then (cd "$ROOT" && scripts/test-sshd.sh stop >/dev/null 2>&1) || true; fi
    if [ -z "${FERRY_DEMO_KEEP:-}" ]; then rm -rf "$DEMO/home" "$DEMO/remote" "$DEMO/sshd"; fi
}
trap cleanup EXIT

cat > "$PROJECT/fmnist.json" <<'JSON'
{
    "name": "FashionMNIST_MLP",
    "n_gpu": 0,
    "seed": 0,
    "arch": {"type": "MLP", "args": {"hidden": [256, 128], "num_classes": 10}},
    "data_loader": {
        "type": "FashionMnistDataLoader",
        "args": {"data_dir": "/usr/share/datasets/fashion-mnist", "batch_size": 128, "shuffle": true,
                 "validation_split": 0.1, "num_workers": 1, "limit": 20000}
    },
    "optimizer": {"type": "Adam", "args": {"lr": 0.001}},
    "loss": "cross_entropy",
    "metrics": ["accuracy", "top_k_acc"],
    "trainer": {"epochs": 1, "save_dir": "saved/", "save_period": 1, "verbosity": 1, "monitor": "max val_accuracy",
                "early_stop": 0, "tensorboard": true, "save_last": true}
}
JSON
cd "$PROJECT"

CHECKPOINTS=()
# launch (checked, packaged, sent, started), follow the log, show the status, fetch the best checkpoint.
run_job() {
    local host=$1 message id
    echo
    echo "== ferry launch --host $host fmnist.json"
    message=$("$FERRY" launch --host "$host" --detach fmnist.json 2>&1) || { echo "$message"; return 1; }
    echo "$message"
    id=$(printf '%s\n' "$message" | sed -n 's/^started \([^ ]*\) on .*/\1/p')
    [ -n "$id" ] || { echo "demo: no job id in the launch output" >&2; return 1; }
    echo "== ferry logs -f $id"
    "$FERRY" logs -f --since-start "$id"
    echo "== ferry status $id"
    "$FERRY" status "$id"
    echo "== ferry fetch $id --what best"
    "$FERRY" fetch "$id" --what best --dest "$DEMO/runs/$id"
    local checkpoint
    checkpoint=$(find "$DEMO/runs/$id" -name model.safetensors | head -n 1)
    [ -n "$checkpoint" ] || { echo "demo: no checkpoint arrived" >&2; return 1; }
    CHECKPOINTS+=("$host: $checkpoint")
}

run_job local

# Over SSH, when the throwaway test sshd can start here: ferry installs itself into an empty
# FERRY_HOME on the "host" (FERRY_AGENT_BINARY, default this build), then runs the same job.
export FERRY_TEST_SSHD_DIR=$DEMO/sshd
if (cd "$ROOT" && scripts/test-sshd.sh start >/dev/null 2>&1); then
    eval "$(cd "$ROOT" && scripts/test-sshd.sh env)"
    "$FERRY" hosts add demo-sshd "$FERRY_TEST_SSH_USER@127.0.0.1:$FERRY_TEST_SSH_PORT" --identity "$FERRY_TEST_SSH_KEY" \
        --host-key "$FERRY_TEST_SSH_HOST_FINGERPRINT" --ferry-home "$DEMO/remote/.ferry"
    FERRY_AGENT_BINARY=${FERRY_AGENT_BINARY:-$FERRY} run_job demo-sshd
else
    unset FERRY_TEST_SSHD_DIR
    echo
    echo "demo: the test sshd could not start here (scripts/test-sshd.sh start); the SSH part is skipped"
fi

echo
echo "== ferry ls"
"$FERRY" ls
echo
echo "demo: done. Best checkpoints (safetensors, loadable with safetensors.torch.load_file):"
for c in "${CHECKPOINTS[@]}"; do echo "  $c"; done
