#!/usr/bin/env bash
# Keep a (spot) meta-training run alive until it finishes.
#
# Every POLL_SECONDS:
#   * queued resource ACTIVE, TPU VM healthy:
#       job running            -> nothing to do
#       code not installed     -> tpu/setup.sh, tpu/launch.sh
#       job never started      -> tpu/launch.sh
#       job died / failed      -> tpu/launch.sh (counts as a restart)
#       job exited 0 on every worker -> done: exit 0 (and delete the slice if DELETE_WHEN_DONE=1)
#   * queued resource SUSPENDED / FAILED, TPU VM preempted, or the resource is gone:
#       tpu/delete.sh, tpu/create.sh, tpu/setup.sh, tpu/launch.sh (counts as a restart);
#       the new run resumes from the last orbax checkpoint in the gs:// WORKDIR.
#   * anything else (WAITING_FOR_RESOURCES, PROVISIONING, ...) -> wait.
#
# Run it from your workstation (or a small always-on VM), e.g. in tmux:
#   TPU_NAME=... ZONE=... PROJECT=... ACCELERATOR_TYPE=... RUNTIME_VERSION=... \
#   WORKDIR=gs://bucket/run CONFIG=experiments/default.py tpu/babysit.sh
#
# Required: everything create.sh and launch.sh need: TPU_NAME, ZONE, PROJECT,
#           ACCELERATOR_TYPE, RUNTIME_VERSION, WORKDIR
# Optional: POLL_SECONDS (default 120), MAX_RESTARTS (default 20),
#           DELETE_WHEN_DONE=1, MAX_POLLS (stop after this many polls; default 0 = never),
#           plus the optional variables of create.sh/setup.sh/launch.sh.
#           DRY_RUN=1 prints one iteration's commands (the checks, then the
#           recreate sequence) and exits.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_vars TPU_NAME ZONE
resolve_project
require_vars ACCELERATOR_TYPE RUNTIME_VERSION WORKDIR
resolve_qr_name
if [[ "$WORKDIR" != gs://* && "${ALLOW_LOCAL_WORKDIR:-0}" != 1 ]]; then
  die "WORKDIR=$WORKDIR is not a gs:// path — all hosts (and every recreated slice) must share the checkpoint directory, e.g. WORKDIR=gs://my-bucket/metalearn/run1"
fi
case "${CAPACITY:-spot}" in
  spot | reserved | on-demand) ;;
  *) die "CAPACITY=$CAPACITY is not valid — use CAPACITY=spot (default), CAPACITY=reserved or CAPACITY=on-demand" ;;
esac
require_gcloud

POLL_SECONDS="${POLL_SECONDS:-120}"
MAX_RESTARTS="${MAX_RESTARTS:-20}"
MAX_POLLS="${MAX_POLLS:-0}"

script() { "$BASH" "$TPU_DIR/$1"; }

# Aggregate the per-worker status lines into one word:
# RUNNING, DONE, NOTSTARTED, NOTSETUP, FAILED or UNKNOWN (no worker answered).
job_status() {
  local out line host st rc n=0 running=0 ok=0 bad=0 notstarted=0 notsetup=0
  out="$(tpu_ssh "$(remote_status_cmd)" 2>/dev/null || true)"
  while IFS= read -r line; do
    [[ "$line" == *METALEARN_STATUS* ]] || continue
    line="${line#*METALEARN_STATUS }"
    host="" st="" rc=""
    read -r host st rc <<<"$line"
    n=$((n + 1))
    case "$st" in
      RUNNING) running=$((running + 1)) ;;
      EXITED) if [[ "$rc" == 0 ]]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi ;;
      NOTSTARTED) notstarted=$((notstarted + 1)) ;;
      NOTSETUP) notsetup=$((notsetup + 1)) ;;
      *) bad=$((bad + 1)) ;;
    esac
    info "  $host: $st${rc:+ (exit $rc)}"
  done <<<"$out"
  if ((n == 0)); then
    echo UNKNOWN
  elif ((notsetup > 0)); then
    echo NOTSETUP
  elif ((notstarted == n)); then
    echo NOTSTARTED
  elif ((ok == n)); then
    echo DONE
  elif ((bad == 0 && notstarted == 0)); then
    echo RUNNING
  else
    echo FAILED
  fi
}

restarts=0
count_restart() {
  restarts=$((restarts + 1))
  if ((restarts > MAX_RESTARTS)); then
    die "giving up after $MAX_RESTARTS restarts (MAX_RESTARTS) — $1; the checkpoints are in $WORKDIR"
  fi
  info "restart $restarts/$MAX_RESTARTS: $1"
}

needs_setup=0

launch() {
  if ((needs_setup)); then
    if ! script setup.sh; then
      info "setup failed; retrying at the next poll"
      return 0
    fi
    needs_setup=0
  fi
  script launch.sh || info "launch failed; retrying at the next poll"
}

# Delete (unless already gone), recreate, set up and launch.
recreate() {
  local state="$1"
  if [[ "$state" != NOT_FOUND ]]; then
    script delete.sh || info "delete failed; continuing"
  fi
  needs_setup=1
  if ! script create.sh; then
    info "create failed; retrying at the next poll"
    return 0
  fi
  launch
}

if is_dry_run; then
  dry_note "babysit: one iteration; every $POLL_SECONDS s check the queued resource:"
  qr_state >/dev/null
  dry_note "if ACTIVE, check the TPU VM and the job on every worker:"
  node_state >/dev/null
  tpu_ssh "$(remote_status_cmd)"
  dry_note "if ACTIVE and the job is not running: relaunch (tpu/launch.sh, shown below)"
  dry_note "if SUSPENDED/FAILED/preempted or gone: recreate; the relaunch resumes from the last checkpoint in $WORKDIR:"
  needs_setup=1
  script delete.sh
  script create.sh
  launch
  exit 0
fi

info "babysitting $QR_NAME ($ACCELERATOR_TYPE, ${CAPACITY:-spot}) → $WORKDIR; poll every $POLL_SECONDS s, at most $MAX_RESTARTS restarts"
polls=0
while :; do
  polls=$((polls + 1))
  state="$(qr_state)"
  info "queued resource $QR_NAME: $state"
  case "$state" in
    ACTIVE)
      node="$(node_state)"
      case "$node" in
        PREEMPTED | TERMINATED | STOPPED | NOT_FOUND)
          count_restart "TPU VM $TPU_NAME is $node"
          recreate "$state"
          ;;
        *)
          if ((needs_setup)); then
            launch
          else
            job="$(job_status)"
            info "job: $job"
            case "$job" in
              RUNNING) ;;
              DONE)
                info "training finished on every worker; results in $WORKDIR"
                if [[ "${DELETE_WHEN_DONE:-0}" == 1 ]]; then script delete.sh; fi
                exit 0
                ;;
              NOTSTARTED) launch ;;
              NOTSETUP)
                needs_setup=1
                launch
                ;;
              FAILED)
                count_restart "the job stopped on some worker"
                launch
                ;;
              *) info "could not reach the workers; retrying at the next poll" ;;
            esac
          fi
          ;;
      esac
      ;;
    SUSPENDING | SUSPENDED | FAILED | NOT_FOUND)
      count_restart "queued resource $QR_NAME is $state"
      recreate "$state"
      ;;
    *) ;; # ACCEPTED, WAITING_FOR_RESOURCES, PROVISIONING, CREATING, DELETING, UNKNOWN: wait
  esac
  if ((MAX_POLLS > 0 && polls >= MAX_POLLS)); then
    info "stopping after $polls polls (MAX_POLLS)"
    exit 0
  fi
  sleep "$POLL_SECONDS"
done
