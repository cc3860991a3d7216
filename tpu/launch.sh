#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2088  # remote shell snippets: ~ and $ expand on the workers
# Start meta-training on every worker of the TPU slice, in the background.
#
# Each worker runs the same command,
#   metalearn meta-train --multihost --config "$CONFIG" --workdir "$WORKDIR" $EXTRA_ARGS
# detached with nohup/setsid, logging to ~/metalearn_logs/worker-<hostname>.log.
# A run already going on the workers is stopped first; since the workdir holds
# orbax checkpoints, the new run resumes from the last one.
#
# Required: TPU_NAME, ZONE, PROJECT, WORKDIR (a gs:// path shared by all hosts)
# Optional: CONFIG (default experiments/default.py, relative to the repo root)
#           COMMAND  meta-train (default) or campaign: `metalearn campaign --config
#                    "$CONFIG" --workdir "$WORKDIR"` (one host: a single-host slice and a
#                    WORKDIR on the worker's disk, with ALLOW_LOCAL_WORKDIR=1)
#           EXTRA_ARGS  extra CLI arguments, e.g. "--config.seed=1"; they are
#                       interpreted by the worker's shell
#           TFDS_DATA_DIR  passed through to the workers when set (e.g. gs://bucket/tfds)
#           REMOTE_ENV  extra VAR=VALUE words exported on the workers
#           ALLOW_LOCAL_WORKDIR=1  accept a non-gs:// WORKDIR (single-host slices only)
#           SSH_FLAGS, REMOTE_DIR, REMOTE_VENV, REMOTE_LOG_DIR, DRY_RUN=1
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_vars TPU_NAME ZONE
resolve_project
require_vars WORKDIR
CONFIG="${CONFIG:-experiments/default.py}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
COMMAND="${COMMAND:-meta-train}"
case "$COMMAND" in
  meta-train) subcommand="meta-train --multihost" ;;
  campaign)
    [[ "$WORKDIR" != gs://* ]] || die "COMMAND=campaign writes its stages to a local WORKDIR; use a path on the worker (a single-host slice) with ALLOW_LOCAL_WORKDIR=1"
    subcommand="campaign" ;;
  *) die "COMMAND=$COMMAND: choose meta-train or campaign" ;;
esac

if [[ "$WORKDIR" != gs://* && "${ALLOW_LOCAL_WORKDIR:-0}" != 1 ]]; then
  die "WORKDIR=$WORKDIR is not a gs:// path — all hosts must share the checkpoint directory, so use a GCS bucket, e.g. WORKDIR=gs://my-bucket/metalearn/run1 (or set ALLOW_LOCAL_WORKDIR=1 for a single-host slice)"
fi
require_gcloud

q() { printf '%q' "$1"; }

logdir="~/$REMOTE_LOG_DIR"
cmd="set -e; mkdir -p $logdir"
cmd+="; $(remote_stop_cmd)"
cmd+="; cd ~/$REMOTE_DIR; . ~/$REMOTE_VENV/bin/activate"
if [[ -n "${TFDS_DATA_DIR:-}" ]]; then
  cmd+="; export TFDS_DATA_DIR=$(q "$TFDS_DATA_DIR")"
fi
if [[ -n "${REMOTE_ENV:-}" ]]; then
  read -r -a remote_env <<<"$REMOTE_ENV"
  for kv in "${remote_env[@]}"; do
    cmd+="; export $(q "$kv")"
  done
fi
cmd+="; rm -f $logdir/run.exit"
cmd+="; log=$logdir/worker-\$(hostname).log"
cmd+='; echo "=== launch $(date -u +%FT%TZ) ===" >>"$log"'
# The job runs in its own session (setsid): its pid is the process group to stop
# later, written to run.pid; its exit status is written to run.exit, as 143 if the
# wrapper got SIGTERM (preemption, shutdown, a relaunch) even when the trainer
# saved a checkpoint and exited 0, so that babysit.sh does not take it as finished.
job="metalearn $subcommand --config $(q "$CONFIG") --workdir $(q "$WORKDIR")"
if [[ -n "$EXTRA_ARGS" ]]; then job+=" $EXTRA_ARGS"; fi
wrapper='stopped=; trap "stopped=1" TERM; echo $$ >"$0/run.pid"; "$@"; rc=$?; [ -z "$stopped" ] || rc=143; echo $rc >"$0/run.exit"'
cmd+="; nohup setsid bash -c '$wrapper' $logdir $job >>\"\$log\" 2>&1 </dev/null &"
cmd+=' echo "$(hostname): started, log: $log"'

info "launching on every worker of $TPU_NAME: $job"
tpu_ssh "$cmd"
info "follow the logs with tpu/logs.sh (FOLLOW=1); checkpoints and TensorBoard: $WORKDIR"
