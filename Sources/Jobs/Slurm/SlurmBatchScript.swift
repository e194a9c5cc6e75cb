import Foundation
import RunContract
import SSH

/// The batch script ferry submits for a job (`slurm.sh` in the job's folder). Slurm runs it on the
/// compute node with the job's log as its stdout and stderr. It:
/// - marks each start in the log (one log across restarts) and notes it in `slurm-start`;
/// - runs the host's setup lines, then (for ferry's trainer) the engine check on the compute node —
///   a failure ends the job there, with the reason in the log and `slurm-check.txt` —, then the payload in the background (bash runs a trap only after
///   its foreground child exits) and forwards USR2/TERM/INT to it as TERM;
/// - writes the payload's exit status to `slurm-exit.json` (results never depend on accounting);
/// - requeues itself (`scontrol requeue`) only when it got USR2 itself (preemption, the time limit),
///   the payload stopped with 75, it made progress since this start (more steps in events.jsonl;
///   for a program without steps, files written under output/), and fewer than
///   `maxRestarts` restarts happened. A TERM (a cancel) never requeues.
struct SlurmBatchScript {
    let spec: JobSpec
    let paths: JobPaths
    /// The ferry binary a leading `ferry` in the command stands for (the agent's, on the shared filesystem).
    let ferryBinary: String
    /// The agent's FERRY_HOME on the shared filesystem (the node check's `--home`).
    let home: String

    static let startFile = "slurm-start"
    static let exitFile = "slurm-exit.json"
    static let scriptFile = "slurm.sh"
    /// Why the compute node cannot run the job (written by `ferry agent node-check`).
    static let checkFile = "slurm-check.txt"

    var text: String {
        let q = ShellQuote.quote
        let slurm = spec.slurm ?? SlurmJob()
        var command = spec.command
        if command.first == "ferry" { command[0] = ferryBinary }
        // The spec says how it continues (`--resume auto` for ferry train), once.
        let resume = spec.needs.resumeArguments.first.map { spec.command.contains($0) } == true ? [] : spec.needs.resumeArguments
        let mayRequeue = !spec.needs.resumeArguments.isEmpty || slurm.requeue
        let directory = spec.directory == "." ? paths.work : (paths.work as NSString).appendingPathComponent(spec.directory)
        let exitFile = (paths.directory as NSString).appendingPathComponent(SlurmBatchScript.exitFile)
        let startFile = (paths.directory as NSString).appendingPathComponent(SlurmBatchScript.startFile)
        var lines: [String] = [
            "#!/bin/bash",
            "# Written by ferry for job \(spec.id); Slurm runs it on the compute node (sbatch options are on sbatch's command line).",
            "job_dir=\(q(paths.directory))",
            "exit_file=\(q(exitFile))",
            "start_file=\(q(startFile))",
            "max_restarts=\(slurm.maxRestarts)",
            "may_requeue=\(mayRequeue ? 1 : 0)",
            "command=(\(command.map(q).joined(separator: " ")))",
            "resume_args=(\(resume.map(q).joined(separator: " ")))",
            // ferry's variables, set here: an array's runs share one submission's environment.
            "export FERRY_JOB_ID=\(q(spec.id)) FERRY_EVENTS=\(q(paths.events)) FERRY_OUTPUT=\(q(paths.output)) FERRY_JOB_DIR=\(q(paths.directory)) FERRY_ATTEMPT=\(spec.attempt)",
        ] + [RunEnvironment.sweepID, RunEnvironment.runIndex].compactMap { name in
            spec.environment[name].map { "export \(name)=\(q($0))" }
        } + [
            "restart=${SLURM_RESTART_COUNT:-0}",
            "export FERRY_RESTART_COUNT=$restart",
            "node=$(hostname -s 2>/dev/null || hostname)",
            "started=$(date +%s)",
            "rm -f \"$exit_file\"",
            "printf '%s %s %s %s\\n' \"$restart\" \"$node\" \"$started\" \"${SLURM_JOB_ID:-}\" > \"$start_file.tmp\" && mv -f \"$start_file.tmp\" \"$start_file\"",
            "finish() {  # code, signal, requeued[, the node check failed]",
            "    printf '{\"code\":%d,\"signal\":\"%s\",\"restart\":%d,\"started\":%d,\"ended\":%d,\"requeued\":%s,\"check_failed\":%s}\\n' \\",
            "        \"$1\" \"$2\" \"$restart\" \"$started\" \"$(date +%s)\" \"$3\" \"${4:-false}\" > \"$exit_file.tmp\" && mv -f \"$exit_file.tmp\" \"$exit_file\"",
            "}",
            "if [ \"$restart\" -gt 0 ]; then",
            "    echo \"ferry: ---- restart $restart of job \(spec.id) on $node (Slurm job ${SLURM_JOB_ID:-?}) ----\"",
            "    [ ${#resume_args[@]} -gt 0 ] && command+=(\"${resume_args[@]}\") && echo \"ferry: continuing with: ${resume_args[*]}\"",
            "else",
            "    echo \"ferry: job \(spec.id) started on $node (Slurm job ${SLURM_JOB_ID:-?})\"",
            "fi",
        ]
        if !slurm.setup.isEmpty {
            lines.append("# The host's setup lines (ferry hosts add --setup), as written.")
            lines += slurm.setup
        }
        if spec.needs.engine {
            // The login node that answered the launch's preflight often has no GPU: the engine and
            // CUDA are checked here, on the node Slurm picked, after the setup lines (module load
            // cuda). A failure is final: no payload, no requeue.
            let check = [ferryBinary, AgentProtocol.subcommand, AgentProtocol.homeFlag, home, AgentProtocol.nodeCheckVerb, spec.id].map(q).joined(separator: " ")
            lines += [
                "\(check) || { check=$?; finish \"$check\" '' false true; exit 1; }",
            ]
        }
        lines += [
            "cd \(q(directory)) || { echo \"ferry: cannot enter \(directory)\"; finish 1 '' false; exit 1; }",
            // Progress since this start: more training steps in events.jsonl (ferry train), or for
            // a program that writes no steps, any file under output/ written since.
            "events=\(q(paths.events))",
            "marker=\"$job_dir/.slurm-started\"",
            "touch \"$marker\"",
            "count_steps() { local n; n=$(grep -cE '\"event\" *: *\"step\"' \"$events\" 2>/dev/null); echo \"${n:-0}\"; }",
            "steps_at_start=$(count_steps)",
            "made_progress() {",
            "    local now; now=$(count_steps)",
            "    [ \"$now\" -gt 0 ] && { [ \"$now\" -gt \"$steps_at_start\" ]; return; }",
            "    [ -n \"$(find \"$job_dir/output\" -newer \"$marker\" -type f -print -quit 2>/dev/null)\" ]",
            "}",
            "got=''",
            "child=''",
            "forward() { got=$1; [ -n \"$child\" ] && kill -TERM \"$child\" 2>/dev/null; }",
            "trap 'forward USR2' USR2",
            "trap 'forward TERM' TERM",
            "trap 'forward INT' INT",
            "\"${command[@]}\" &",
            "child=$!",
            "while :; do",
            "    wait \"$child\"; code=$?",
            "    kill -0 \"$child\" 2>/dev/null || break",
            "done",
            // A wait cut short by a trap just as the child ended reports 128+n: ask once more.
            "wait \"$child\" 2>/dev/null; again=$?",
            "[ \"$again\" -ne 127 ] && code=$again",
            "if [ \"$got\" = USR2 ] && [ \"$code\" -eq 75 ]; then",
            "    if [ \"$may_requeue\" != 1 ]; then why='a command job is requeued only when launched with --requeue'",
            "    elif [ \"$restart\" -ge \"$max_restarts\" ]; then why=\"it was restarted $restart times already (--max-restarts $max_restarts)\"",
            "    elif ! made_progress; then why='it made no progress since it started'",
            "    else why=''; fi",
            "    if [ -z \"$why\" ]; then",
            "        finish \"$code\" USR2 true",
            "        echo \"ferry: stopped with status 75 at USR2 (preemption or the time limit); requeueing for restart $((restart + 1)) of at most $max_restarts\"",
            "        scontrol requeue \"$SLURM_JOB_ID\" && exit 0",
            "        echo \"ferry: scontrol requeue failed; the job ends here (resume it: ferry launch --resume \(spec.id))\"",
            "    else",
            "        echo \"ferry: stopped with status 75 at USR2 (preemption or the time limit); not requeued: $why\"",
            "    fi",
            "fi",
            "finish \"$code\" \"$got\" false",
            "exit \"$code\"",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}

/// What the batch script wrote when the payload ended.
struct SlurmExitRecord: Codable {
    var code: Int32
    var signal: String
    var restart: Int
    var started: Int
    var ended: Int
    var requeued: Bool
    /// The engine check on the compute node failed: the payload never ran.
    var checkFailed: Bool?
}
