"""Shared fixtures. 8 virtual CPU devices so every test can exercise real sharding."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def devices8():
  import jax

  devs = jax.devices()
  assert len(devs) == 8, f"expected 8 virtual devices, got {len(devs)} (XLA_FLAGS set too late?)"
  return devs
