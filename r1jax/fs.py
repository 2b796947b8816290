"""Workdir and checkpoint paths on local disks and object stores, through one abstraction.

Every read and write of a workdir (metrics, tokenizer, corpora, exports, rejection shards, plots)
and of a model or tokenizer directory goes through `etils.epath`, the path type orbax and Grain
already take, so `gs://bucket/run` (or `s3://…`) works wherever a local path does. Local paths are
made absolute; URLs are never touched by `os.path` (which would turn `gs://b/x` into
`<cwd>/gs:/b/x`).

Object stores have no appends and no atomic directory renames: `write_text` replaces a whole
object (one PUT, already atomic), `append_text` rewrites the object, and `staged_dir` writes a
directory locally, then uploads it with its completion marker last. This module imports nothing
from r1jax: every layer may use it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator, Sequence, Union

from etils import epath

PathLike = Union[str, os.PathLike]


def is_remote(p: PathLike) -> bool:
  """True for URLs (`gs://…`, `s3://…`, any `scheme://`)."""
  return "://" in os.fspath(p)


def path(p: PathLike) -> epath.Path:
  """`p` as an epath.Path: a local path made absolute, a URL kept exactly as given."""
  if is_remote(p):
    return epath.Path(os.fspath(p))
  return epath.Path(os.path.abspath(os.fspath(p)))


def name(p: PathLike) -> str:
  """`p` as a string (absolute when local): the form stored in configs and passed to orbax."""
  return os.fspath(path(p))


def join(base: PathLike, *parts: str) -> str:
  return os.fspath(path(base).joinpath(*parts))


def exists(p: PathLike) -> bool:
  return path(p).exists()


def isdir(p: PathLike) -> bool:
  return path(p).is_dir()


def isfile(p: PathLike) -> bool:
  p = path(p)
  return p.exists() and not p.is_dir()


def listdir(p: PathLike) -> list[str]:
  return sorted(child.name for child in path(p).iterdir())


def makedirs(p: PathLike) -> None:
  path(p).mkdir(parents=True, exist_ok=True)


def open_file(p: PathLike, mode: str = "r", **kwargs):
  """A file object (text modes are UTF-8); parent directories are made for writes."""
  p = path(p)
  if any(c in mode for c in "wax"):
    p.parent.mkdir(parents=True, exist_ok=True)
  if "b" not in mode:
    kwargs.setdefault("encoding", "utf-8")
  return p.open(mode, **kwargs)


def read_text(p: PathLike) -> str:
  return path(p).read_text(encoding="utf-8")


def read_bytes(p: PathLike) -> bytes:
  return path(p).read_bytes()


def read_json(p: PathLike) -> Any:
  return json.loads(read_text(p))


@contextlib.contextmanager
def writing(p: PathLike, mode: str = "wb") -> Iterator[Any]:
  """A file object whose content replaces `p` whole, or not at all, when the block ends: a temp
  file renamed on local disks (removed on an error), one object PUT on object stores."""
  p = path(p)
  p.parent.mkdir(parents=True, exist_ok=True)
  encoding = None if "b" in mode else "utf-8"
  if is_remote(p):
    with p.open(mode, encoding=encoding) as f:
      yield f
    return
  fd, tmp = tempfile.mkstemp(dir=os.fspath(p.parent), prefix=f".{p.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, mode, encoding=encoding) as f:
      yield f
    os.replace(tmp, os.fspath(p))
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_bytes(p: PathLike, data: bytes) -> None:
  """Replaces `p` whole, never leaving a partial file (see `writing`)."""
  with writing(p, "wb") as f:
    f.write(data)


def write_text(p: PathLike, text: str) -> None:
  write_bytes(p, text.encode("utf-8"))


def write_json(p: PathLike, obj: Any, indent: int | None = 2) -> None:
  write_text(p, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def append_text(p: PathLike, text: str) -> None:
  """Appends (local), or rewrites the object with `text` added (object stores cannot append)."""
  p = path(p)
  if not is_remote(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(os.fspath(p), "a", encoding="utf-8") as f:
      f.write(text)
    return
  old = p.read_text(encoding="utf-8") if p.exists() else ""
  p.write_text(old + text, encoding="utf-8")


def copy(src: PathLike, dst: PathLike) -> None:
  src, dst = path(src), path(dst)
  dst.parent.mkdir(parents=True, exist_ok=True)
  if not is_remote(src) and not is_remote(dst):
    shutil.copyfile(os.fspath(src), os.fspath(dst))
  else:
    dst.write_bytes(src.read_bytes())


def rmtree(p: PathLike) -> None:
  """Removes a file or a directory tree; nothing if it does not exist."""
  p = path(p)
  if not p.exists():
    return
  if p.is_dir():
    p.rmtree()
  else:
    p.unlink()


def upload_tree(local_dir: str, dst: PathLike, last: Sequence[str] = ()) -> None:
  """Copies a local directory's files under `dst`; the files named in `last` go last."""
  dst = path(dst)
  files = []
  for root, _, names in os.walk(local_dir):
    for n in names:
      rel = os.path.relpath(os.path.join(root, n), local_dir)
      files.append(rel)
  files.sort(key=lambda rel: (rel in last, rel))
  for rel in files:
    target = dst.joinpath(*rel.split(os.sep))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(os.path.join(local_dir, rel), "rb") as f:
      target.write_bytes(f.read())


@contextlib.contextmanager
def staged_dir(out: PathLike, *, last: Sequence[str] = ()) -> Iterator[str]:
  """Yields a local directory to write a whole directory into; on success it replaces `out`.

  Local disks: `<out>.tmp` renamed onto `out` (readers never see half a directory). Object stores:
  a local temp dir uploaded file by file with the files in `last` (the completion markers readers
  test, e.g. config.json) uploaded last. On an error nothing is published.
  """
  out = path(out)
  if not is_remote(out):
    tmp = out.parent / f"{out.name}.tmp"
    rmtree(tmp)
    tmp.mkdir(parents=True)
    yield os.fspath(tmp)
    rmtree(out)
    os.replace(os.fspath(tmp), os.fspath(out))
    return
  with tempfile.TemporaryDirectory(prefix="r1jax-stage-") as tmp:
    yield tmp
    rmtree(out)
    upload_tree(tmp, out, last)


@contextlib.contextmanager
def local_copy(p: PathLike) -> Iterator[str]:
  """A local filename holding `p`'s bytes, for libraries that only open local files (`p` itself
  when it is local)."""
  if not is_remote(p):
    yield name(p)
    return
  with tempfile.TemporaryDirectory(prefix="r1jax-read-") as tmp:
    local = os.path.join(tmp, path(p).name)
    with open(local, "wb") as f:
      f.write(read_bytes(p))
    yield local
