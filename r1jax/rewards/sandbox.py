"""Runs untrusted Python programs in limited child processes (the code reward's sandbox).

Each of `max_workers` slots owns a long-lived slot server (sandbox_server.py), which forks a job
per run: the job enters the namespaces, an init builds the private root and enforces the wall
clock, and the program runs under the limits below. This module is the grader's side: it writes
a run's files, sends the job, reads back stdout/stderr and classifies the outcome (`RunResult`).

Isolation mechanisms, probed once per process (`Sandbox.mode` names the active ones, e.g.
"netns+pidns+ipcns+mountns+uid+seccomp+rlimits"; an unavailable one is logged and dropped):
  userns   (non-root only) a user namespace, so the namespaces below need no root.
  netns    a new network namespace: only a downed loopback, no route anywhere.
  pidns    a new pid namespace: the program's parent is a pid 1 it cannot signal, and when init
           exits the kernel kills everything left inside (background processes, fork bombs).
  ipcns    new IPC and UTS namespaces (no shared SysV IPC with the host).
  mountns  a new mount namespace and a chroot into a private, size-limited tmpfs holding read-only
           binds of the interpreter and system libraries, four device nodes, a fresh /proc and a
           writable /work; the host's files (the project, /tmp, /root) do not exist in there.
  uid      (root only) the program runs as an unprivileged uid unique to its worker slot, so
           RLIMIT_NPROC counts only its own processes and file permissions apply.
  seccomp  socket(2) and io_uring_setup(2) fail with EACCES; foreign syscall ABIs kill.
  audit    (only when mountns is unavailable) a Python audit hook refusing opens outside the work
           dir, sockets, subprocesses, signals and ctypes: a last layer; native code bypasses it.
  rlimits  always: CPU seconds, address space, processes+threads, file size (which caps the
           captured stdout/stderr), open files, stack (64 MiB), no core dumps.

Without pidns the program gets its own process group, killed after each run; with uid (and no
pidns) every process of the slot's uid is killed too, so a `setsid` daemon cannot outlive its run.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import platform
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Mapping, Sequence

from r1jax.rewards import sandbox_server

log = logging.getLogger(__name__)

MECHANISMS = ("userns", "netns", "pidns", "ipcns", "mountns", "uid", "seccomp", "audit", "rlimits")
OK, CRASH, TIMEOUT, MEMORY, OUTPUT_LIMIT, SANDBOX_ERROR = (
    "ok", "crash", "timeout", "memory", "output_limit", "sandbox_error")

# Every program starts through this launcher (`python -I -S -B -c LAUNCHER main.py`): skipping
# `site` saves ~45 ms of CPU per run (a .pth file imports certifi), so it puts back what programs
# use from it (`exit`, `quit`) and runs the entry file in `__main__`. Programs get the standard
# library only. `{guard}` is empty, or the audit hook when no mount namespace hides the host.
_LAUNCHER = r"""
import builtins, sys
builtins.exit = builtins.quit = sys.exit
{guard}
sys.argv = sys.argv[1:]
__file__ = sys.argv[0]
with open(__file__, "rb") as __r1jax_file:
  __r1jax_code = compile(__r1jax_file.read(), __file__, "exec")
del builtins, sys, __r1jax_file
exec(__r1jax_code)
"""

_AUDIT_GUARD = r"""
def __r1jax_install_guard():
  import os
  work = os.path.realpath(os.getcwd())
  readable = tuple(sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix,
      sys.exec_prefix, "/usr", "/lib", "/lib64", "/etc/localtime", "/dev/null", "/dev/urandom")}))
  refused = {"socket.__new__", "socket.connect", "socket.bind", "os.system", "os.exec", "os.fork",
             "os.forkpty", "os.posix_spawn", "os.spawn", "subprocess.Popen", "os.kill",
             "os.killpg", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "os.chroot"}
  path_events = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown",
                 "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.rmtree"}
  def inside(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)
  def hook(event, args):
    if event in refused or (event == "import" and args[0] in ("ctypes", "_ctypes")):
      raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" or event in path_events:
      path = args[0]
      if path is None or isinstance(path, int):
        return
      path = os.path.realpath(os.fsdecode(path))
      writes = event != "open" or (args[1] is not None and any(c in args[1] for c in "wax+"))
      write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT
      writes = writes or (event == "open" and bool(args[2] & write_flags))
      if inside(path, (work, "/dev/null")) or (not writes and inside(path, readable)):
        return
      raise PermissionError(f"sandbox: {path} is outside the sandbox")
  sys.addaudithook(hook)
__r1jax_install_guard()
del __r1jax_install_guard
"""


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  """Per-run limits. `cpu_s` is rounded up to whole seconds (RLIMIT_CPU)."""

  wall_s: float = 4.0
  cpu_s: float = 2.0
  memory_bytes: int = 256 << 20        # RLIMIT_AS
  max_processes: int = 16              # RLIMIT_NPROC: processes + threads of the program's uid
  max_output_bytes: int = 1 << 20      # RLIMIT_FSIZE: caps captured stdout/stderr and any file
  max_open_files: int = 64
  max_disk_bytes: int = 32 << 20       # size of the private root tmpfs (mountns)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if not value > 0:
        raise ValueError(f"SandboxLimits.{field.name} must be > 0, got {value!r}")


@dataclasses.dataclass
class RunResult:
  status: str              # ok | crash | timeout | memory | output_limit | sandbox_error
  exit_code: int | None    # negative: killed by that signal; None: no status (killed parent, …)
  stdout: str
  stderr: str              # at most the last 4 KiB
  wall_s: float = 0.0
  cpu_s: float = 0.0
  detail: str = ""         # why a sandbox_error happened


class _SlotServer:
  """One long-lived server process per worker slot; restarted if it dies or hangs."""

  def __init__(self, python: str):
    self.python = python
    self.proc: subprocess.Popen | None = None
    self._buffer = b""

  def _start(self) -> None:
    self.proc = subprocess.Popen(
        sandbox_server.command(self.python),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, start_new_session=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    self._buffer = b""

  def stop(self) -> None:
    if self.proc is not None:
      try:
        os.killpg(self.proc.pid, signal.SIGKILL)
      except OSError:
        pass
      self.proc.wait()
      for stream in (self.proc.stdin, self.proc.stdout):
        stream.close()
      self.proc = None

  def request(self, job: dict, timeout_s: float) -> dict | None:
    """Sends a job; returns the reply, or None when the server died or missed the deadline."""
    if self.proc is None or self.proc.poll() is not None:
      self.stop()
      self._start()
    deadline = time.monotonic() + timeout_s
    try:
      self.proc.stdin.write(json.dumps(job).encode() + b"\n")
      self.proc.stdin.flush()
      fd = self.proc.stdout.fileno()
      while b"\n" not in self._buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
          raise TimeoutError
        chunk = os.read(fd, 65536)
        if not chunk:
          raise EOFError
        self._buffer += chunk
    except (OSError, TimeoutError, EOFError):
      self.stop()  # its job has PDEATHSIG set, so it dies with the server
      return None
    line, _, self._buffer = self._buffer.partition(b"\n")
    return json.loads(line)


def _bind_paths(python: str) -> list[str]:
  """Host paths the program's root needs: system dirs, the interpreter's prefix, two /etc files."""
  prefix = os.path.dirname(os.path.dirname(python))
  wanted = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc/ld.so.cache", "/etc/localtime",
            os.path.realpath(sys.base_prefix), prefix]
  paths: list[str] = []
  for path in wanted:
    if not os.path.lexists(path) or path in paths:
      continue
    if any(path.startswith(p + "/") for p in paths if not os.path.islink(p)):
      continue  # already visible through a parent bind
    paths.append(path)
  return paths


def _default_mechanisms() -> tuple[str, ...]:
  base = ("netns", "pidns", "ipcns", "mountns")
  extra = ("uid",) if os.geteuid() == 0 else ()
  seccomp = ("seccomp",) if platform.machine() in sandbox_server.SECCOMP_ARCH else ()
  return (("userns",) if os.geteuid() != 0 else ()) + base + extra + seccomp + ("rlimits",)


_UID_SLOTS = iter(range(1 << 30))
_UID_LOCK = threading.Lock()
_PROBED: dict[tuple, tuple[str, ...]] = {}


def _next_uid() -> int:
  """A uid no other live sandbox in this process (or, by pid, on this host) is using."""
  with _UID_LOCK:
    slot = next(_UID_SLOTS) % 256
  return 1_000_000 + (os.getpid() % 50_000) * 256 + slot


class Sandbox:
  """Runs programs with `SandboxLimits` in up to `max_workers` concurrent isolated processes.

  `run` is thread-safe and blocks for a free worker slot; `run_many` grades a batch concurrently.
  `mechanisms=None` probes what this machine allows (see the module docstring); pass a subset to
  force a weaker mode (e.g. for tests). Call `close()` (or let it be collected) to stop the servers.
  """

  def __init__(self, limits: SandboxLimits = SandboxLimits(), max_workers: int | None = None,
               mechanisms: Sequence[str] | None = None, python: str | None = None,
               tmp_root: str | None = None):
    if not sys.platform.startswith("linux"):
      raise RuntimeError("the code sandbox needs Linux (namespaces, prctl, rlimits)")
    self.limits = limits
    self.max_workers = max_workers or len(os.sched_getaffinity(0))
    if not 1 <= self.max_workers <= 256:
      raise ValueError(f"Sandbox.max_workers must be in [1, 256], got {self.max_workers}")
    self.python = os.path.realpath(python or sys.executable)
    self.tmp_root = tmp_root or tempfile.gettempdir()
    self._binds = _bind_paths(self.python)
    self._servers = [_SlotServer(self.python) for _ in range(self.max_workers)]
    self._uids = [_next_uid() for _ in range(self.max_workers)]
    self._free: queue.Queue[int] = queue.Queue()
    for slot in range(self.max_workers):
      self._free.put(slot)
    self._pool = concurrent.futures.ThreadPoolExecutor(self.max_workers, "sandbox")
    self._finalizer = weakref.finalize(self, Sandbox._shutdown, self._servers, self._pool)
    requested = tuple(mechanisms) if mechanisms is not None else _default_mechanisms()
    unknown = set(requested) - set(MECHANISMS)
    if unknown:
      raise ValueError(f"Sandbox.mechanisms: unknown {sorted(unknown)}; known: {MECHANISMS}")
    key = (self.python, requested, os.geteuid(), mechanisms is None)
    if key not in _PROBED:
      _PROBED[key] = self._probe(requested, auto=mechanisms is None)
    self.mechanisms = _PROBED[key]
    self.mode = "+".join(self.mechanisms)

  @property
  def uids(self) -> tuple[int, ...]:
    return tuple(self._uids) if "uid" in self.mechanisms else ()

  def _probe(self, requested: tuple[str, ...], auto: bool):
    """Runs `print(6*7)` with the requested mechanisms, dropping any that fail, and logs it."""
    active = [m for m in requested if m != "audit"]
    dropped: list[str] = []
    while True:
      mechs = tuple(active) + (("audit",) if "mountns" not in active and
                               ("audit" in requested or auto) else ())
      result = self._run({"main.py": "print(6 * 7)"}, "", "main.py", mechs)
      if result.status == OK and result.stdout.strip() == "42":
        break
      culprit = result.detail.split(":", 1)[0] if result.status == SANDBOX_ERROR else ""
      if culprit not in active:  # an exec/start failure: the fragile mechanisms first
        culprit = next((m for m in ("mountns", "uid", "seccomp", "userns", "pidns", "netns",
                                    "ipcns") if m in active), "")
      if not culprit:
        raise RuntimeError(f"sandbox: cannot run {self.python} even without isolation: "
                           f"{result.status} {result.detail} {result.stderr[-500:]}")
      log.warning("sandbox: %s unavailable here (%s); continuing without it", culprit,
                  result.detail or f"{result.status}: {result.stderr[-200:]}")
      active.remove(culprit)
      dropped.append(culprit)
    log.info("sandbox: active isolation = %s%s", "+".join(mechs),
             f"; unavailable: {', '.join(dropped)}" if dropped else "")
    return mechs

  def run(self, files: Mapping[str, str], stdin: str = "", entry: str = "main.py") -> RunResult:
    """Runs `python <entry>` in a fresh directory holding `files`, feeding `stdin`."""
    return self._run(files, stdin, entry, self.mechanisms)

  def run_many(self, requests: Sequence[tuple[Mapping[str, str], str, str]]) -> list[RunResult]:
    """Runs (files, stdin, entry) requests concurrently; results in the same order."""
    return list(self._pool.map(lambda r: self.run(*r), requests))

  def _run(self, files: Mapping[str, str], stdin: str, entry: str,
           mechanisms: tuple[str, ...]) -> RunResult:
    for name in files:
      if not name or "/" in name or name.startswith("."):
        raise ValueError(f"sandbox file name {name!r}: must be a plain name, no '/', no dot first")
    slot = self._free.get()
    tmp = tempfile.mkdtemp(prefix="r1jax-sbx-", dir=self.tmp_root)
    try:
      return self._run_in(tmp, slot, files, stdin, entry, mechanisms)
    except Exception as e:  # noqa: BLE001 — a sandbox failure is a result, never an exception
      log.warning("sandbox: run failed", exc_info=True)
      return RunResult(SANDBOX_ERROR, None, "", "", detail=f"grader: {type(e).__name__}: {e}")
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
      self._free.put(slot)

  def _run_in(self, tmp: str, slot: int, files: Mapping[str, str], stdin: str, entry: str,
              mechanisms: tuple[str, ...]) -> RunResult:
    uid = self._uids[slot] if "uid" in mechanisms else os.geteuid()
    gid = uid if "uid" in mechanisms else os.getegid()
    os.chmod(tmp, 0o711)
    with open(os.path.join(tmp, "stdin"), "w", encoding="utf-8") as f:
      f.write(stdin)
    for name in ("stdout", "stderr"):
      open(os.path.join(tmp, name), "wb").close()
    work = os.path.join(tmp, "work")
    os.mkdir(work, 0o700)
    for name, text in files.items():
      with open(os.path.join(work, name), "w", encoding="utf-8") as f:
        f.write(text)
    if "mountns" in mechanisms:
      os.mkdir(os.path.join(tmp, "root"))
    elif "uid" in mechanisms:
      for path in [work] + [os.path.join(work, n) for n in files]:
        os.chown(path, uid, gid)
    home = "/work" if "mountns" in mechanisms else work
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": home, "TMPDIR": home}
    launcher = _LAUNCHER.format(guard=_AUDIT_GUARD if "audit" in mechanisms else "")
    job = {"dir": tmp, "entry": entry, "python": self.python, "env": env, "launcher": launcher,
           "mechanisms": list(mechanisms), "uid": uid, "gid": gid, "binds": self._binds,
           "limits": dataclasses.asdict(self.limits)}
    reply = self._servers[slot].request(job, timeout_s=self.limits.wall_s + 15.0)
    with open(os.path.join(tmp, "stdout"), "rb") as f:
      stdout_bytes = f.read(self.limits.max_output_bytes + 1)
    with open(os.path.join(tmp, "stderr"), "rb") as f:
      f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
      stderr = f.read().decode("utf-8", errors="replace")
    return _classify(reply, stdout_bytes, stderr, self.limits)

  def close(self) -> None:
    self._finalizer()

  @staticmethod
  def _shutdown(servers: list[_SlotServer], pool: concurrent.futures.ThreadPoolExecutor) -> None:
    pool.shutdown(wait=False, cancel_futures=True)
    for server in servers:
      server.stop()

  def __enter__(self) -> "Sandbox":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "out of memory", "std::bad_alloc")


def _classify(reply: dict | None, stdout_bytes: bytes, stderr: str,
              limits: SandboxLimits) -> RunResult:
  stdout = stdout_bytes.decode("utf-8", errors="replace")
  if reply is None:
    return RunResult(SANDBOX_ERROR, None, stdout, stderr, detail="server died or hung")
  if "setup_error" in reply:
    return RunResult(SANDBOX_ERROR, None, stdout, stderr, detail=reply["setup_error"])
  wall, cpu = float(reply.get("wall_s", 0.0)), float(reply.get("cpu_s", 0.0))
  if "status" not in reply:  # init died before reporting: the program killed its parent
    return RunResult(CRASH, None, stdout, stderr, detail="no exit status (parent killed)")
  code = os.waitstatus_to_exitcode(reply["status"])
  if reply.get("timed_out") or code == -signal.SIGXCPU or (
      code == -signal.SIGKILL and cpu >= math.ceil(limits.cpu_s) - 0.05):
    status = TIMEOUT
  elif code != 0 and any(m in stderr for m in _MEMORY_MARKERS):
    status = MEMORY
  elif len(stdout_bytes) >= limits.max_output_bytes or "File too large" in stderr or (
      code == -signal.SIGXFSZ):
    status = OUTPUT_LIMIT
  elif code != 0:
    status = CRASH
  else:
    status = OK
  return RunResult(status, code, stdout, stderr, wall, cpu)
