"""Sweeps as scheduler jobs (experiments/cluster.py): each point in its own clone at the sweep's commit, pushed to
a git remote and a DVC remote, collected elsewhere. submitit's local executor runs the jobs as processes here."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import BIN, run, shared_remotes
from dvc.repo import Repo

pytestmark = [pytest.mark.slow, pytest.mark.dvc, pytest.mark.model]
LLMCLS = BIN + "/llmcls"


def report_seeds(project) -> str:
    """The seed count of the report's custom / lora row."""
    run([LLMCLS, "report"], project)
    report = (project / "metrics" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| custom ") and "lora" in line)
    return [c.strip() for c in row.strip("|").split("|")][3]


def test_a_job_sweep_pushes_each_point_collects_elsewhere_and_resubmits_only_a_failed_one(reproduced_copy, tmp_path):
    project = reproduced_copy
    origin = shared_remotes(project, tmp_path)
    sweep = [LLMCLS, "sweep", "--backend", "submitit-local", "--seeds", "1,2", "-j", "2"]
    dry = run([*sweep, "--dry-run"], project).stdout
    assert dry.count("dvc exp run --pull -n custom-") == 2 and "(dry run)" in dry
    # A point whose clone folder is taken by something llmcls did not make (a file) fails, and the file is
    # left alone; the others do not fail.
    names = [line.split()[2].rstrip(":") for line in dry.splitlines() if line.startswith("# job ")]
    broken = project / ".dvc" / "tmp" / "llmcls-jobs" / "clones" / names[1]
    broken.parent.mkdir(parents=True)
    broken.write_text("not a folder")
    first = run(sweep, project, check=False)
    assert first.returncode == 1, first.stdout + first.stderr
    log = next(line for line in first.stdout.splitlines() if line.startswith(f"# FAILED {names[1]}:"))
    assert "_0_log.err" in log and "not a clone llmcls made" in log
    assert broken.read_text() == "not a folder"
    assert first.stdout.count("# collected ") == 1
    assert run(["dvc", "exp", "list", "--name-only"], project).stdout.split() == names[:1]

    broken.unlink()
    again = run(sweep, project).stdout
    assert again.count("# submitted ") == 1 and f"# submitted {names[1]}" in again, again
    assert f"# again {names[1]}: job" in again and f"# collected {names[1]}" in again
    assert again.count("already ran") == 1
    assert not list((project / ".dvc" / "tmp" / "llmcls-jobs" / "clones").iterdir())  # pushed clones removed
    heads = run(["git", "ls-remote", str(origin), "refs/exps/*"], project).stdout
    assert sorted(ref.rsplit("/", 1)[1] for ref in heads.split()[1::2]) == sorted(names)

    # Another machine: a clone of the remote, the same sweep with --collect pulls the three experiments.
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)], tmp_path)
    with Repo(str(project)) as repo:
        remotes = {name: repo.config["remote"][name]["url"] for name in ("storage", "datasets")}
    for name, url in remotes.items():
        run(["dvc", "remote", "add", "--local", "-f", name, url], other)
    run(["dvc", "pull", "-q"], other)  # the commit's own run (seed 0)
    pulled = run([*sweep, "--collect"], other).stdout
    assert pulled.count("# collected ") == 2
    assert sorted(run(["dvc", "exp", "list", "--name-only"], other).stdout.split()) == sorted(names)
    assert subprocess.run(["git", "status", "--porcelain"], cwd=other, capture_output=True, text=True).stdout == ""
    assert report_seeds(other) == "3"  # seeds 0 (the commit) and 1, 2 (the jobs)
    # A collected experiment applies and checks out like one run here: its settings and its trained adapter.
    run(["dvc", "exp", "apply", names[0]], other)
    shutil.rmtree(other / "models" / "classifier")
    run(["dvc", "checkout"], other)
    meta = json.loads((other / "models" / "classifier" / "llmcls.json").read_text())
    assert meta["params"]["train"]["seed"] == 1 and "seed: 1" in (other / "params.yaml").read_text()


SLURM_CONF = """ClusterName=llmcls-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={dir}/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
# No cgroups (containers rarely give them) and no accounting database: llmcls asks squeue, not sacct.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _daemon(name: str) -> str | None:
    return shutil.which(name) or next((f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if Path(d, name).exists()), None)


@pytest.fixture
def slurm():
    """A one-node SLURM cluster on this machine (2 CPUs): munged, slurmctld and slurmd with their own config,
    key, state and sockets in a temporary folder, stopped afterwards. Yields the environment that points the
    SLURM commands at it. Debian's `slurm-wlm` and `munge` (`make test` installs them with apt when root)."""
    tools = {name: _daemon(name) for name in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")}
    if missing := [name for name, path in tools.items() if path is None]:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)}): apt-get install slurm-wlm munge, as root")
    if os.geteuid() != 0:
        pytest.skip("this test's SLURM daemons run as root (SlurmUser=root)")
    folder = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))  # a unix socket path must stay short
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    conf = folder / "slurm.conf"
    ports = {"ctld_port": _free_port(), "slurmd_port": _free_port()}
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], dir=folder, **ports))
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    env = os.environ | {"SLURM_CONF": str(conf)}
    munge = [f"--socket={folder}/munge.socket", f"--key-file={key}", f"--pid-file={folder}/munged.pid"]
    munge += [f"--log-file={folder}/munged.log", f"--seed-file={folder}/munged.seed"]
    try:
        subprocess.run([tools["munged"], "--force", *munge], check=True)
        subprocess.run([tools["slurmctld"], "-c"], env=env, check=True)
        subprocess.run([tools["slurmd"]], env=env, check=True)
        deadline = time.time() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout:
            assert time.time() < deadline, (folder / "slurmctld.log").read_text()[-2000:]
            time.sleep(0.5)
        yield {"SLURM_CONF": str(conf)}
    finally:
        subprocess.run([tools["scontrol"], "shutdown"], env=env, capture_output=True)
        subprocess.run([tools["munged"], "--stop", f"--socket={folder}/munge.socket"], capture_output=True)
        time.sleep(1)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_sweep_runs_as_sbatch_array_jobs_of_a_real_slurm(slurm, reproduced_copy, tmp_path):
    project = reproduced_copy
    shared_remotes(project, tmp_path)
    sweep = [LLMCLS, "sweep", "--backend", "slurm", "--seeds", "1,2", "-j", "2", "--slurm", "cpus_per_task=1"]
    out = run([*sweep, "--wait"], project, env=slurm).stdout
    submitted = [line.split()[4].rstrip(",") for line in out.splitlines() if line.startswith("# submitted ")]
    assert len(submitted) == 2 and {job.split("_")[1] for job in submitted} == {"0", "1"}  # one array, 2 tasks
    assert len({job.split("_")[0] for job in submitted}) == 1
    assert out.count("# collected ") == 2, out
    assert len(run(["dvc", "exp", "list", "--name-only"], project).stdout.split()) == 2
    assert report_seeds(project) == "3"
    again = run(sweep, project, env=slurm).stdout
    assert "# submitted" not in again and again.count("already ran") == 2
