"""experiments/cluster.py without a scheduler: what a job's clone is told, and how a job's state is read."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from dvc.repo import Repo
from submitit.helpers import DelayedSubmission

from llmcls.core.errors import LlmclsError
from llmcls.experiments.cluster import Submitted, job_config
from llmcls.experiments.node import JobSpec, PointJob, prepare_clone, write_status
from llmcls.experiments.runs import Run
from llmcls.experiments.workers import orphaned


def test_a_clone_gets_this_machines_remotes_and_shared_cache(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    Repo.init(str(tmp_path))
    dvc = tmp_path / ".dvc"
    # Committed: the default remote, relative to .dvc/ as the project's own is. This machine's: the rest.
    (dvc / "config").write_text("[core]\n    remote = storage\n['remote \"storage\"']\n    url = ../../storage\n")
    (dvc / "config.local").write_text(
        "['remote \"datasets\"']\n    url = /data/sets\n[cache]\n    dir = /shared/dvc-cache\n    shared = group\n"
    )
    commands = job_config(tmp_path)
    assert ("dvc", "remote", "add", "--local", "-f", "storage", str(tmp_path.parent / "storage")) in commands
    assert ("dvc", "remote", "add", "--local", "-f", "datasets", "/data/sets") in commands
    assert ("dvc", "config", "--local", "cache.dir", "/shared/dvc-cache") in commands
    assert ("dvc", "config", "--local", "cache.shared", "group") in commands
    assert not any("cache.type" in c for c in commands)  # not set: DVC's default in the clone too


def test_the_job_commands_run_the_point_and_push_it():
    spec = JobSpec("p", ("train.seed=1",), "git@host:repo", "c0ffee", (("dvc", "remote", "add"),), "/tmp/p")
    assert spec.commands()[1:] == [
        ["dvc", "exp", "run", "--pull", "-n", "p", "-S", "train.seed=1"],
        ["dvc", "exp", "push", "origin", "p"],
    ]


def test_a_jobs_state_is_what_it_wrote_or_whether_its_process_lives(tmp_path):
    status = tmp_path / "p.json"
    # A stand-in for submitit's local runner: its command line names submitit, as the real one's does.
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "submitit"])
    try:
        job = Submitted("p", "submitit-local", str(runner.pid), str(tmp_path), "c0ffee", str(status))
        write_status(str(status), "submitted")
        assert job.status() == ("running", "")  # its process is alive
        write_status(str(status), "requeued")
        assert job.status() == ("running", "")  # a requeued job has not ended
        write_status(str(status), "failed", "LlmclsError: boom")
        assert job.status() == ("failed", "LlmclsError: boom")
        write_status(str(status), "finished")
        assert job.status()[0] == "finished"
    finally:
        runner.kill()
        runner.wait()
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_status(str(status), "running")
    dead = Submitted("p", "submitit-local", str(gone.pid), str(tmp_path), "c0ffee", str(status))
    assert dead.status()[0] == "failed" and "without a result" in dead.status()[1]


def test_a_reused_pid_is_not_the_job_nor_the_queue_worker(tmp_path):
    """The recorded pid now belongs to another command (this test process): the job and the DVC queue run are
    gone, not alive."""
    status = tmp_path / "p.json"
    write_status(str(status), "running")
    job = Submitted("p", "submitit-local", str(os.getpid()), str(tmp_path), "c0ffee", str(status))
    assert job.status()[0] == "failed"
    run = Run(rev="abc", name="p", baseline="c0ffee", timestamp=None, state="running", pid=os.getpid())
    assert orphaned([run]) == [run]


def git_repo(folder):
    folder.mkdir()
    for command in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", folder.name]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *command], cwd=folder, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True).stdout.strip()


def test_a_requeued_job_keeps_its_clone_and_checkpoints_and_a_foreign_folder_is_refused(tmp_path):
    commit = git_repo(tmp_path / "repo")
    clone = tmp_path / "work" / "p"
    spec = JobSpec("p", ("train.seed=1",), str(tmp_path / "repo"), commit, (), str(clone), status=str(tmp_path / "s"))
    assert prepare_clone(spec) is False  # the first attempt clones
    (clone / "models" / "checkpoints").mkdir(parents=True)
    (clone / "models" / "checkpoints" / "checkpoint-8").write_text("weights")
    # SLURM's warning before the time limit: submitit asks the job for its next submission.
    again = PointJob().checkpoint(spec)
    assert isinstance(again, DelayedSubmission) and again.args == (spec,)
    assert json.loads((tmp_path / "s").read_text())["state"] == "requeued"
    assert prepare_clone(spec) is True  # the requeued attempt resumes where the first one stopped
    assert (clone / "models" / "checkpoints" / "checkpoint-8").read_text() == "weights"
    other = dataclasses.replace(spec, commit=git_repo(tmp_path / "other"), repo=str(tmp_path / "other"))
    assert prepare_clone(other) is False and not (clone / "models").exists()  # another commit: cloned afresh
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    with pytest.raises(LlmclsError, match="not a clone llmcls made"):
        prepare_clone(dataclasses.replace(spec, clone=str(mine)))
    assert (mine / "notes").is_dir()


@pytest.mark.parametrize(
    ("reply", "state"),
    [
        ("echo RUNNING", "running"),  # listed
        ("echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", "failed"),  # ended, purged
        ("echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1", "running"),  # unknown
    ],
)
def test_a_slurm_job_without_its_end_is_read_from_squeue(tmp_path, monkeypatch, reply, state):
    fake = tmp_path / "bin" / "squeue"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{reply}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    status = tmp_path / "p.json"
    write_status(str(status), "running")
    assert Submitted("p", "slurm", "7_1", str(tmp_path), "c0ffee", str(status)).status()[0] == state
