"""A sweep point's job, as it runs on a node: clone the repository at the sweep's commit (or keep the clone of
the point's earlier attempt), run the point as a DVC experiment, push it, and record its state in a JSON file.
experiments/cluster.py submits these jobs and reads their states."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmcls.core.errors import LlmclsError


@dataclass(frozen=True)
class JobSpec:
    """Everything a job needs, picklable: submitit sends it to the node."""

    name: str
    overrides: tuple[str, ...]  # KEY=VALUE as `dvc exp run -S` reads them
    repo: str  # git URL the job clones and pushes the experiment to
    commit: str
    config: tuple[tuple[str, ...], ...]  # `dvc remote add --local -f NAME URL` / `dvc config --local KEY VALUE`
    clone: str  # the job's working folder (removed after a pushed experiment)
    env: tuple[tuple[str, str], ...] = ()  # added to the run's environment (a `llmcls tune --prune` trial's id)
    status: str = ""  # the JSON file the job writes its state to: running, finished or failed (with why)

    def commands(self) -> list[list[str]]:
        """The job's commands after the clone, in order (printed by --dry-run)."""
        sets = [arg for override in self.overrides for arg in ("-S", override)]
        return [
            *([*setting] for setting in self.config),
            ["dvc", "exp", "run", "--pull", "-n", self.name, *sets],
            ["dvc", "exp", "push", "origin", self.name],
        ]


def checked_call(command: Sequence[str], cwd: str | Path | None = None, env: Mapping[str, str] | None = None) -> str:
    full_env = os.environ | dict(env) if env else None
    result = subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=full_env
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise LlmclsError(f"`{shlex.join(command)}` failed ({result.returncode}):\n{output[-4000:]}")
    return result.stdout


JOB_MARK = "llmcls-job.json"  # in a clone's .git: which point and commit it was made for


def prepare_clone(spec: JobSpec) -> bool:
    """The point's clone at the sweep's commit; True when an earlier attempt's clone (a job requeued at its
    time limit or preempted) is kept, so its train stage resumes from its last checkpoint there. A clone made
    for another commit is replaced; a folder llmcls did not make is refused, never deleted."""
    clone = Path(spec.clone)
    mark = clone / ".git" / JOB_MARK
    if clone.exists():
        try:
            made_for = json.loads(mark.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise LlmclsError(
                f"{clone} exists and is not a clone llmcls made for a job: move it, or pick another --work-dir"
            ) from None
        if made_for == {"name": spec.name, "commit": spec.commit}:
            return True
        shutil.rmtree(clone)  # this point's clone of an earlier sweep commit: its checkpoints cannot resume here
    clone.parent.mkdir(parents=True, exist_ok=True)
    checked_call(["git", "clone", "--quiet", "--no-checkout", spec.repo, str(clone)])
    checked_call(["git", "checkout", "--quiet", "--detach", spec.commit], clone)
    mark.write_text(json.dumps({"name": spec.name, "commit": spec.commit}), encoding="utf-8")
    return False


def run_point(spec: JobSpec) -> str:
    """The job: clone at the sweep's commit (or reuse the clone of this point's earlier attempt), run the point
    as a DVC experiment, push it. Runs on the node. Its state goes to a JSON file (not submitit's result pickle:
    llmcls loads no pickle)."""
    write_status(spec.status, "running")
    try:
        if prepare_clone(spec):
            print(f"llmcls job {spec.name}: resuming in {spec.clone} (its earlier attempt's checkpoints)", flush=True)
        for command in spec.commands():
            print(f"llmcls job {spec.name}: {shlex.join(command)}", flush=True)
            print(checked_call(command, spec.clone, dict(spec.env))[-2000:], flush=True)
        shutil.rmtree(spec.clone)  # pushed: the clone holds nothing the remotes lack
    except Exception as error:
        write_status(spec.status, "failed", f"{type(error).__name__}: {last_line(str(error))}")
        raise
    write_status(spec.status, "finished")
    return spec.name


class PointJob:
    """What submitit runs for a point. Before a SLURM time limit (or a preemption) submitit signals the job
    and calls `checkpoint`: the same point is requeued, not failed, and the next attempt finds its clone and the
    train stage's checkpoints where this one left them."""

    def __call__(self, spec: JobSpec) -> str:
        return run_point(spec)

    def checkpoint(self, spec: JobSpec):
        from submitit.helpers import DelayedSubmission

        write_status(spec.status, "requeued", "time limit or preemption: requeued, resumes from its last checkpoint")
        return DelayedSubmission(self, spec)


def write_status(path: str, state: str, detail: str = "") -> None:
    from llmcls.core.outputs import staged_file

    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with staged_file(Path(path)) as tmp:
            tmp.write_text(json.dumps({"state": state, "detail": detail}))


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
