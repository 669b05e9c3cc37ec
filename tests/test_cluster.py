"""Sweeps as scheduler jobs (experiments/cluster.py): each point in its own clone at the sweep's commit, pushed to
a git remote and a DVC remote, collected elsewhere. submitit's local executor runs the jobs as processes here."""

import subprocess

import pytest
from conftest import BIN, run
from dvc.repo import Repo

pytestmark = [pytest.mark.slow, pytest.mark.dvc, pytest.mark.model]
LLMCLS = BIN + "/llmcls"


def shared(project, tmp_path):
    """``project`` with a bare git remote `origin` and a directory DVC remote `storage`, both pushed: what the
    nodes of a cluster clone and pull from."""
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    run(["git", "remote", "add", "origin", str(origin)], project)
    run(["git", "push", "-q", "-u", "origin", "HEAD"], project)
    run(["dvc", "remote", "add", "--local", "-f", "storage", str(tmp_path / "storage")], project)
    run(["dvc", "push", "-q"], project)
    return origin


def report_seeds(project) -> str:
    """The seed count of the report's custom / lora row."""
    run([LLMCLS, "report"], project)
    report = (project / "metrics" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| custom ") and "lora" in line)
    return [c.strip() for c in row.strip("|").split("|")][3]


def test_a_job_sweep_pushes_each_point_collects_elsewhere_and_resubmits_only_a_failed_one(reproduced_copy, tmp_path):
    project = reproduced_copy
    origin = shared(project, tmp_path)
    sweep = [LLMCLS, "sweep", "--backend", "submitit-local", "--seeds", "1,2,3", "-j", "2"]
    dry = run([*sweep, "--dry-run"], project).stdout
    assert dry.count("dvc exp run --pull -n custom-") == 3 and "(dry run)" in dry
    # A point whose node cannot make its clone (a file where its folder goes) fails; the others do not.
    names = [line.split()[2].rstrip(":") for line in dry.splitlines() if line.startswith("# job ")]
    broken = project / ".dvc" / "tmp" / "llmcls-jobs" / "clones" / names[2]
    broken.parent.mkdir(parents=True)
    broken.write_text("not a folder")
    first = run(sweep, project, check=False)
    assert first.returncode == 1, first.stdout + first.stderr
    log = next(line for line in first.stdout.splitlines() if line.startswith(f"# FAILED {names[2]}:"))
    assert "_0_log.err" in log and "NotADirectoryError" in log
    assert first.stdout.count("# collected ") == 2
    assert sorted(run(["dvc", "exp", "list", "--name-only"], project).stdout.split()) == sorted(names[:2])

    broken.unlink()
    again = run(sweep, project).stdout
    assert again.count("# submitted ") == 1 and f"# submitted {names[2]}" in again, again
    assert f"# again {names[2]}: job" in again and f"# collected {names[2]}" in again
    assert again.count("already ran") == 2
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
    assert pulled.count("# collected ") == 3
    assert sorted(run(["dvc", "exp", "list", "--name-only"], other).stdout.split()) == sorted(names)
    assert subprocess.run(["git", "status", "--porcelain"], cwd=other, capture_output=True, text=True).stdout == ""
    assert report_seeds(other) == "4"  # seeds 0 (the commit) and 1, 2, 3 (the jobs)
