"""A kernel that refuses unshare(2), for the sandbox and code-reward tests."""
from __future__ import annotations

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
