#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2088  # remote shell snippets: ~ and $ expand on the workers
# Show or collect the per-worker training logs (~/metalearn_logs/worker-<hostname>.log).
#
#   tpu/logs.sh                       last $TAIL_LINES (default 50) lines of every worker's log
#   FOLLOW=1 tpu/logs.sh              follow all workers' logs (Ctrl-C to stop)
#   COLLECT_DIR=./logs tpu/logs.sh    copy every worker's log into ./logs
#   STATUS=1 tpu/logs.sh              print whether the job runs on each worker
#
# Required: TPU_NAME, ZONE, PROJECT
# Optional: WORKER (default all; a worker index such as 0), SSH_FLAGS, REMOTE_LOG_DIR, DRY_RUN=1
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_vars TPU_NAME ZONE
resolve_project
require_gcloud

WORKER="${WORKER:-all}"
TAIL_LINES="${TAIL_LINES:-50}"
logs="~/$REMOTE_LOG_DIR/worker-*.log"
ssh_args=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --project "$PROJECT"
  "--worker=$WORKER" ${SSH_EXTRA[@]+"${SSH_EXTRA[@]}"})

if [[ -n "${COLLECT_DIR:-}" ]]; then
  info "copying the logs of worker(s) $WORKER into $COLLECT_DIR"
  run mkdir -p "$COLLECT_DIR"
  run gcloud compute tpus tpu-vm scp "${TPU_NAME}:$REMOTE_LOG_DIR/worker-*.log" "$COLLECT_DIR/" \
    --zone "$ZONE" --project "$PROJECT" "--worker=$WORKER" ${SSH_EXTRA[@]+"${SSH_EXTRA[@]}"}
elif [[ "${STATUS:-0}" == 1 ]]; then
  run "${ssh_args[@]}" --command "$(remote_status_cmd)"
elif [[ "${FOLLOW:-0}" == 1 ]]; then
  run "${ssh_args[@]}" --command "tail -n $((TAIL_LINES)) -F $logs"
else
  run "${ssh_args[@]}" --command "for f in $logs; do echo \"==> \$f <==\"; tail -n $((TAIL_LINES)) \"\$f\"; done"
fi
