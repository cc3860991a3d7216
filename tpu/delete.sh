#!/usr/bin/env bash
# Delete the queued resource and its TPU VM (billing for the slice stops).
# Checkpoints and logs in the gs:// WORKDIR are kept.
#
# Required: ZONE, PROJECT, and QR_NAME or TPU_NAME (QR_NAME defaults to ${TPU_NAME}-qr)
# Optional: ASYNC=1 (return without waiting for the deletion), DRY_RUN=1
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ -z "${QR_NAME:-}" ]]; then require_vars TPU_NAME; fi
require_vars ZONE
resolve_project
resolve_qr_name
require_gcloud

args=(gcloud compute tpus queued-resources delete "$QR_NAME" --project "$PROJECT" --zone "$ZONE" --force --quiet)
if [[ "${ASYNC:-0}" == 1 ]]; then args+=(--async); fi

info "deleting queued resource $QR_NAME (and its TPU VM) in $PROJECT/$ZONE"
run "${args[@]}"
