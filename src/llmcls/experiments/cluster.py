"""Sweep points as scheduler jobs (submitit): each in a clone of its own, results back through git and DVC.

DVC has no cluster executor, and parallel DVC processes in one workspace wait on its lock. So a job clones the
repository at the sweep's commit, points the clone at this project's DVC remotes (and shared cache), runs
``dvc exp run --pull -n NAME -S ...`` and pushes the experiment: ``dvc exp push <git remote> NAME`` sends its git
ref (one ref per experiment, so concurrent pushes never conflict) and its outputs to the DVC remote. Collecting
is ``dvc exp pull`` of those names, after which ``dvc exp show`` and ``llmcls report`` see them as local runs.

Backends: ``slurm`` (sbatch job arrays) and ``submitit-local`` (the same jobs as processes of this machine:
no cluster needed, and what the tests run). Each submission is recorded under ``.dvc/tmp/llmcls-jobs`` (name ->
job id and log files), so a later sweep can tell a point still running from one that failed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmcls.core.errors import LlmclsError
from llmcls.core.names import check_name
from llmcls.core.processes import alive_running
from llmcls.experiments.node import JobSpec, PointJob, checked_call, last_line, write_status
from llmcls.experiments.runs import exp_ref

BACKENDS = ("local", "submitit-local", "slurm")  # local: DVC's own queue in this workspace
JOBS_DIR = Path(".dvc/tmp/llmcls-jobs")
RECORD = JOBS_DIR / "jobs.json"
# Settings a job's clone copies from this project's DVC config (its .dvc/config.local is not in git).
CACHE_KEYS = ("dir", "type", "shared")


def job_config(project: Path) -> tuple[tuple[str, ...], ...]:
    """The `dvc remote add --local` / `dvc config --local` commands that give a clone this project's remotes
    (its default storage, the datasets folder, any remote set per machine) and cache settings."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        merged = repo.config
        local = repo.config.read("local")
    names = {merged["core"].get("remote"), "datasets", *local.get("remote", {})} - {None}
    commands = []
    for name in sorted(names):
        url = merged["remote"].get(name, {}).get("url")
        if url:
            commands.append(("dvc", "remote", "add", "--local", "-f", name, str(url)))
    # A per-machine cache (`dvc cache dir --local /shared/dvc-cache`) is this machine's setting: the clone needs
    # it too. One in the committed .dvc/config the clone has already.
    for key in CACHE_KEYS:
        if key in local.get("cache", {}):
            commands.append(("dvc", "config", "--local", f"cache.{key}", str(merged["cache"][key])))
    return tuple(commands)


def remote_url(project: Path, remote: str) -> str:
    """The git URL jobs clone and push to; the sweep's commit must be there."""
    url = subprocess.run(["git", "remote", "get-url", remote], cwd=project, capture_output=True, text=True)
    if url.returncode != 0:
        raise LlmclsError(f"git remote {remote!r} is not set: jobs clone the repository from it (git remote add)")
    return url.stdout.strip()


def commit_on_remote(project: Path, remote: str) -> str:
    """HEAD's commit, checked to be on the remote (jobs clone it from there)."""
    commit = checked_call(["git", "rev-parse", "HEAD"], project).strip()
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."], cwd=project).returncode != 0:
        raise LlmclsError("the workspace has uncommitted changes: jobs run the sweep's commit; commit and push first")
    checked_call(["git", "fetch", "--quiet", remote], project)
    branches = checked_call(["git", "branch", "-r", "--contains", commit], project).split()
    if not any(b.startswith(f"{remote}/") for b in branches):
        raise LlmclsError(f"commit {commit[:7]} is not on git remote {remote!r}: `git push {remote} HEAD` first")
    return commit


def pushed_experiments(project: Path, remote: str, commit: str) -> set[str]:
    """Names of the experiments of ``commit`` on the git remote (refs/exps/<sha[:2]>/<sha[2:]>/<name>)."""
    prefix = exp_ref(commit, "")
    refs = checked_call(["git", "ls-remote", remote, f"{prefix}*"], project).split()
    return {ref.removeprefix(prefix) for ref in refs if ref.startswith(prefix)}


@dataclass(frozen=True)
class Submitted:
    """One submitted job, as recorded in jobs.json."""

    name: str
    backend: str
    job_id: str
    folder: str
    commit: str
    status_file: str

    def paths(self):
        from submitit.core.utils import JobPaths

        return JobPaths(self.folder, self.job_id, task_id=0)

    def log(self) -> str:
        return str(self.paths().stderr)

    def status(self) -> tuple[str, str]:
        """("finished" | "failed" | "running", detail). A job that has not written its end is running while its
        process (local) or SLURM job is alive, failed after (killed, timed out, cancelled)."""
        try:
            written = json.loads(Path(self.status_file).read_text())
        except (OSError, ValueError):
            written = {"state": "submitted"}
        if written["state"] in ("finished", "failed"):
            return written["state"], written.get("detail", "")
        if self.backend == "submitit-local":
            # Its job id is the pid of submitit's runner: a later process reusing the id runs something else.
            alive = alive_running(int(self.job_id), b"submitit")
            return ("running", "") if alive else ("failed", "its process ended without a result (killed?)")
        # squeue, not sacct: it needs no accounting database, and a job it no longer lists has ended.
        listed = subprocess.run(["squeue", "-h", "-j", self.job_id, "-o", "%T"], capture_output=True, text=True)
        if listed.returncode != 0 and "invalid job id" not in listed.stderr.lower():
            # slurmctld busy or unreachable: not knowing is not a failure (that would submit the point twice).
            return "running", f"unknown (squeue: {last_line(listed.stderr)})"
        state = listed.stdout.strip().lower() if listed.returncode == 0 else ""
        if state and state not in ("completed", "failed", "cancelled", "timeout", "node_fail", "out_of_memory"):
            return "running", state
        return "failed", f"SLURM job ended{' ' + state if state else ''} without a result (timeout? cancelled?)"


def read_record(project: Path) -> dict[str, Submitted]:
    path = project / RECORD
    if not path.exists():
        return {}
    return {name: Submitted(**entry) for name, entry in json.loads(path.read_text()).items()}


def write_record(project: Path, jobs: Mapping[str, Submitted]) -> None:
    from llmcls.core.outputs import staged_file

    path = project / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(path) as tmp:
        tmp.write_text(json.dumps({name: asdict(job) for name, job in jobs.items()}, indent=2))


def executor(backend: str, folder: Path, parameters: Mapping[str, Any], jobs: int):
    """A submitit executor for ``backend``; ``parameters`` are submitit's SLURM ones (partition, gpus_per_node,
    cpus_per_task, mem_gb, time, account, setup...), checked by submitit itself."""
    import submitit

    if backend == "slurm":
        made = submitit.SlurmExecutor(folder=folder)
        try:
            made.update_parameters(**{"time": 24 * 60, "array_parallelism": jobs} | dict(parameters))
        except (ValueError, TypeError) as error:
            raise LlmclsError(f"--slurm: {error}") from None
        return made
    if parameters:
        raise LlmclsError("--slurm / --slurm-config apply to --backend slurm only")
    made = submitit.LocalExecutor(folder=folder)
    made.update_parameters(timeout_min=7 * 24 * 60)  # submitit's local default is 2 minutes
    return made


def submit(
    project: Path,
    backend: str,
    specs: Sequence[JobSpec],
    parameters: Mapping[str, Any],
    jobs: int,
    echo: Callable[[str], None],
) -> list[Submitted]:
    """Submit one job per spec (SLURM: one array; local: at most ``jobs`` at a time, waiting) and record them."""
    folder = (project / JOBS_DIR / "logs").resolve()
    made = executor(backend, folder, parameters, jobs)
    record = read_record(project)
    submitted: list[Submitted] = []

    def keep(spec: JobSpec, job) -> None:
        entry = Submitted(spec.name, backend, str(job.job_id), str(folder), spec.commit, spec.status)
        record[spec.name] = entry
        submitted.append(entry)
        write_record(project, record)
        echo(f"# submitted {spec.name}: job {entry.job_id}, log {entry.log()}")

    for spec in specs:  # before the job starts, so an earlier attempt's end is not read as this one's
        write_status(spec.status, "submitted")
    if backend == "slurm":
        with made.batch():
            pending = [(spec, made.submit(PointJob(), spec)) for spec in specs]
        for spec, job in pending:
            keep(spec, job)
        return submitted
    running: list = []
    for spec in specs:
        while len(running) >= jobs:
            running = [job for job in running if not job.done()]
            time.sleep(0.5)
        job = made.submit(PointJob(), spec)
        running.append(job)
        keep(spec, job)
    return submitted


def wait(jobs: Sequence[Submitted], poll_s: float = 2.0) -> None:
    """Block until none of ``jobs`` is running."""
    while any(job.status()[0] == "running" for job in jobs):
        time.sleep(poll_s)


def collect(project: Path, remote: str, names: Sequence[str]) -> None:
    """`dvc exp pull` the named experiments (git refs and their outputs) from the git remote."""
    if names:
        checked_call(["dvc", "exp", "pull", "--force", remote, *names], project)


def plan_jobs(
    project: Path,
    backend: str,
    planned: Sequence[Any],
    remote: str,
    work_dir: Path,
    echo: Callable[[str], None],
) -> list[JobSpec]:
    """The points to submit: ``planned`` (llmcls.experiments.sweep.Planned) less those already run here, pushed
    to the remote or running as a job; a point whose job failed is submitted again."""
    from llmcls.experiments.sweep import override_value

    if backend == "slurm" and any(k == "train.launch.num_machines" and v != 1 for p in planned for k, v in p.overrides):
        raise LlmclsError("--backend slurm runs one node per point: multi-node runs go through slurm/train.sbatch")
    make = spec_maker(project, remote, work_dir)
    commit = make.commit
    pushed, record = pushed_experiments(project, remote, commit), read_record(project)
    specs = []
    for item in planned:
        job = record.get(item.name)
        status, detail = job.status() if job and job.commit == commit else ("", "")
        if item.skipped:
            echo(f"# skip {item.name}: {item.skipped}")
        elif item.name in pushed:
            echo(f"# skip {item.name}: finished, on {remote} (llmcls sweep --collect brings it here)")
        elif status == "running":
            echo(f"# skip {item.name}: running as job {job.job_id} ({job.log()})")
        else:
            if status:  # finished without a pushed experiment counts as failed too
                echo(f"# again {item.name}: job {job.job_id} failed: {detail or 'no experiment pushed'} ({job.log()})")
            specs.append(make(item.name, tuple(f"{key}={override_value(value)}" for key, value in item.overrides)))
    return specs


@dataclass(frozen=True)
class SpecMaker:
    """JobSpecs for this project's commit (checked to be on the remote), remotes and work folder."""

    project: Path
    repo: str
    commit: str
    config: tuple[tuple[str, ...], ...]
    work_dir: Path

    def __call__(self, name: str, overrides: tuple[str, ...], env: Mapping[str, str] | None = None) -> JobSpec:
        check_name(name, "experiment name")  # it becomes the clone's folder and the job's status file
        clone = str((self.work_dir / name).resolve())
        status = str((self.project / JOBS_DIR / "status" / f"{name}.json").resolve())
        return JobSpec(name, overrides, self.repo, self.commit, self.config, clone, tuple((env or {}).items()), status)


def spec_maker(project: Path, remote: str, work_dir: Path) -> SpecMaker:
    commit = commit_on_remote(project, remote)
    return SpecMaker(project, remote_url(project, remote), commit, job_config(project), work_dir)


def outcome(project: Path, remote: str, names: Sequence[str], echo: Callable[[str], None]) -> list[str]:
    """Pull the named experiments that reached the remote; name the others with their job's state and log.
    Returns the names of failed points."""
    commit = checked_call(["git", "rev-parse", "HEAD"], project).strip()
    pushed = pushed_experiments(project, remote, commit)
    done = [name for name in names if name in pushed]
    collect(project, remote, done)
    for name in done:
        echo(f"# collected {name}")
    record, failed = read_record(project), []
    for name in names:
        if name in pushed:
            continue
        job = record.get(name)
        if job is None or job.commit != commit:
            echo(f"# missing {name}: not on {remote}, no job of this commit recorded here")
            continue
        status, detail = job.status()
        if status == "running":
            echo(f"# running {name}: job {job.job_id} ({job.log()})")
        else:
            failed.append(name)
            echo(f"# FAILED {name}: job {job.job_id}: {detail or 'no experiment pushed'} (log: {job.log()})")
    return failed
