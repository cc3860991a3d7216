"""Test setup: emulate 8 CPU devices before JAX starts."""
import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The CLI turns on JAX's persistent compilation cache in ~/.cache; tests keep out of it and share
# one of their own instead (both xdist workers and the CLI subprocesses), since many tests compile
# the same small meta-training programs.
import tempfile  # noqa: E402

os.environ.setdefault("METALEARN_COMPILE_CACHE",
                      os.path.join(tempfile.gettempdir(), f"metalearn-test-jax-cache-{os.getuid()}"))

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", int(os.environ["JAX_NUM_CPU_DEVICES"]))
if os.environ["METALEARN_COMPILE_CACHE"] != "0":
  jax.config.update("jax_compilation_cache_dir", os.environ["METALEARN_COMPILE_CACHE"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A TFDS data dir shared by the session; datasets are prepared into it on first use."""
  d = os.environ.get("METALEARN_TEST_DATA_DIR") or str(tmp_path_factory.mktemp("tfds"))
  return d
