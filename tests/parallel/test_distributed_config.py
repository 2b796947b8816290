"""config.distributed -> jax.distributed.initialize arguments (recorded, nothing started)."""
import ml_collections
import pytest

from r1jax.train import common
from r1jax.train.configs import distributed_config


@pytest.fixture
def recorded(monkeypatch):
  import jax

  calls = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  return calls


def _cfg(**dist):
  d = distributed_config()
  d.update(dist)
  return ml_collections.ConfigDict({"distributed": d})


def test_discovery_with_local_device_ids(recorded):
  common.start_distributed(_cfg(num_processes=0, local_device_ids="0,1,2,3"))
  assert recorded == [{"local_device_ids": [0, 1, 2, 3]}]


def test_explicit_processes_and_default_devices(recorded):
  common.start_distributed(_cfg(num_processes=2, process_id=1, coordinator_address="h:1234"))
  assert recorded == [{"coordinator_address": "h:1234", "num_processes": 2, "process_id": 1}]


def test_single_process_starts_nothing(recorded):
  common.start_distributed(_cfg(local_device_ids="0"))
  assert recorded == []


@pytest.mark.parametrize("bad", ["0,x", "1,1", "-1"])
def test_bad_local_device_ids_name_the_key(recorded, bad):
  with pytest.raises(ValueError, match="config.distributed.local_device_ids"):
    common.start_distributed(_cfg(num_processes=0, local_device_ids=bad))
  assert recorded == []
