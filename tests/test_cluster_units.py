"""experiments/cluster.py without a scheduler: what a job's clone is told, and how a job's state is read."""

import os
import subprocess

import pytest
from dvc.repo import Repo

from llmcls.experiments.cluster import JobSpec, Submitted, job_config, write_status


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
    job = Submitted("p", "submitit-local", str(os.getpid()), str(tmp_path), "c0ffee", str(status))
    write_status(str(status), "submitted")
    assert job.status() == ("running", "")  # this process is alive
    write_status(str(status), "failed", "LlmclsError: boom")
    assert job.status() == ("failed", "LlmclsError: boom")
    write_status(str(status), "finished")
    assert job.status()[0] == "finished"
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_status(str(status), "running")
    dead = Submitted("p", "submitit-local", str(gone.pid), str(tmp_path), "c0ffee", str(status))
    assert dead.status()[0] == "failed" and "without a result" in dead.status()[1]


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
