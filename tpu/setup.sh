#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2088  # remote shell snippets: ~ and $ expand on the workers
# Copy the code to every worker of the TPU slice and install it there.
#
# By default ships `git archive $GIT_REF` of this repository (committed files
# only: commit first; uncommitted changes are NOT copied). With REPO_URL set,
# each worker runs `git clone` instead.
#
# On each worker: a Python $PYTHON_VERSION virtualenv at ~/$REMOTE_VENV (made
# with uv, since TPU VM images ship an older system Python), then
#   pip install -U "jax[tpu]"; pip install -e .
#
# Required: TPU_NAME, ZONE, PROJECT
# Optional: REPO_URL, REPO_REF (branch/tag for the clone), GIT_REF (default HEAD)
#           PYTHON_VERSION (default 3.12)
#           EXTRA_PIP_PACKAGES (default "gcsfs", lets TFDS read gs://; set empty to skip)
#           SSH_FLAGS (extra ssh/scp flags, e.g. "--tunnel-through-iap")
#           REMOTE_DIR (default metalearn), REMOTE_VENV (default metalearn-venv)
#           DRY_RUN=1
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_vars TPU_NAME ZONE
resolve_project
require_gcloud

PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
EXTRA_PIP_PACKAGES="${EXTRA_PIP_PACKAGES-gcsfs}"
remote_dir="~/$REMOTE_DIR"
remote_venv="~/$REMOTE_VENV"

# 1. Code.
if [[ -n "${REPO_URL:-}" ]]; then
  info "cloning $REPO_URL on every worker of $TPU_NAME"
  branch=""
  if [[ -n "${REPO_REF:-}" ]]; then branch=" --branch $(printf '%q' "$REPO_REF")"; fi
  tpu_ssh "set -e; rm -rf $remote_dir; git clone --depth 1${branch} $(printf '%q' "$REPO_URL") $remote_dir"
else
  GIT_REF="${GIT_REF:-HEAD}"
  tarball="${TMPDIR:-/tmp}/metalearn-src-${TPU_NAME}-$$.tar.gz"
  if ! is_dry_run; then
    trap 'rm -f "$tarball"' EXIT
    if [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null || true)" ]]; then
      info "warning: the repository has uncommitted changes; only $GIT_REF is copied (commit first to ship them)"
    fi
  fi
  info "copying $GIT_REF of $REPO_ROOT to every worker of $TPU_NAME"
  run git -C "$REPO_ROOT" archive --format=tar.gz -o "$tarball" "$GIT_REF"
  tpu_scp "$tarball" "${TPU_NAME}:metalearn-src.tar.gz"
  tpu_ssh "set -e; rm -rf $remote_dir; mkdir -p $remote_dir; tar -xzf ~/metalearn-src.tar.gz -C $remote_dir; rm -f ~/metalearn-src.tar.gz"
  if ! is_dry_run; then rm -f "$tarball"; fi
fi

# 2. Environment.
install="set -e; cd $remote_dir"
install+='; export PATH="$HOME/.local/bin:$PATH"'
install+="; command -v uv >/dev/null || python3 -m pip install --user -q -U uv 2>/dev/null || python3 -m pip install --user -q -U --break-system-packages uv 2>/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh"
install+="; uv venv --seed --allow-existing --python $(printf '%q' "$PYTHON_VERSION") $remote_venv"
install+="; . $remote_venv/bin/activate"
install+="; pip install -q -U pip"
install+='; pip install -U "jax[tpu]"'
install+="; pip install -e ."
if [[ -n "$EXTRA_PIP_PACKAGES" ]]; then
  install+="; pip install $EXTRA_PIP_PACKAGES"
fi
install+="; python -c 'import jax, metalearn; print(\"jax\", jax.__version__, \"OK\")'"

info "installing on every worker (a few minutes)"
tpu_ssh "$install"
info "setup done; start training with tpu/launch.sh"
