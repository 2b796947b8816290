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
           binds of the interpreter binary, its standard library and the dirs of the shared
           libraries it loads (probed once: `_INSPECT_PYTHON`), the loader's /lib* dirs, locales
           and tz data, four device nodes, a fresh /proc and a writable /work. The host's files
           (the project, /tmp, /root, /usr/bin, the rest of /usr/lib) do not exist in there; any
           Python package dir inside the binds (site-packages, dist-packages, python-wheels,
           ensurepip's wheels) is hidden under an empty read-only tmpfs. So: the standard library
           only, plus the `allowed_packages`, bound read-only at /packages/<name>.
  uid      (root only) the program runs as an unprivileged uid unique to its worker slot, so
           RLIMIT_NPROC counts only its own processes and file permissions apply.
  seccomp  socket(2) and io_uring_setup(2) fail with EACCES; foreign syscall ABIs kill.
  audit    (only when mountns is unavailable) a Python audit hook refusing opens outside the work
           dir and the standard library, sockets, subprocesses, signals and ctypes: a last layer
           that a Python program can switch off (e.g. via `gc`), so it contains nothing alone.
  rlimits  always: CPU seconds, address space, processes+threads, file size (which caps the
           captured stdout/stderr), open files, stack (64 MiB), no core dumps.

Without pidns the program gets its own process group, killed after each run; with uid (and no
pidns) every process of the slot's uid is killed too, so a `setsid` daemon cannot outlive its run.

What a Sandbox refuses to start with (RuntimeError naming what is missing and why):
  - a mode without all of mountns, netns and pidns (`REQUIRED`): the rest cannot contain a hostile
    program (the audit hook is bypassable from Python), unless `unsafe_allow_weak_sandbox=True`;
  - any mode, unsafe or not, where the program would run as root (root without the uid mechanism,
    e.g. an interpreter under a 0700 directory that the slot uid cannot reach without mountns).
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
# Without these a hostile program is not contained; the others are extra layers.
REQUIRED = ("mountns", "netns", "pidns")
_WEAK_OPT_IN = ("set unsafe_allow_weak_sandbox=True in the code reward options (Sandbox("
                "unsafe_allow_weak_sandbox=True)) to run anyway")
OK, CRASH, TIMEOUT, MEMORY, OUTPUT_LIMIT, SANDBOX_ERROR = (
    "ok", "crash", "timeout", "memory", "output_limit", "sandbox_error")

# Every program starts through this launcher (`python -I -S -B -c LAUNCHER main.py`): skipping
# `site` saves ~45 ms of CPU per run (a .pth file imports certifi), so it puts back what programs
# use from it (`exit`, `quit`) and runs the entry file in `__main__`. Programs get the standard
# library only (and the allowed packages, whose dirs `{paths}` appends to sys.path). `{guard}` is
# empty, or the audit hook when no mount namespace hides the host.
_LAUNCHER = r"""
import builtins, sys
builtins.exit = builtins.quit = sys.exit
{paths}
{guard}
sys.argv = sys.argv[1:]
__file__ = sys.argv[0]
with open(__file__, "rb") as __r1jax_file:
  __r1jax_code = compile(__r1jax_file.read(), __file__, "exec")
del builtins, sys, __r1jax_file
exec(__r1jax_code)
"""

# `readable`: what mountns would bind (the interpreter, its standard library, library dirs, tz
# data); `hidden`: the host package dirs inside them; `packages`: the allowed packages' paths.
# Appended: the call with the three (repr'd).
_AUDIT_GUARD = r"""
def __r1jax_install_guard(readable, hidden, packages):
  import os
  work = os.path.realpath(os.getcwd())
  readable = tuple(sorted({os.path.realpath(p) for p in readable + ("/dev/null", "/dev/urandom")}))
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
      if inside(path, (work, "/dev/null")):
        return
      if not writes and inside(path, readable) and (
          not inside(path, hidden) or inside(path, packages)):
        return
      raise PermissionError(f"sandbox: {path} is outside the sandbox")
  sys.addaudithook(hook)
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
    self.proc.stdin.write(sandbox_server.boot_line())  # the server's source: not in its argv
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


def _bind_paths(python: str, inspected: dict, packages: Sequence[tuple[str, str]]) -> list[str]:
  """Host paths the program's root needs: the interpreter binary, its standard library, the dirs
  of the shared libraries it loads, the loader's /lib* dirs, locales, tz data and two /etc files.
  Not the interpreter's prefix, /usr or /usr/lib as a whole: they hold Python trees (dist-packages,
  python-wheels, SDKs' vendored third_party dirs) that a program could put on sys.path."""
  skip = [source for source, _ in packages]
  libraries = []
  for library in inspected["libraries"]:
    if os.path.realpath(library) == python:
      continue  # the interpreter binary itself (bound alone)
    folder = os.path.dirname(os.path.realpath(library))
    if any(folder == p or folder.startswith(p + "/") for p in skip):
      continue  # an allowed package's own libraries: bound at /packages
    if set(folder.split("/")) & set(_PACKAGE_DIR_NAMES):
      continue  # a host package's library (a .pth file imported it): never bound
    libraries.append(folder)
  wanted = [python, *(os.path.realpath(p) for p in inspected["stdlib_dirs"]), *sorted(libraries),
            "/lib", "/lib64", "/lib32", "/libx32", "/usr/lib64", "/usr/lib32", "/usr/libx32",
            "/usr/lib/locale", "/usr/share/zoneinfo", "/etc/ld.so.cache", "/etc/localtime"]
  wanted = [p for p in dict.fromkeys(wanted) if os.path.lexists(p)]
  dirs = [p for p in wanted if os.path.isdir(p) and not os.path.islink(p)]
  # A path already visible through a bound parent dir is not bound again.
  return [p for p in wanted if not any(p.startswith(d.rstrip("/") + "/") for d in dirs)]


_PACKAGE_DIR_NAMES = ("site-packages", "dist-packages", "python-wheels")
_MASKS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _package_dirs(binds: Sequence[str], depth: int = 4) -> tuple[str, ...]:
  """Python package dirs inside the bound dirs (names as `_PACKAGE_DIR_NAMES`, and ensurepip's
  bundled wheels), at most `depth` levels down: `mountns` hides each under an empty tmpfs."""
  key = tuple(binds)
  if key in _MASKS:
    return _MASKS[key]
  roots = [p for p in binds if os.path.isdir(p) and not os.path.islink(p)]
  found: set[str] = set()
  stack = [(root, 0) for root in roots]
  while stack:
    path, level = stack.pop()
    try:
      entries = list(os.scandir(path))
    except OSError:
      continue
    for entry in entries:
      if not entry.is_dir(follow_symlinks=False):
        continue
      if entry.name in _PACKAGE_DIR_NAMES or (
          entry.name == "_bundled" and os.path.basename(path) == "ensurepip"):
        found.add(entry.path)
      elif level + 1 < depth and entry.name != "__pycache__":
        stack.append((entry.path, level + 1))
  # Nested ones are hidden with their parent.
  masks = tuple(sorted(p for p in found if not any(p.startswith(q + "/") for q in found)))
  _MASKS[key] = masks
  return masks


# Run by the sandbox's interpreter (as the grader would import it, site included): where each
# allowed name's package lives, the standard library's module names and dirs, and the shared
# libraries mapped once every extension module of the standard library and the allowed packages
# is loaded (the dirs mountns binds).
_INSPECT_PYTHON = r"""
import importlib, importlib.util, json, os, sys
names = json.loads(sys.argv[1])
dynload = [p for p in sys.path if p.endswith("lib-dynload")]
stdlib_dirs = [os.path.dirname(os.__file__)] + dynload
sys.path = [p for p in sys.path if p]  # not the current directory
found = {}
for name in names:
  try:
    spec = importlib.util.find_spec(name)
  except (ImportError, ValueError):
    spec = None
  found[name] = None if spec is None else {
      "origin": spec.origin, "locations": list(spec.submodule_search_locations or [])}
for folder in dynload:
  for file in sorted(os.listdir(folder)):
    names.append(file.split(".")[0])
for name in names:
  try:
    importlib.import_module(name)
  except BaseException:
    pass
libraries = set()
with open("/proc/self/maps") as f:
  for line in f:
    fields = line.split(None, 5)
    path = fields[5].strip() if len(fields) == 6 else ""
    if path.startswith("/") and not path.startswith(("/proc/", "/dev/", "/memfd:")):
      libraries.add(path)
print(json.dumps({"found": found, "stdlib_names": sorted(getattr(sys, "stdlib_module_names", ())),
                  "stdlib_dirs": stdlib_dirs, "libraries": sorted(libraries)}))
"""
_INSPECTED: dict[tuple, dict] = {}


def _inspect_python(python: str, names: Sequence[str]) -> dict:
  """`_INSPECT_PYTHON`'s answer for `python` (as given: a venv's python finds the venv's
  packages); RuntimeError when it cannot be run."""
  key = (python, tuple(names))
  if key not in _INSPECTED:
    proc = None
    try:
      proc = subprocess.run([python, "-I", "-c", _INSPECT_PYTHON, json.dumps(list(names))],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
      _INSPECTED[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError) as e:
      stderr = proc.stderr[-500:] if proc is not None else ""
      raise RuntimeError(f"sandbox: cannot run {python} to list the libraries and packages it "
                         f"loads: {type(e).__name__}: {e} {stderr}") from e
  return _INSPECTED[key]


def _resolve_packages(inspected: dict, python: str,
                      names: Sequence[str]) -> list[tuple[str, str]]:
  """(host path, name under /packages) for each allowed top-level package, with its vendored
  `<name>.libs` dir (auditwheel's shared libraries) when it has one; ValueError naming a bad one."""
  binds: list[tuple[str, str]] = []
  for i, name in enumerate(names):
    info = inspected["found"].get(name)
    if name in inspected["stdlib_names"]:
      raise ValueError(f"allowed_packages[{i}]: {name!r} is part of the standard library, which "
                       f"programs always get")
    if info is None:
      raise ValueError(f"allowed_packages[{i}]: {name!r} is not importable by {python}")
    if info["locations"]:
      if len(info["locations"]) != 1:
        raise ValueError(f"allowed_packages[{i}]: {name!r} is a namespace package spread over "
                         f"{info['locations']}; only single-directory packages can be bound")
      source, target = os.path.realpath(info["locations"][0]), name
    elif info["origin"] and os.path.isfile(info["origin"]):
      source = os.path.realpath(info["origin"])
      target = os.path.basename(info["origin"])  # a module file: name.py, name.cpython-….so
    else:
      raise ValueError(f"allowed_packages[{i}]: {name!r} has no file to bind ({info['origin']})")
    binds.append((source, target))
    libs = os.path.join(os.path.dirname(source), f"{name}.libs")
    if os.path.isdir(libs):
      binds.append((os.path.realpath(libs), f"{name}.libs"))
  return list(dict.fromkeys(binds))


def _check_package_names(names: Sequence[str]) -> list[str]:
  if isinstance(names, (str, bytes)):
    raise ValueError(f"allowed_packages must be a list of package names, got the string {names!r}")
  names = list(names)
  for i, name in enumerate(names):
    if not isinstance(name, str) or not name.isidentifier():
      raise ValueError(f"allowed_packages[{i}]: {name!r} is not a top-level package name "
                       f"(an identifier, e.g. 'numpy'; no dots)")
  return names


def _default_mechanisms() -> tuple[str, ...]:
  base = ("netns", "pidns", "ipcns", "mountns")
  extra = ("uid",) if os.geteuid() == 0 else ()
  seccomp = ("seccomp",) if platform.machine() in sandbox_server.SECCOMP_ARCH else ()
  return (("userns",) if os.geteuid() != 0 else ()) + base + extra + seccomp + ("rlimits",)


def _missing_text(mechanisms: Sequence[str], dropped: Mapping[str, str]) -> str:
  """'netns unavailable (netns: unshare: …), pidns not requested', with a hint for userns."""
  missing = [m for m in REQUIRED if m not in mechanisms]
  if dropped.get("userns", "").startswith("unavailable") and "userns" not in mechanisms:
    missing.insert(0, "userns")
  parts = [f"{m} {dropped.get(m, 'unavailable')}" for m in missing]
  text = ", ".join(parts) or "nothing missing"
  if "userns" in missing:
    text = ("user namespaces refused by the kernel (see sysctls kernel.unprivileged_userns_clone, "
            "user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns, or the "
            f"container's seccomp profile): {text}")
  return text


_UID_SLOTS = iter(range(1 << 30))
_UID_LOCK = threading.Lock()
_PROBED: dict[tuple, tuple[tuple[str, ...], dict[str, str]]] = {}  # -> (active, why dropped)


def _next_uid() -> int:
  """A uid no other live sandbox in this process (or, by pid, on this host) is using."""
  with _UID_LOCK:
    slot = next(_UID_SLOTS) % 256
  return 1_000_000 + (os.getpid() % 50_000) * 256 + slot


class Sandbox:
  """Runs programs with `SandboxLimits` in up to `max_workers` concurrent isolated processes.

  `run` is thread-safe and blocks for a free worker slot; `run_many` grades a batch concurrently.
  `mechanisms=None` probes what this machine allows (see the module docstring); pass a subset to
  force a weaker mode (e.g. for tests). A mode without all of `REQUIRED` raises RuntimeError
  unless `unsafe_allow_weak_sandbox=True`; one that would run programs as root always raises.
  `allowed_packages` names top-level packages (as `python` imports them, e.g. ("numpy",)) whose
  directories are bound read-only for programs to import; the standard library is always there.
  Call `close()` (or let it be collected) to stop the servers.
  """

  def __init__(self, limits: SandboxLimits = SandboxLimits(), max_workers: int | None = None,
               mechanisms: Sequence[str] | None = None, python: str | None = None,
               tmp_root: str | None = None, allowed_packages: Sequence[str] = (),
               unsafe_allow_weak_sandbox: bool = False):
    if not sys.platform.startswith("linux"):
      raise RuntimeError("the code sandbox needs Linux (namespaces, prctl, rlimits)")
    if not isinstance(unsafe_allow_weak_sandbox, bool):
      raise ValueError(f"unsafe_allow_weak_sandbox must be True or False, got "
                       f"{unsafe_allow_weak_sandbox!r}")
    self.limits = limits
    self.max_workers = max_workers or len(os.sched_getaffinity(0))
    if not 1 <= self.max_workers <= 256:
      raise ValueError(f"Sandbox.max_workers must be in [1, 256], got {self.max_workers}")
    self.python = os.path.realpath(python or sys.executable)
    if not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
      raise RuntimeError(f"sandbox: cannot run {python or sys.executable}: not an executable file")
    self.tmp_root = tmp_root or tempfile.gettempdir()
    requested = tuple(mechanisms) if mechanisms is not None else _default_mechanisms()
    unknown = set(requested) - set(MECHANISMS)
    if unknown:
      raise ValueError(f"Sandbox.mechanisms: unknown {sorted(unknown)}; known: {MECHANISMS}")
    self.unsafe_allow_weak_sandbox = unsafe_allow_weak_sandbox
    if mechanisms is not None:  # refuse before anything runs
      self._check_mode(requested, {m: "not requested" for m in MECHANISMS if m not in requested})
    names = _check_package_names(allowed_packages)
    inspected = _inspect_python(python or sys.executable, names)
    self._packages = _resolve_packages(inspected, python or sys.executable, names)
    self.allowed_packages = tuple(names)
    self._binds = _bind_paths(self.python, inspected, self._packages)
    self._masks = _package_dirs(self._binds)
    reserved = [p for p in self._binds if p.split("/")[1] in ("work", "proc", "dev", "packages")]
    if reserved and "mountns" in requested:
      raise RuntimeError(f"sandbox: {reserved} would be bound where the private root keeps /work, "
                         f"/proc, /dev or /packages; use an interpreter installed elsewhere "
                         f"(python=…, e.g. a venv made without --copies)")
    self._servers = [_SlotServer(self.python) for _ in range(self.max_workers)]
    self._uids = [_next_uid() for _ in range(self.max_workers)]
    self._free: queue.Queue[int] = queue.Queue()
    for slot in range(self.max_workers):
      self._free.put(slot)
    self._pool = concurrent.futures.ThreadPoolExecutor(self.max_workers, "sandbox")
    self._finalizer = weakref.finalize(self, Sandbox._shutdown, self._servers, self._pool)
    key = (self.python, requested, os.geteuid(), mechanisms is None, tuple(self._binds),
           self._masks, tuple(self._packages))
    try:
      if key not in _PROBED:
        _PROBED[key] = self._probe(requested, auto=mechanisms is None)
      self.mechanisms, dropped = _PROBED[key]
      self.mode = "+".join(self.mechanisms)
      self._check_mode(self.mechanisms, dropped)
    except BaseException:
      self.close()
      raise
    if not set(REQUIRED) <= set(self.mechanisms):
      log.warning("sandbox: UNSAFE mode %s (unsafe_allow_weak_sandbox=True): %s", self.mode,
                  _missing_text(self.mechanisms, dropped))

  @property
  def uids(self) -> tuple[int, ...]:
    return tuple(self._uids) if "uid" in self.mechanisms else ()

  def _check_mode(self, mechanisms: Sequence[str], dropped: Mapping[str, str]) -> None:
    """Raises RuntimeError when `mechanisms` would run programs as root, or (without the opt-in)
    lack one of `REQUIRED`; `dropped` says why each missing one is missing."""
    problems = []
    weak = not set(REQUIRED) <= set(mechanisms)
    if weak and not self.unsafe_allow_weak_sandbox:
      problems.append(
          f"{_missing_text(mechanisms, dropped)}; the {'+'.join(mechanisms)} mode cannot contain "
          f"untrusted code (the audit hook is switched off from Python in a few lines); "
          f"{_WEAK_OPT_IN}")
    if os.geteuid() == 0 and "uid" not in mechanisms:
      problems.append(
          f"refusing to run untrusted programs as root: the uid mechanism (an unprivileged uid per "
          f"slot) is {dropped.get('uid', 'unavailable')}; unsafe_allow_weak_sandbox does not allow "
          f"this" + (f" (without mountns the slot uid must reach {self.python}: no 0700 "
                     f"directory above it)" if "mountns" not in mechanisms else ""))
    if problems:
      raise RuntimeError("sandbox: " + "; and ".join(problems))

  def _probe(self, requested: tuple[str, ...], auto: bool):
    """Runs `print(6*7)` with the requested mechanisms, dropping any that fail, and logs it.
    Returns (active mechanisms, {dropped mechanism: why}); raises before running as root."""
    active = [m for m in requested if m != "audit"]
    dropped = {m: "not requested" for m in MECHANISMS if m not in requested}
    while True:
      mechs = tuple(active) + (("audit",) if "mountns" not in active and
                               ("audit" in requested or auto) else ())
      if os.geteuid() == 0 and "uid" not in mechs:
        self._check_mode(mechs, dropped)  # raises: not even the probe runs as root
      result = self._run({"main.py": "print(6 * 7)"}, "", "main.py", mechs)
      if result.status == OK and result.stdout.strip() == "42":
        break
      culprit = result.detail.split(":", 1)[0] if result.status == SANDBOX_ERROR else ""
      if culprit == "root":  # the server refused to run the program as root
        raise RuntimeError(f"sandbox: {result.detail}")
      if culprit not in active:  # an exec/start failure: the fragile mechanisms first
        culprit = next((m for m in ("mountns", "uid", "seccomp", "userns", "pidns", "netns",
                                    "ipcns") if m in active), "")
      if not culprit:
        raise RuntimeError(f"sandbox: cannot run {self.python} even without isolation: "
                           f"{result.status} {result.detail} {result.stderr[-500:]}")
      why = result.detail or f"{result.status}: {result.stderr[-200:]}"
      log.warning("sandbox: %s unavailable here (%s); continuing without it", culprit, why)
      active.remove(culprit)
      dropped[culprit] = f"unavailable ({why})"
    unavailable = [m for m, why in dropped.items() if why != "not requested"]
    log.info("sandbox: active isolation = %s%s", "+".join(mechs),
             f"; unavailable: {', '.join(unavailable)}" if unavailable else "")
    return mechs, dropped

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

  def _launcher(self, mechanisms: Sequence[str]) -> str:
    if "mountns" in mechanisms:
      dirs = [sandbox_server.PACKAGES_DIR] if self._packages else []
    else:  # the host's dirs holding the packages (the audit hook hides the rest of them)
      dirs = list(dict.fromkeys(os.path.dirname(source) for source, _ in self._packages))
    paths = f"sys.path.extend({dirs!r})" if dirs else ""
    guard = ""
    if "audit" in mechanisms:
      sources = tuple(source for source, _ in self._packages)
      guard = (_AUDIT_GUARD + f"__r1jax_install_guard({tuple(self._binds)!r}, "
               f"{self._masks!r}, {sources!r})\ndel __r1jax_install_guard\n")
    return _LAUNCHER.format(paths=paths, guard=guard)

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
    job = {"dir": tmp, "entry": entry, "python": self.python, "env": env,
           "launcher": self._launcher(mechanisms), "mechanisms": list(mechanisms), "uid": uid,
           "gid": gid, "binds": self._binds, "masks": list(self._masks),
           "packages": [list(p) for p in self._packages], "limits": dataclasses.asdict(self.limits)}
    reply = self._servers[slot].request(job, timeout_s=self.limits.wall_s + 15.0)
    with open(os.path.join(tmp, "stdout"), "rb") as f:
      stdout_bytes = f.read(self.limits.max_output_bytes + 1)
    with open(os.path.join(tmp, "stderr"), "rb") as f:
      stderr_size = os.fstat(f.fileno()).st_size
      f.seek(max(0, stderr_size - 4096))
      stderr = f.read().decode("utf-8", errors="replace")
    return _classify(reply, stdout_bytes, stderr, self.limits, stderr_size)

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


def _classify(reply: dict | None, stdout_bytes: bytes, stderr: str, limits: SandboxLimits,
              stderr_size: int = 0) -> RunResult:
  """The run's status; `stderr` is the tail of a file of `stderr_size` bytes (both streams are
  capped at `limits.max_output_bytes` by RLIMIT_FSIZE: reaching it on either is output_limit)."""
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
  elif (len(stdout_bytes) >= limits.max_output_bytes or stderr_size >= limits.max_output_bytes
        or "File too large" in stderr or code == -signal.SIGXFSZ):
    status = OUTPUT_LIMIT
  elif code != 0:
    status = CRASH
  else:
    status = OK
  return RunResult(status, code, stdout, stderr, wall, cpu)
