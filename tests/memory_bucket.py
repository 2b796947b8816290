"""A `gs://` object store held in memory (fsspec), for tests of workdirs on buckets without a network.

It is not POSIX: nothing reaches the local disk, `os.path` / `open` on a `gs://…` string fail or
create a stray local `gs:` directory (which the tests look for), and only etils.epath, fsspec and
tensorboard's fsspec-backed gfile reach it, as they reach GCS.
"""
from __future__ import annotations

import contextlib

import fsspec
from fsspec.implementations.memory import MemoryFileSystem

PROTOCOLS = ("gs", "gcs")


class MemoryBucket(MemoryFileSystem):
  protocol = PROTOCOLS
  root_marker = ""
  store: dict = {}  # its own store, not the memory:// one
  pseudo_dirs = [""]

  @classmethod
  def _strip_protocol(cls, path):
    path = fsspec.utils.stringify_path(path)
    for p in ("gs://", "gcs://"):
      if path.startswith(p):
        path = path[len(p):]
    path = path.strip("/")
    return "/" + path if path else ""

  def unstrip_protocol(self, name):
    return "gs://" + name.lstrip("/")


def _clear_caches():
  from etils.epath import backend

  backend.fsspec_backend._get_filesystem.cache_clear()
  MemoryBucket.clear_instance_cache()


@contextlib.contextmanager
def memory_bucket():
  """Registers the in-memory store for gs:// (and gcs://) for the duration; yields its dict."""
  saved = {p: fsspec.registry.get(p) for p in PROTOCOLS}
  for p in PROTOCOLS:
    fsspec.register_implementation(p, MemoryBucket, clobber=True)
  MemoryBucket.store.clear()
  MemoryBucket.pseudo_dirs[:] = [""]
  _clear_caches()
  try:
    yield MemoryBucket.store
  finally:
    from fsspec.registry import _registry

    for p, cls in saved.items():
      if cls is None:
        _registry.pop(p, None)
      else:
        fsspec.register_implementation(p, cls, clobber=True)
    MemoryBucket.store.clear()
    _clear_caches()
