"""The sandbox's slot server: the processes that isolate and run one untrusted program.

This file runs as its own program (`command`: `python -I -S -B`, the standard library only, never
importing r1jax), started once per worker slot by `sandbox.Sandbox` (an interpreter start and
the ctypes import are most of a run's cost, so they are paid once); each run is then forks.
The server's argv names no host path (this file's path comes as the first stdin line), because
the pid namespace's init, whose /proc/1/cmdline the program can read, is a fork of it:

  grader thread ──Popen──▶ slot server (reads jobs as JSON lines, forks per job)
                              └─fork─▶ job     (setsid; unshares the namespaces)
                                         └─fork─▶ init     (pid 1 of the new pid namespace: mounts
                                                            the private root, chroots, enforces the
                                                            wall clock, reports the exit status)
                                                   └─fork+exec─▶ program (rlimits, unprivileged
                                                                 uid, no_new_privs, seccomp)
Without pidns the job process is the init. The grader only ever talks to its slot server, so a
program that kills its parent kills an init (or, inside a pid namespace, cannot signal it at all).
A job is a dict: its directory (stdin, stdout, stderr, work/), entry file, python, env, launcher
source (`python -c`), mechanisms, uid/gid, read-only binds, masks (directories inside the binds
hidden under an empty read-only tmpfs: the host's site-packages), packages ((host path, name)
pairs bound read-only at /packages/<name>) and limits; the reply is the exit status, wall and CPU
seconds, or `setup_error` naming the mechanism that failed. The program never runs as uid 0: a
job that would is refused (`setup_error` "root: …").
"""
from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import platform
import resource
import shutil
import signal
import sys
import time

# Linux ABI constants (include/uapi/linux/sched.h, mount.h, prctl.h, seccomp.h, filter.h).
_CLONE = {"userns": 0x10000000, "netns": 0x40000000, "pidns": 0x20000000,
          "ipcns": 0x08000000 | 0x04000000, "mountns": 0x00020000}
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_SECCOMP, _PR_SET_NO_NEW_PRIVS = 1, 22, 38
# statvfs flags that a bind remount inside a user namespace must keep (ST_* -> MS_*).
_LOCKED_FLAGS = ((2, _MS_NOSUID), (4, _MS_NODEV), (8, _MS_NOEXEC), (1024, 1024), (2048, 2048),
                 (4096, 1 << 21))
# (audit arch, socket nr, io_uring_setup nr) per machine; seccomp is skipped elsewhere.
SECCOMP_ARCH = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}

_SERVER_MAIN = "__slot_server__"
PACKAGES_DIR = "/packages"  # where allowed packages appear in the private root
# Starts a slot server from this file's source without putting its directory (which holds
# math.py, code.py) on sys.path, where it would shadow the standard library. The source's path is
# the first stdin line, not an argument: argv is readable by the program (/proc/1/cmdline).
_BOOT = ("import sys,types;sys.path=[p for p in sys.path if p];m=types.ModuleType(%r);"
         "f=sys.stdin.buffer.readline().decode().rstrip('\\n');m.__file__=f;"
         "sys.modules[m.__name__]=m;exec(compile(open(f).read(),f,'exec'),m.__dict__)"
         % _SERVER_MAIN)


def command(python: str) -> list[str]:
  """The argv that starts a slot server with `python`; send `boot_line()` first on its stdin."""
  return [python, "-I", "-S", "-B", "-c", _BOOT]


def boot_line() -> bytes:
  """The first stdin line a slot server reads: the path of this file."""
  return os.fsencode(os.path.abspath(__file__)) + b"\n"


class _SetupError(Exception):
  """A sandbox step failed; the message starts with the mechanism's name (for the probe)."""


_LIBC = None


def _libc():
  global _LIBC
  if _LIBC is None:
    _LIBC = ctypes.CDLL(None, use_errno=True)
  return _LIBC


def _check(ret: int, what: str) -> None:
  if ret != 0:
    err = ctypes.get_errno()
    raise _SetupError(f"{what}: {os.strerror(err)} (errno {err})")


def _mount(source, target, fstype, flags, data=None, what="mountns") -> None:
  enc = lambda s: None if s is None else os.fsencode(s)
  _check(_libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
         f"{what}: mount {target}")


def _prctl(option: int, arg: int, what: str) -> None:
  _check(_libc().prctl(option, ctypes.c_ulong(arg), 0, 0, 0), what)


def _report(fd: int, **fields) -> None:
  """One JSON line to the server's status pipe (short, so the write is atomic)."""
  line = json.dumps(fields)[:3000] + "\n"
  try:
    os.write(fd, line.encode())
  except OSError:
    pass


def _enter_namespaces(job: dict) -> None:
  mechs = job["mechanisms"]
  if "userns" in mechs:
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc().unshare(_CLONE["userns"]), "userns: unshare")
    # Identity map: the program keeps a non-zero uid, so exec drops the namespace's capabilities.
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
      try:
        with open(f"/proc/self/{name}", "w") as f:
          f.write(text)
      except OSError as e:
        raise _SetupError(f"userns: write {name}: {e}") from e
  for name in ("netns", "ipcns", "mountns", "pidns"):
    if name in mechs:
      _check(_libc().unshare(_CLONE[name]), f"{name}: unshare")


def _bind_readonly(source: str, target: str) -> None:
  _mount(source, target, None, _MS_BIND)
  flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
  locked = os.statvfs(source).f_flag
  for st, ms in _LOCKED_FLAGS:
    if locked & st:
      flags |= ms
  _mount(None, target, None, flags)


def _build_root(job: dict) -> None:
  """Private root: tmpfs + read-only binds + devices + /proc + /work; then chroot into it."""
  root = os.path.join(job["dir"], "root")
  limits = job["limits"]
  _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing below propagates to the host
  _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV,
         f"size={limits['max_disk_bytes']},nr_inodes=4096,mode=755")
  for path in job["binds"]:
    target = root + path
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if os.path.islink(path):
      os.symlink(os.readlink(path), target)
      continue
    if os.path.isdir(path):
      os.makedirs(target, mode=0o755, exist_ok=True)
    else:
      open(target, "w").close()
    _bind_readonly(path, target)
  for path in job.get("masks", ()):  # host site-packages inside the binds: an empty, read-only dir
    _mount("tmpfs", root + path, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
           "size=4k,nr_inodes=16,mode=555")
  if job.get("packages"):
    os.mkdir(root + PACKAGES_DIR, 0o755)
    for source, name in job["packages"]:
      target = f"{root}{PACKAGES_DIR}/{name}"
      if os.path.isdir(source):
        os.mkdir(target, 0o755)
      else:
        open(target, "w").close()
      _bind_readonly(source, target)
  os.mkdir(root + "/dev", 0o755)
  for name in ("null", "zero", "random", "urandom"):
    open(f"{root}/dev/{name}", "w").close()
    _mount(f"/dev/{name}", f"{root}/dev/{name}", None, _MS_BIND)
  if "pidns" in job["mechanisms"]:
    os.mkdir(root + "/proc", 0o555)
    _mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
  os.makedirs(root + "/etc", mode=0o755, exist_ok=True)
  with open(root + "/etc/passwd", "w") as f:
    f.write(f"root:x:0:0::/:/bin/false\nsandbox:x:{job['uid']}:{job['gid']}::/work:/bin/false\n")
  work = root + "/work"
  os.mkdir(work, 0o700)
  host_work = os.path.join(job["dir"], "work")
  for name in os.listdir(host_work):
    shutil.copyfile(os.path.join(host_work, name), os.path.join(work, name))
  if "uid" in job["mechanisms"]:
    for path in [work] + [os.path.join(work, n) for n in os.listdir(work)]:
      os.chown(path, job["uid"], job["gid"])
  os.chroot(root)
  os.chdir("/work")


def _install_seccomp() -> None:
  arch, nr_socket, nr_io_uring = SECCOMP_ARCH[platform.machine()]
  ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
  allow, deny, kill = 0x7FFF0000, 0x00050000 | errno.EACCES, 0x80000000
  program = [  # (code, jt, jf, k); jumps are relative to the next instruction
      (ld, 0, 0, 4),                  # 0: arch
      (jeq, 1, 0, arch),              # 1: native ABI -> 3
      (ret, 0, 0, kill),              # 2: foreign ABI (e.g. i386 socketcall)
      (ld, 0, 0, 0),                  # 3: syscall number
      (jge, 3, 0, 0x40000000),        # 4: x32 ABI -> deny
      (jeq, 2, 0, nr_socket),         # 5: -> deny
      (jeq, 1, 0, nr_io_uring),       # 6: -> deny (io_uring can open sockets)
      (ret, 0, 0, allow),             # 7
      (ret, 0, 0, deny),              # 8
  ]

  class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]

  class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

  filters = (SockFilter * len(program))(*[SockFilter(*insn) for insn in program])
  fprog = SockFprog(len(program), filters)
  _check(_libc().prctl(_PR_SET_SECCOMP, ctypes.c_ulong(2), ctypes.byref(fprog), 0, 0),
         "seccomp: install filter")


def _exec_program(job: dict, status_fd: int) -> None:
  """In the forked program child: limits, identity, filters, then exec. Never returns."""
  try:
    mechs, limits = job["mechanisms"], job["limits"]
    if "pidns" not in mechs:
      os.setpgid(0, 0)
    cpu = int(math.ceil(limits["cpu_s"]))
    for res, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                       (resource.RLIMIT_AS, limits["memory_bytes"]),
                       (resource.RLIMIT_NPROC, limits["max_processes"]),
                       (resource.RLIMIT_FSIZE, limits["max_output_bytes"]),
                       (resource.RLIMIT_NOFILE, limits["max_open_files"]),
                       (resource.RLIMIT_CORE, 0),
                       # Deep recursion (setrecursionlimit) needs more than the usual 8 MiB.
                       (resource.RLIMIT_STACK, min(64 << 20, limits["memory_bytes"] // 4))):
      resource.setrlimit(res, value if isinstance(value, tuple) else (value, value))
    if "uid" in mechs:
      os.setgroups([])
      os.setresgid(job["gid"], job["gid"], job["gid"])
      os.setresuid(job["uid"], job["uid"], job["uid"])
    if 0 in os.getresuid():
      raise _SetupError(f"root: refusing to run the program as uid 0 (mechanisms "
                        f"{'+'.join(mechs)}; the uid mechanism drops root)")
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, "prctl: pdeathsig")  # after setuid, which clears it
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "prctl: no_new_privs")
    if "seccomp" in mechs:
      _install_seccomp()
    argv = [job["python"], "-I", "-S", "-B", "-c", job["launcher"], job["entry"]]
    try:
      os.execve(job["python"], argv, job["env"])
    except OSError as e:
      raise _SetupError(f"exec: {job['python']}: {e}") from e
  except _SetupError as e:
    _report(status_fd, setup_error=str(e))
  except BaseException as e:  # noqa: BLE001 — report, never return into the server's loop
    _report(status_fd, setup_error=f"program setup: {type(e).__name__}: {e}")
  os._exit(126)


def _kill_namespace_or_group(job: dict, pgid: int) -> None:
  if "pidns" in job["mechanisms"]:
    if os.getpid() == 1:  # kill(-1) from a pid namespace's init reaches only that namespace
      try:
        os.kill(-1, signal.SIGKILL)
      except OSError:
        pass
  else:
    try:
      os.killpg(pgid, signal.SIGKILL)
    except OSError:
      pass


def _init_main(job: dict, status_fd: int) -> None:
  """Builds the root, runs the program under the wall clock, reports. Never returns."""
  try:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, "prctl: pdeathsig")
    if "mountns" in job["mechanisms"]:
      try:
        _build_root(job)
      except OSError as e:
        raise _SetupError(f"mountns: {e}") from e
    else:
      os.chdir(os.path.join(job["dir"], "work"))
  except _SetupError as e:
    _report(status_fd, setup_error=str(e))
    os._exit(0)
  except BaseException as e:  # noqa: BLE001
    _report(status_fd, setup_error=f"init: {type(e).__name__}: {e}")
    os._exit(0)
  start = time.monotonic()
  pid = os.fork()
  if pid == 0:
    _exec_program(job, status_fd)
  if "pidns" not in job["mechanisms"]:
    try:
      os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
    except OSError:
      pass
  timed_out = []

  def on_alarm(signum, frame):
    timed_out.append(True)
    _kill_namespace_or_group(job, pid)
    try:
      os.kill(pid, signal.SIGKILL)
    except OSError:
      pass

  signal.signal(signal.SIGALRM, on_alarm)
  signal.setitimer(signal.ITIMER_REAL, job["limits"]["wall_s"])
  _, status, usage = os.wait4(pid, 0)
  signal.setitimer(signal.ITIMER_REAL, 0)
  wall = time.monotonic() - start
  _kill_namespace_or_group(job, pid)  # background processes and fork-bomb leftovers
  _report(status_fd, status=status, timed_out=bool(timed_out), wall_s=wall,
          cpu_s=usage.ru_utime + usage.ru_stime, maxrss_kb=usage.ru_maxrss)
  os._exit(0)


def _job_main(job: dict, status_fd: int) -> None:
  """In the forked job process: redirect stdio, enter namespaces, start init. Never returns."""
  try:
    os.setsid()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, "prctl: pdeathsig")
    for fd, name, flags in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY | os.O_TRUNC),
                            (2, "stderr", os.O_WRONLY | os.O_TRUNC)):
      opened = os.open(os.path.join(job["dir"], name), flags)
      os.dup2(opened, fd)
      os.close(opened)
    _enter_namespaces(job)
    if "pidns" in job["mechanisms"]:
      pid = os.fork()  # the first child in the new pid namespace is its pid 1
      if pid == 0:
        _init_main(job, status_fd)
      os.waitpid(pid, 0)
      os._exit(0)
    _init_main(job, status_fd)
  except _SetupError as e:
    _report(status_fd, setup_error=str(e))
  except BaseException as e:  # noqa: BLE001
    _report(status_fd, setup_error=f"job: {type(e).__name__}: {e}")
  os._exit(0)


def _kill_uid(uid: int) -> None:
  """Kills every process of `uid` (a slot's own uid) by signalling -1 as that uid."""
  pid = os.fork()
  if pid == 0:
    try:
      os.setresgid(uid, uid, uid)
      os.setresuid(uid, uid, uid)
      if os.getuid() == uid != 0:
        os.kill(-1, signal.SIGKILL)
    finally:
      os._exit(0)
  os.waitpid(pid, 0)


def _serve_one(job: dict) -> dict:
  read_fd, write_fd = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(read_fd)
    _job_main(job, write_fd)
  os.close(write_fd)
  os.waitpid(pid, 0)
  try:
    os.killpg(pid, signal.SIGKILL)  # the job's session, if the program outlived its init
  except OSError:
    pass
  if "uid" in job["mechanisms"] and "pidns" not in job["mechanisms"]:
    _kill_uid(job["uid"])
  os.set_blocking(read_fd, False)
  chunks = []
  try:
    while chunk := os.read(read_fd, 65536):
      chunks.append(chunk)
  except BlockingIOError:
    pass
  os.close(read_fd)
  reply = {}
  for line in b"".join(chunks).decode(errors="replace").splitlines():
    try:
      fields = json.loads(line)
    except ValueError:
      continue
    if "setup_error" in fields:
      reply.setdefault("setup_error", fields["setup_error"])
    else:
      reply.update(fields)
  return reply


def _server_main() -> None:
  """Slot server loop: one JSON job per stdin line, one JSON reply per stdout line; EOF ends it."""
  _libc()
  for line in sys.stdin.buffer:
    try:
      reply = _serve_one(json.loads(line))
    except BaseException as e:  # noqa: BLE001 — the server must keep serving
      reply = {"setup_error": f"server: {type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


if __name__ == _SERVER_MAIN:
  _server_main()
