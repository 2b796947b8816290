"""Sandbox: limits, isolation and cleanup, checked from the host side of each run.

Hostile programs run once, concurrently, in a module fixture; each test then checks one outcome:
the status the grader reports, and what the host sees afterwards (no stray processes, no files
written, no connection received, no secret printed, the grader still serving).
"""
from __future__ import annotations

import functools
import glob
import importlib.util
import json
import os
import site
import socket
import sys
import sysconfig
import time
import uuid

import pytest

from r1jax.rewards import sandbox as sandbox_lib
from r1jax.rewards.sandbox import Sandbox, SandboxLimits
from tests.rewards.sandbox_seams import python_for_uid_drop, refuse_namespaces

LIMITS = SandboxLimits(wall_s=1.5, cpu_s=1, memory_bytes=256 << 20, max_processes=16,
                       max_output_bytes=64 << 10)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT_FILE = os.path.join(REPO, "r1jax", "rewards", "registry.py")
TAG = uuid.uuid4().hex[:12]  # marks this run's processes in /proc


def _cmdlines() -> dict[int, str]:
  out = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/cmdline", "rb") as f:
          out[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
      except OSError:
        pass
  return out


def _pids_with(marker: str) -> list[int]:
  return [pid for pid, cmd in _cmdlines().items() if marker in cmd and pid != os.getpid()]


# Third-party packages a program might reach for; the test uses those this host has.
HOST_PACKAGES = ("pip", "setuptools", "numpy", "yaml", "pytest", "requests", "cryptography",
                 "urllib3", "idna", "jax")


def _vendored_package_dirs(roots=("/usr", "/opt"), depth: int = 5) -> list[str]:
  """Dirs under `roots` directly holding one of HOST_PACKAGES (an SDK's vendored third_party/)."""
  found, stack = set(), [(root, 0) for root in roots]
  while stack:
    folder, level = stack.pop()
    try:
      entries = list(os.scandir(folder))
    except OSError:
      continue
    for entry in entries:
      if entry.is_dir(follow_symlinks=False):
        if entry.name in HOST_PACKAGES and os.path.exists(os.path.join(entry.path, "__init__.py")):
          found.add(folder)
        elif level + 1 < depth:
          stack.append((entry.path, level + 1))
  return sorted(found)


@functools.lru_cache(maxsize=None)
def _host_package_dirs() -> list[str]:
  """Every host dir holding third-party packages: this interpreter's and its base's site dirs,
  the system Pythons' dist-packages and pip wheels (each a zip a program can put on sys.path),
  ensurepip's bundled wheels, and vendored package dirs under /usr and /opt."""
  dirs = site.getsitepackages() + site.getsitepackages([sys.base_prefix])
  dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
  dirs += glob.glob("/usr/lib/python3*/*-packages")
  dirs += glob.glob("/usr/local/lib/python3*/*-packages")
  dirs += glob.glob("/usr/share/python-wheels/*.whl")
  dirs += glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "ensurepip", "_bundled", "*.whl"))
  dirs += _vendored_package_dirs()
  return [d for d in dict.fromkeys(os.path.realpath(d) for d in dirs) if os.path.exists(d)]


def _host_packages(dirs) -> list[str]:
  found = []
  for name in HOST_PACKAGES:
    if any(os.path.isdir(os.path.join(d, name)) or d.endswith(".whl") and
           os.path.basename(d).lower().startswith(name + "-") for d in dirs):
      found.append(name)
  return found


def _import_attempt(dirs, names) -> str:
  """A program that puts `dirs` on sys.path and prints each of `names` it could import."""
  return (f"import sys\nsys.path.extend({dirs!r})\n"
          f"for name in {names!r}:\n"
          "  try:\n    module = __import__(name)\n"
          "    print('imported', name, getattr(module, '__file__', None))\n"
          "  except ImportError as e:\n    print('refused', name, type(e).__name__)\n")


def _weak_sandbox(tmp_root, mechanisms, **kwargs) -> Sandbox:
  """An explicitly unsafe, audit-hook sandbox; as root with the uid mechanism and an interpreter
  the slot uid can reach (skips where this host has none: such a mode refuses to run as root)."""
  if os.geteuid() == 0:
    python = python_for_uid_drop()
    if python is None:
      pytest.skip("outside r1jax: as root the no-mountns modes need an interpreter an "
                  "unprivileged uid can reach, and this host has none")
    mechanisms, kwargs = tuple(mechanisms) + ("uid",), {"python": python, **kwargs}
  return Sandbox(LIMITS, tmp_root=tmp_root, mechanisms=mechanisms,
                 unsafe_allow_weak_sandbox=True, **kwargs)


def _pids_of_uids(uids) -> list[int]:
  pids = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/status") as f:
          uid_line = next(line for line in f if line.startswith("Uid:"))
      except (OSError, StopIteration):
        continue
      if int(uid_line.split()[1]) in uids:
        pids.append(int(entry))
  return pids


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("sandbox_runs"))


@pytest.fixture(scope="module")
def sandbox(tmp_root):
  with Sandbox(LIMITS, max_workers=2, tmp_root=tmp_root) as sb:
    yield sb


@pytest.fixture(scope="module")
def host(tmp_path_factory):
  """Host-side bait: a planted secret, a world-writable dir, a listening socket."""
  base = tmp_path_factory.mktemp("host_bait")
  os.chmod(base, 0o755)
  secret = base / "secret.txt"
  secret.write_text(f"TOP-SECRET-{TAG}\n")
  os.chmod(secret, 0o644)
  open_dir = base / "open"
  open_dir.mkdir()
  os.chmod(open_dir, 0o777)
  listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  listener.bind(("127.0.0.1", 0))
  listener.listen(8)
  listener.setblocking(False)
  yield {"secret": str(secret), "secret_text": secret.read_text().strip(),
         "open_dir": str(open_dir), "port": listener.getsockname()[1], "listener": listener}
  listener.close()


def _attack_programs(host) -> dict[str, tuple[dict[str, str], str]]:
  bomb = f"forkbomb_{TAG}.py"
  return {
      "cpu_loop": ({"main.py": "while True:\n  pass\n"}, "main.py"),
      "sleep": ({"main.py": "import time\ntime.sleep(60)\nprint('woke')\n"}, "main.py"),
      "memory_bomb": ({"main.py": "x = bytearray(1 << 30)\nprint(len(x))\n"}, "main.py"),
      "memory_growth": ({"main.py": "chunks = []\nwhile True:\n  chunks.append(' ' * (1 << 22))\n"},
                        "main.py"),
      "output_bomb": ({"main.py": "import sys\nline = 'x' * (1 << 16)\nwhile True:\n"
                                  "  sys.stdout.write(line)\n"}, "main.py"),
      "fork_bomb": ({bomb: "import os\nwhile True:\n  try:\n    os.fork()\n  except OSError:\n"
                           "    pass\n"}, bomb),
      "threads": ({"main.py": "import threading, time\nstarted = 0\ntry:\n"
                              "  for _ in range(100):\n"
                              "    threading.Thread(target=time.sleep, args=(1,),\n"
                              "                     daemon=True).start()\n"
                              "    started += 1\nexcept RuntimeError:\n  pass\n"
                              "print(started)\n"}, "main.py"),
      "read_secret": ({"main.py": f"print(open({host['secret']!r}).read())\n"}, "main.py"),
      "read_project": ({"main.py": f"print(open({PROJECT_FILE!r}).read())\n"}, "main.py"),
      "write_outside": ({"main.py": "import os\n"
                                    f"for d in ({host['open_dir']!r}, '/tmp', {REPO!r}):\n"
                                    "  try:\n"
                                    f"    open(os.path.join(d, 'pwned_{TAG}'), 'w').write('x')\n"
                                    "    print('wrote', d)\n  except OSError as e:\n"
                                    "    print('refused', type(e).__name__)\n"}, "main.py"),
      "socket": ({"main.py": "import socket\ns = socket.create_connection(('127.0.0.1', "
                             f"{host['port']}), timeout=1)\ns.sendall(b'pwned')\n"
                             "print('connected')\n"}, "main.py"),
      "kill_parent": ({"main.py": "import os, signal\nfor pid in (os.getppid(),):\n  try:\n"
                                  "    os.kill(pid, signal.SIGKILL)\n  except OSError:\n    pass\n"
                                  "print('still here')\n"}, "main.py"),
      "stderr_bomb": ({"main.py": "import sys\nsys.stderr.write('x' * (10 << 20))\n"
                                  "print('done')\n"}, "main.py"),
      "host_packages": ({"main.py": _import_attempt(_host_package_dirs(),
                                                    _host_packages(_host_package_dirs()))},
                        "main.py"),
      "background": ({"main.py": "import os, sys\nif os.fork() == 0:\n  os.setsid()\n"
                                 "  if os.fork() == 0:\n"
                                 "    os.execv(sys.executable, [sys.executable, '-c', "
                                 f"'import time; time.sleep(30)', 'bg_{TAG}'])\n"
                                 "  os._exit(0)\nprint('spawned')\n"}, "main.py"),
  }


@pytest.fixture(scope="module")
def attacks(sandbox, host):
  programs = _attack_programs(host)
  start = time.monotonic()
  results = sandbox.run_many([(files, "", entry) for files, entry in programs.values()])
  elapsed = time.monotonic() - start
  return {"results": dict(zip(programs, results)), "elapsed": elapsed}


# ----------------------------------------------------------------------------------------------
# Ordinary programs.


def test_runs_program_with_stdin_and_captures_both_streams(sandbox):
  numbers = [3, -7, 12, 40]
  result = sandbox.run({"main.py": "import sys\nnums = list(map(int, sys.stdin.read().split()))\n"
                                   "print(sum(nums))\nprint('note', file=sys.stderr)\n"},
                       " ".join(map(str, numbers)))
  assert result.status == sandbox_lib.OK and result.exit_code == 0
  assert result.stdout == f"{sum(numbers)}\n"
  assert "note" in result.stderr


def test_exit_codes_and_exceptions_are_crashes(sandbox):
  exit3, raised, clean, syntax = sandbox.run_many([
      ({"main.py": "raise SystemExit(3)"}, "", "main.py"),
      ({"main.py": "print('partial')\nraise ValueError('boom')"}, "", "main.py"),
      ({"main.py": "print('bye')\nexit(0)"}, "", "main.py"),
      ({"main.py": "def f(:\n"}, "", "main.py")])
  assert (exit3.status, exit3.exit_code) == (sandbox_lib.CRASH, 3)
  assert raised.status == sandbox_lib.CRASH and "ValueError: boom" in raised.stderr
  assert raised.stdout == "partial\n"
  assert (clean.status, clean.stdout) == (sandbox_lib.OK, "bye\n")
  assert syntax.status == sandbox_lib.CRASH and "SyntaxError" in syntax.stderr


def test_environment_is_minimal_and_each_run_gets_a_fresh_directory(sandbox):
  program = ("import json, os\nlisting = sorted(os.listdir('.'))\n"
             "open('left_behind.txt', 'w').write('x')\n"
             "print(json.dumps({'env': sorted(os.environ), 'listing': listing}))\n")
  first, second = (json.loads(sandbox.run({"main.py": program}).stdout) for _ in range(2))
  assert set(first["env"]) <= {"PATH", "LC_ALL", "HOME", "TMPDIR"}
  assert first["listing"] == second["listing"] == ["main.py"]


def test_host_temp_dirs_are_removed(sandbox, tmp_root):
  sandbox.run_many([({"main.py": "open('f', 'w').write('x' * 1000)"}, "", "main.py")] * 3)
  assert os.listdir(tmp_root) == []


def test_bad_file_names_are_refused(sandbox):
  with pytest.raises(ValueError, match="plain name"):
    sandbox.run({"../escape.py": "print(1)"})


def test_limits_are_validated():
  with pytest.raises(ValueError, match="SandboxLimits.wall_s"):
    SandboxLimits(wall_s=0)


def test_missing_interpreter_fails_at_construction_with_a_clear_error():
  with pytest.raises(RuntimeError, match="cannot run"):
    Sandbox(LIMITS, max_workers=1, python="/nonexistent/python3", mechanisms=("rlimits",))


def test_mode_names_the_active_mechanisms(sandbox):
  assert sandbox.mode == "+".join(sandbox.mechanisms)
  assert "rlimits" in sandbox.mechanisms
  assert set(sandbox.mechanisms) <= set(sandbox_lib.MECHANISMS)
  # Something must hide the host's files: a private root, or at least the audit layer.
  assert "mountns" in sandbox.mechanisms or "audit" in sandbox.mechanisms


def test_batch_runs_concurrently_but_never_above_max_workers(sandbox):
  program = "import time\nprint(time.time())\ntime.sleep(0.4)\nprint(time.time())\n"
  start = time.monotonic()
  results = sandbox.run_many([({"main.py": program}, "", "main.py")] * 6)
  elapsed = time.monotonic() - start
  spans = [tuple(map(float, r.stdout.split())) for r in results]
  events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
  running = peak = 0
  for _, delta in events:
    running += delta
    peak = max(peak, running)
  assert peak == sandbox.max_workers == 2
  assert elapsed < 6 * 0.4


def test_slot_server_restarts_after_dying(sandbox):
  for server in sandbox._servers:
    if server.proc is not None:
      server.proc.kill()
      server.proc.wait()
  results = sandbox.run_many([({"main.py": "print(7 * 6)"}, "", "main.py")] * 4)
  assert [r.stdout for r in results] == ["42\n"] * 4


# ----------------------------------------------------------------------------------------------
# Hostile programs (one concurrent batch; see the `attacks` fixture).


def test_cpu_loop_is_stopped(attacks):
  result = attacks["results"]["cpu_loop"]
  assert result.status == sandbox_lib.TIMEOUT
  assert result.wall_s <= LIMITS.wall_s + 0.5


def test_sleep_past_the_deadline_is_stopped(attacks):
  result = attacks["results"]["sleep"]
  assert result.status == sandbox_lib.TIMEOUT and "woke" not in result.stdout
  assert LIMITS.wall_s - 0.1 <= result.wall_s <= LIMITS.wall_s + 0.5


@pytest.mark.parametrize("name", ["memory_bomb", "memory_growth"])
def test_memory_bombs_are_memory_kills(attacks, name):
  assert attacks["results"][name].status == sandbox_lib.MEMORY


def test_output_bomb_is_capped(attacks):
  result = attacks["results"]["output_bomb"]
  assert result.status == sandbox_lib.OUTPUT_LIMIT
  assert len(result.stdout.encode()) <= LIMITS.max_output_bytes


def test_stderr_flood_is_an_output_limit_not_a_crash(attacks):
  result = attacks["results"]["stderr_bomb"]
  assert result.status == sandbox_lib.OUTPUT_LIMIT
  assert len(result.stderr.encode()) <= 4096 and "done" not in result.stdout


def test_host_packages_cannot_be_imported(attacks):
  dirs = _host_package_dirs()
  names = _host_packages(dirs)
  assert names, f"no third-party package found in {dirs}: the attack would test nothing"
  result = attacks["results"]["host_packages"]
  assert result.status == sandbox_lib.OK, result.stderr
  assert "imported" not in result.stdout
  assert result.stdout.count("refused") == len(names)


def test_fork_bomb_is_contained_and_reaped(attacks, sandbox):
  assert attacks["results"]["fork_bomb"].status in (sandbox_lib.TIMEOUT, sandbox_lib.CRASH)
  assert _pids_with(f"forkbomb_{TAG}") == []
  assert _pids_of_uids(set(sandbox.uids)) == []


def test_threads_are_capped(attacks, sandbox):
  if not {"uid", "userns"} & set(sandbox.mechanisms):
    pytest.skip(f"outside r1jax: RLIMIT_NPROC needs a non-root program uid, which this host's kernel/"
                f"container does not grant (sandbox mode {sandbox.mode})")
  result = attacks["results"]["threads"]
  assert result.status == sandbox_lib.OK
  assert int(result.stdout) < LIMITS.max_processes


@pytest.mark.parametrize("name", ["read_secret", "read_project"])
def test_files_outside_the_sandbox_cannot_be_read(attacks, host, name):
  result = attacks["results"][name]
  assert result.status == sandbox_lib.CRASH
  with open(PROJECT_FILE) as f:
    project_line = f.readline().strip()
  for leaked in (host["secret_text"], project_line):
    assert leaked not in result.stdout and leaked not in result.stderr


def test_files_outside_the_sandbox_cannot_be_written(attacks, host):
  result = attacks["results"]["write_outside"]
  assert "wrote" not in result.stdout and result.stdout.count("refused") == 3
  for directory in (host["open_dir"], "/tmp", REPO):
    assert not os.path.exists(os.path.join(directory, f"pwned_{TAG}"))


def test_no_network_connection_reaches_the_host(attacks, host):
  result = attacks["results"]["socket"]
  assert result.status == sandbox_lib.CRASH and "connected" not in result.stdout
  with pytest.raises(BlockingIOError):
    host["listener"].accept()


def test_killing_the_parent_does_not_hurt_the_grader(attacks, sandbox):
  assert attacks["results"]["kill_parent"].status in (sandbox_lib.OK, sandbox_lib.CRASH)
  results = sandbox.run_many([({"main.py": "print('alive')"}, "", "main.py")] * 4)
  assert [r.stdout for r in results] == ["alive\n"] * 4


def test_background_process_is_reaped(attacks):
  result = attacks["results"]["background"]
  assert result.status == sandbox_lib.OK and result.stdout == "spawned\n"
  assert result.wall_s < LIMITS.wall_s  # the daemon did not hold the run open
  assert _pids_with(f"bg_{TAG}") == []


def test_hostile_batch_finishes_in_bounded_time(attacks):
  # 15 programs, 2 workers, at most a 1.5 s wall limit each, plus interpreter start-up.
  assert attacks["elapsed"] < 15 * LIMITS.wall_s / 2 + 10


# ----------------------------------------------------------------------------------------------
# Mechanisms whose effect a program can see (skipped where this kernel/container lacks them).


def _require(sandbox: Sandbox, mechanism: str) -> None:
  if mechanism not in sandbox.mechanisms:
    pytest.skip(f"outside r1jax: this host's kernel/container does not offer {mechanism} "
                f"(sandbox mode {sandbox.mode})")


def test_pid_namespace_hides_host_processes(sandbox):
  _require(sandbox, "pidns")
  result = sandbox.run({"main.py": "import os\nprint(os.getpid(), os.getppid(), "
                                   "sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"})
  pid, ppid, visible = result.stdout.split(" ", 2)
  assert (pid, ppid) == ("2", "1")
  assert visible.strip() == "[1, 2]"


def test_network_namespace_has_only_loopback(sandbox):
  _require(sandbox, "netns")
  _require(sandbox, "mountns")  # /proc/net comes from the private /proc
  result = sandbox.run({"main.py": "print(open('/proc/net/dev').read())"})
  interfaces = [line.split(":")[0].strip() for line in result.stdout.splitlines() if ":" in line]
  assert interfaces == ["lo"]


def test_program_runs_as_the_slot_uid(sandbox):
  _require(sandbox, "uid")
  result = sandbox.run({"main.py": "import os\nprint(os.getuid(), os.geteuid(), os.getgroups())"})
  uid, euid, groups = result.stdout.split(" ", 2)
  assert int(uid) == int(euid) and int(uid) in sandbox.uids
  assert groups.strip() == "[]"


def test_program_has_no_capabilities(sandbox):
  _require(sandbox, "pidns")
  _require(sandbox, "mountns")  # /proc/self comes from the private /proc
  result = sandbox.run({"main.py": "print(open('/proc/self/status').read())"})
  fields = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
  assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == 0
  assert fields["NoNewPrivs"].strip() == "1"
  if "seccomp" in sandbox.mechanisms:
    assert fields["Seccomp"].strip() == "2"  # filter mode


def test_pid_1_cmdline_reveals_no_host_path(sandbox, tmp_root):
  _require(sandbox, "pidns")
  _require(sandbox, "mountns")  # /proc comes from the private /proc
  result = sandbox.run({"main.py": "for f in ('/proc/1/cmdline', '/proc/1/mountinfo', "
                                   "'/proc/self/cmdline', '/proc/self/mountinfo'):\n"
                                   "  print(open(f).read().replace('\\0', ' '))\n"})
  assert result.status == sandbox_lib.OK and "-I -S -B -c" in result.stdout  # pid 1 was read
  for host_path in (sandbox_lib.sandbox_server.__file__, REPO, tmp_root, "r1jax-sbx-",
                    "sandbox_server", os.path.dirname(tmp_root)):
    assert host_path not in result.stdout


def test_private_root_holds_only_the_interpreter_and_system_dirs(sandbox):
  _require(sandbox, "mountns")
  result = sandbox.run({"main.py": "import os\nprint(sorted(os.listdir('/')))\n"
                                   "print(os.path.exists('/tmp'), "
                                   "os.path.exists('/work/main.py'))"})
  top, flags = result.stdout.splitlines()
  assert "'tmp'" not in top and "'home'" not in top
  assert flags == "False True"


# ----------------------------------------------------------------------------------------------
# The last-resort mode still refuses the obvious attacks.


def test_audit_only_mode_blocks_reads_sockets_and_signals(tmp_root, host):
  with _weak_sandbox(tmp_root, ("rlimits", "audit"), max_workers=1) as sb:
    assert set(sb.mechanisms) - {"uid"} == {"rlimits", "audit"}
    good, read, sock, kill, packages = (sb.run({"main.py": code}) for code in (
        "print(6 * 7)",
        f"print(open({host['secret']!r}).read())",
        f"import socket\nsocket.create_connection(('127.0.0.1', {host['port']}))\n"
        "print('connected')",
        "import os\nos.kill(os.getppid(), 9)\nprint('killed')",
        _import_attempt(_host_package_dirs(), ["pip", "setuptools", "yaml"])))
  assert good.stdout == "42\n"
  assert "imported" not in packages.stdout
  assert host["secret_text"] not in read.stdout and "outside the sandbox" in read.stderr
  assert "connected" not in sock.stdout and "not allowed" in sock.stderr
  assert "killed" not in kill.stdout and "os.kill is not allowed" in kill.stderr


# ----------------------------------------------------------------------------------------------
# Weak modes: refused unless opted into, and never as root.


def test_explicit_weak_mode_is_refused_before_anything_runs(tmp_root, monkeypatch):
  ran = refuse_namespaces(monkeypatch)
  with pytest.raises(RuntimeError, match=r"mountns not requested, netns not requested, pidns not "
                     r"requested.*cannot contain untrusted code.*unsafe_allow_weak_sandbox=True"):
    Sandbox(LIMITS, max_workers=1, tmp_root=tmp_root, mechanisms=("rlimits", "uid", "audit"))
  assert ran == []


def test_kernel_refusing_namespaces_refuses_the_sandbox(tmp_root, monkeypatch):
  ran = refuse_namespaces(monkeypatch)
  first = "userns" if os.geteuid() != 0 else "netns"
  with pytest.raises(RuntimeError, match=(
      rf"{first}: unshare: Operation not permitted.*cannot contain untrusted code"
      r".*unsafe_allow_weak_sandbox=True")):
    Sandbox(LIMITS, max_workers=1, tmp_root=tmp_root)
  assert all(files == {"main.py": "print(6 * 7)"} for files in ran)  # only the probe ran


@pytest.mark.parametrize("how", ["kernel_refuses_namespaces", "audit_only", "audit_and_uid"])
def test_unsafe_mode_never_runs_the_program_as_root(tmp_root, monkeypatch, how):
  kwargs = {"max_workers": 1, "tmp_root": tmp_root, "unsafe_allow_weak_sandbox": True}
  if how == "kernel_refuses_namespaces":
    refuse_namespaces(monkeypatch)
  elif how == "audit_only":
    kwargs["mechanisms"] = ("rlimits", "audit")
  else:
    kwargs["mechanisms"] = ("rlimits", "uid", "audit")
    kwargs["python"] = python_for_uid_drop() or sys.executable
  try:
    sb = Sandbox(LIMITS, **kwargs)
  except RuntimeError as e:  # refusing is right only where the program would run as root
    assert os.geteuid() == 0 and "refusing to run untrusted programs as root" in str(e)
    assert "unsafe_allow_weak_sandbox does not allow this" in str(e)
    return
  with sb:
    assert "mountns" not in sb.mechanisms and "audit" in sb.mechanisms
    result = sb.run({"main.py": "import os\nprint(*os.getresuid(), *os.getresgid())"})
  assert result.status == sandbox_lib.OK, result
  assert 0 not in [int(x) for x in result.stdout.split()[:3]]


def test_allowed_packages_are_importable_and_nothing_else(tmp_root):
  if importlib.util.find_spec("pluggy") is None:
    pytest.skip("outside r1jax: pluggy (a pytest dependency) is not installed")
  others = [n for n in _host_packages(_host_package_dirs()) if n != "pluggy"]
  program = ("import pluggy\nprint(pluggy.PluginManager.__name__, pluggy.__file__)\n"
             + _import_attempt(_host_package_dirs(), others))
  with Sandbox(LIMITS, max_workers=1, tmp_root=tmp_root, allowed_packages=["pluggy"]) as sb:
    assert sb.allowed_packages == ("pluggy",)
    result = sb.run({"main.py": program})
  assert result.status == sandbox_lib.OK, result.stderr
  assert result.stdout.startswith("PluginManager ")
  assert "imported" not in result.stdout and result.stdout.count("refused") == len(others)


@pytest.mark.parametrize("packages, message", [
    ("numpy", r"a list of package names"),
    (["numpy.linalg"], r"allowed_packages\[0\]: 'numpy.linalg' is not a top-level package"),
    (["json"], r"'json' is part of the standard library"),
    (["no_such_package_r1jax"], r"'no_such_package_r1jax' is not importable"),
])
def test_allowed_packages_are_validated(tmp_root, packages, message):
  with pytest.raises(ValueError, match=message):
    Sandbox(LIMITS, max_workers=1, tmp_root=tmp_root, allowed_packages=packages)


def test_unsafe_opt_in_must_be_a_bool(tmp_root):
  with pytest.raises(ValueError, match="unsafe_allow_weak_sandbox must be True or False"):
    Sandbox(LIMITS, max_workers=1, tmp_root=tmp_root, unsafe_allow_weak_sandbox="yes")
