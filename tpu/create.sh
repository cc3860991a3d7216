#!/usr/bin/env bash
# Create a Cloud TPU VM (slice) through a queued resource and wait until it is ACTIVE.
#
# Required: TPU_NAME, ZONE, PROJECT, ACCELERATOR_TYPE, RUNTIME_VERSION
# Optional: QR_NAME (default ${TPU_NAME}-qr)
#           CAPACITY=spot|reserved|on-demand (default spot)
#           VALID_UNTIL_DURATION   e.g. 6h: give up if not provisioned within this time
#           CREATE_EXTRA_ARGS      extra flags for `queued-resources create`, word-split
#                                  (e.g. "--network=my-net --subnetwork=my-subnet")
#           NO_WAIT=1              return right after the create request
#           CREATE_POLL_SECONDS    poll interval while waiting (default 30)
#           WAIT_TIMEOUT_SECONDS   give up waiting after this long (default 0 = never)
#           DRY_RUN=1              print the commands, run nothing
#
# Example:
#   TPU_NAME=ml-v5e ZONE=us-west4-a PROJECT=my-project \
#   ACCELERATOR_TYPE=v5litepod-16 RUNTIME_VERSION=v2-alpha-tpuv5-lite tpu/create.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_vars TPU_NAME ZONE
resolve_project
require_vars ACCELERATOR_TYPE RUNTIME_VERSION
resolve_qr_name

CAPACITY="${CAPACITY:-spot}"
capacity_flags=()
case "$CAPACITY" in
  spot) capacity_flags=(--spot) ;;
  reserved) capacity_flags=(--reserved) ;;
  on-demand) capacity_flags=() ;;
  *) die "CAPACITY=$CAPACITY is not valid — use CAPACITY=spot (default; cheapest, can be preempted), CAPACITY=reserved (needs a reservation) or CAPACITY=on-demand" ;;
esac

require_gcloud

args=(gcloud compute tpus queued-resources create "$QR_NAME"
  --node-id "$TPU_NAME"
  --project "$PROJECT"
  --zone "$ZONE"
  --accelerator-type "$ACCELERATOR_TYPE"
  --runtime-version "$RUNTIME_VERSION")
args+=(${capacity_flags[@]+"${capacity_flags[@]}"})
if [[ -n "${VALID_UNTIL_DURATION:-}" ]]; then
  args+=(--valid-until-duration "$VALID_UNTIL_DURATION")
fi
if [[ -n "${CREATE_EXTRA_ARGS:-}" ]]; then
  read -r -a extra <<<"$CREATE_EXTRA_ARGS"
  args+=("${extra[@]}")
fi

info "requesting $ACCELERATOR_TYPE ($CAPACITY) as queued resource $QR_NAME, node $TPU_NAME, in $PROJECT/$ZONE"
run "${args[@]}"

if [[ "${NO_WAIT:-0}" == 1 ]]; then
  info "NO_WAIT=1: not waiting; check with: gcloud compute tpus queued-resources describe $QR_NAME --project $PROJECT --zone $ZONE"
  exit 0
fi

if is_dry_run; then
  dry_note "then poll until the state is ACTIVE:"
  qr_state >/dev/null
  exit 0
fi

poll="${CREATE_POLL_SECONDS:-30}"
timeout="${WAIT_TIMEOUT_SECONDS:-0}"
start=$SECONDS
last=""
while :; do
  state="$(qr_state)"
  if [[ "$state" != "$last" ]]; then
    info "queued resource $QR_NAME: $state"
    last="$state"
  fi
  case "$state" in
    ACTIVE)
      info "TPU $TPU_NAME is ready ($((SECONDS - start)) s)"
      exit 0
      ;;
    FAILED | SUSPENDING | SUSPENDED)
      die "queued resource $QR_NAME is $state — see: gcloud compute tpus queued-resources describe $QR_NAME --project $PROJECT --zone $ZONE; delete it with tpu/delete.sh before retrying"
      ;;
    NOT_FOUND)
      die "queued resource $QR_NAME does not exist (the create request failed or it was deleted)"
      ;;
  esac
  if ((timeout > 0 && SECONDS - start >= timeout)); then
    die "queued resource $QR_NAME is still $state after ${timeout} s (WAIT_TIMEOUT_SECONDS); it stays queued — delete it with tpu/delete.sh if you no longer want it"
  fi
  sleep "$poll"
done
