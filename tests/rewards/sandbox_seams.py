"""Test seams shared by the sandbox and code-reward tests: a kernel that refuses unshare(2), and
an interpreter an unprivileged uid can reach."""
from __future__ import annotations

import os
import sys

from r1jax.rewards import sandbox as sandbox_lib

NAMESPACES = ("userns", "netns", "pidns", "ipcns", "mountns")


def refuse_namespaces(monkeypatch) -> list[dict]:
  """A run asking for any namespace fails its setup the way the slot server reports it. Returns
  the files of every run that got through (to check)."""
  monkeypatch.setattr(sandbox_lib, "_PROBED", {})  # a fresh probe, not cached for other tests
  real_run, ran = sandbox_lib.Sandbox._run, []

  def run(self, files, stdin, entry, mechanisms):
    namespaces = [m for m in mechanisms if m in NAMESPACES]
    if namespaces:
      return sandbox_lib.RunResult(sandbox_lib.SANDBOX_ERROR, None, "", "", detail=(
          f"{namespaces[0]}: unshare: Operation not permitted (errno 1)"))
    ran.append(dict(files))
    return real_run(self, files, stdin, entry, mechanisms)

  monkeypatch.setattr(sandbox_lib.Sandbox, "_run", run)
  return ran


def python_for_uid_drop() -> str | None:
  """An interpreter (ELF, not a shim) that an unprivileged uid can reach without a private root:
  no directory above it closed to others (e.g. a 0700 /root). None when this host has none."""
  for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
    real = os.path.realpath(candidate)
    try:
      with open(real, "rb") as f:
        if f.read(4) != b"\x7fELF":
          continue
      parents = [os.path.dirname(real)]
      while parents[-1] != "/":
        parents.append(os.path.dirname(parents[-1]))
      if all(os.stat(d).st_mode & 0o001 for d in parents) and os.stat(real).st_mode & 0o001:
        return real
    except OSError:
      continue
  return None
