# shellcheck shell=bash
# shellcheck disable=SC2016,SC2088  # remote shell snippets: ~ and $ expand on the workers
# Shared helpers for the tpu/ scripts. Source this file; do not run it.
#
# Conventions:
#   * Every gcloud/git command goes through `run`. With DRY_RUN=1 it prints the
#     command (one line, prefixed with "+ ", quoted so it can be copy-pasted)
#     and runs nothing; gcloud does not even need to be installed.
#   * Progress messages go to stderr; dry-run command lines go to stdout.
#   * Only bash builtins are used on the DRY_RUN path (plus `dirname` below).

# Keep a handle on the real stdout, so dry-run lines printed from inside $(...)
# still reach the user instead of being captured.
exec 3>&1

TPU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TPU_DIR/.." && pwd)"
export TPU_DIR REPO_ROOT

# Paths on the TPU VM workers, relative to the remote $HOME.
REMOTE_DIR="${REMOTE_DIR:-metalearn}"            # the code
REMOTE_VENV="${REMOTE_VENV:-metalearn-venv}"     # the Python environment
REMOTE_LOG_DIR="${REMOTE_LOG_DIR:-metalearn_logs}"  # per-worker logs, pid/exit files

# ---------------------------------------------------------------------------
# Messages

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

info() {
  local ts=""
  printf -v ts '%(%Y-%m-%d %H:%M:%S)T' -1 2>/dev/null || ts=""
  printf '[%s %s] %s\n' "${0##*/}" "$ts" "$*" >&2
}

# DRY_RUN is on for any value other than "", 0, false, no.
is_dry_run() {
  case "${DRY_RUN:-}" in
    "" | 0 | false | FALSE | False | no | NO) return 1 ;;
    *) return 0 ;;
  esac
}

# Print a comment line in the dry-run transcript (nothing outside dry run).
dry_note() {
  if is_dry_run; then printf '# %s\n' "$*" >&3; fi
}

# ---------------------------------------------------------------------------
# Running commands

# Quote one word for display so that the printed line can be pasted into a shell.
shell_quote() {
  local s="$1"
  if [[ -n "$s" && "$s" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# run CMD [ARGS...]: run a command, or print it under DRY_RUN=1.
run() {
  if is_dry_run; then
    local line="+" word
    for word in "$@"; do
      line+=" $(shell_quote "$word")"
    done
    printf '%s\n' "$line" >&3
    return 0
  fi
  "$@"
}

# ---------------------------------------------------------------------------
# Variables

var_help() {
  case "$1" in
    TPU_NAME) echo "the name of the TPU VM (the queued resource's node id), e.g. TPU_NAME=metalearn-v5e" ;;
    ZONE) echo "the Cloud TPU zone, e.g. ZONE=us-central2-b" ;;
    PROJECT) echo "the Google Cloud project id, e.g. PROJECT=my-project (outside DRY_RUN it defaults to \`gcloud config get-value project\`)" ;;
    ACCELERATOR_TYPE) echo "the TPU slice type, e.g. ACCELERATOR_TYPE=v5litepod-16 (v5e), v4-32 (v4) or v6e-16 (v6e)" ;;
    RUNTIME_VERSION) echo "the TPU VM software version, e.g. RUNTIME_VERSION=v2-alpha-tpuv5-lite (v5e), tpu-ubuntu2204-base (v4) or v2-alpha-tpuv6e (v6e)" ;;
    WORKDIR) echo "the run directory shared by all hosts (checkpoints, logs), e.g. WORKDIR=gs://my-bucket/metalearn/run1" ;;
    QR_NAME) echo "the queued resource name, e.g. QR_NAME=metalearn-v5e-qr (defaults to \${TPU_NAME}-qr)" ;;
    CONFIG) echo "the experiment config file, relative to the repo root, e.g. CONFIG=experiments/default.py" ;;
    *) echo "see docs/tpu.md" ;;
  esac
}

# require_vars VAR...: exit with a helpful message if any is unset or empty.
require_vars() {
  local v
  for v in "$@"; do
    if [[ -z "${!v:-}" ]]; then
      die "$v is not set — $(var_help "$v")"
    fi
  done
}

# PROJECT: required under DRY_RUN; otherwise falls back to the gcloud default.
resolve_project() {
  if [[ -z "${PROJECT:-}" ]] && ! is_dry_run && command -v gcloud >/dev/null 2>&1; then
    PROJECT="$(gcloud config get-value project 2>/dev/null || true)"
    if [[ "$PROJECT" == "(unset)" ]]; then PROJECT=""; fi
    if [[ -n "$PROJECT" ]]; then info "PROJECT not set; using gcloud's default project: $PROJECT"; fi
  fi
  require_vars PROJECT
  export PROJECT
}

# QR_NAME defaults to ${TPU_NAME}-qr.
resolve_qr_name() {
  if [[ -z "${QR_NAME:-}" && -n "${TPU_NAME:-}" ]]; then
    QR_NAME="${TPU_NAME}-qr"
  fi
  require_vars QR_NAME
  export QR_NAME
}

require_gcloud() {
  if ! is_dry_run && ! command -v gcloud >/dev/null 2>&1; then
    die "gcloud is not installed or not on PATH — install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install), or set DRY_RUN=1 to only print the commands"
  fi
}

# Extra flags for every `tpu-vm ssh`/`tpu-vm scp`, e.g. SSH_FLAGS="--tunnel-through-iap".
SSH_EXTRA=()
if [[ -n "${SSH_FLAGS:-}" ]]; then
  read -r -a SSH_EXTRA <<<"$SSH_FLAGS"
fi

# ---------------------------------------------------------------------------
# gcloud wrappers

# tpu_ssh REMOTE_COMMAND: run a shell command on every worker of the slice.
tpu_ssh() {
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --project "$PROJECT" \
    --worker=all ${SSH_EXTRA[@]+"${SSH_EXTRA[@]}"} --command "$1"
}

# tpu_scp SRC DEST: copy to (or from) every worker of the slice.
tpu_scp() {
  run gcloud compute tpus tpu-vm scp --recurse "$1" "$2" --zone "$ZONE" --project "$PROJECT" \
    --worker=all ${SSH_EXTRA[@]+"${SSH_EXTRA[@]}"}
}

# gcloud_state ARGS...: run a gcloud describe that prints one state word.
# Prints the state, NOT_FOUND if the resource does not exist, or UNKNOWN on any
# other error (e.g. a network blip; callers should retry rather than act).
gcloud_state() {
  if is_dry_run; then
    run gcloud "$@"
    echo "UNKNOWN"
    return 0
  fi
  local out err errfile
  errfile="$(mktemp)"
  if out="$(gcloud "$@" 2>"$errfile")"; then
    rm -f "$errfile"
    out="${out//[[:space:]]/}"
    echo "${out:-UNKNOWN}"
    return 0
  fi
  err="$(<"$errfile")"
  rm -f "$errfile"
  case "$err" in
    *NOT_FOUND* | *"not found"*) echo "NOT_FOUND" ;;
    *)
      info "gcloud $* failed: ${err}"
      echo "UNKNOWN"
      ;;
  esac
}

# State of the queued resource: ACTIVE, WAITING_FOR_RESOURCES, PROVISIONING,
# SUSPENDED, FAILED, ... or NOT_FOUND / UNKNOWN.
qr_state() {
  gcloud_state compute tpus queued-resources describe "$QR_NAME" \
    --project "$PROJECT" --zone "$ZONE" --format='value(state.state)'
}

# State of the TPU VM node: READY, PREEMPTED, ... or NOT_FOUND / UNKNOWN.
node_state() {
  gcloud_state compute tpus tpu-vm describe "$TPU_NAME" \
    --project "$PROJECT" --zone "$ZONE" --format='value(state)'
}

# ---------------------------------------------------------------------------
# Remote shell snippets (run on the workers through tpu_ssh)

# Per worker, print one line:
#   "METALEARN_STATUS <hostname> NOTSETUP|EXITED <rc>|RUNNING|DIED|NOTSTARTED".
# NOTSETUP: setup.sh has not installed metalearn there. run.exit is removed at
# each launch and written when the job ends, so it is checked before the pid.
remote_status_cmd() {
  local d="~/$REMOTE_LOG_DIR"
  printf '%s' "d=$d; h=\$(hostname); " \
    "if [ ! -x ~/$REMOTE_VENV/bin/metalearn ]; then echo \"METALEARN_STATUS \$h NOTSETUP\"; " \
    'elif [ -f "$d/run.exit" ]; then echo "METALEARN_STATUS $h EXITED $(cat "$d/run.exit")"; ' \
    'elif [ -f "$d/run.pid" ] && kill -0 -- -"$(cat "$d/run.pid")" 2>/dev/null; then echo "METALEARN_STATUS $h RUNNING"; ' \
    'elif [ -f "$d/run.pid" ]; then echo "METALEARN_STATUS $h DIED"; ' \
    'else echo "METALEARN_STATUS $h NOTSTARTED"; fi'
}

# Stop a previous run: SIGTERM to its whole process group (the trainer saves a
# checkpoint on SIGTERM), then SIGKILL after STOP_GRACE_SECONDS (default 120).
remote_stop_cmd() {
  local d="~/$REMOTE_LOG_DIR" grace="${STOP_GRACE_SECONDS:-120}"
  printf '%s' "d=$d; grace=$((grace)); " \
    'if [ -f "$d/run.pid" ]; then pgid=$(cat "$d/run.pid"); ' \
    'if kill -0 -- -"$pgid" 2>/dev/null; then echo "$(hostname): stopping the previous run (process group $pgid)"; kill -TERM -- -"$pgid" 2>/dev/null || true; ' \
    'for _ in $(seq 1 "$grace"); do kill -0 -- -"$pgid" 2>/dev/null || break; sleep 1; done; ' \
    'kill -KILL -- -"$pgid" 2>/dev/null || true; fi; fi'
}
