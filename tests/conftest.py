"""Test setup: emulate 8 CPU devices before JAX starts."""
import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The CLI turns on JAX's persistent compilation cache in ~/.cache; tests keep out of it (one test
# turns it on in a directory of its own).
os.environ.setdefault("METALEARN_COMPILE_CACHE", "0")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", int(os.environ["JAX_NUM_CPU_DEVICES"]))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A TFDS data dir shared by the session; datasets are prepared into it on first use."""
  d = os.environ.get("METALEARN_TEST_DATA_DIR") or str(tmp_path_factory.mktemp("tfds"))
  return d
