"""DVC that can be trusted and shared, end to end in temporary git repos: data files are deps, two clones at
different paths hash alike, and results travel through a local-directory remote and a bare git remote."""

import json
import shutil

import pytest
from conftest import run, sentiment_frame

pytestmark = [pytest.mark.slow, pytest.mark.dvc, pytest.mark.model]


def ran(result) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` ran, in order."""
    return [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")]


@pytest.fixture
def datasets(tmp_path):
    folder = tmp_path / "datasets" / "sst2"
    folder.mkdir(parents=True)
    sentiment_frame(5).to_csv(folder / "train.tsv", sep="\t", index=False)
    return folder.parent


def test_editing_input_data_reruns_fetch_and_what_it_changes(reproduced_copy, datasets):
    project_copy = reproduced_copy
    run(["dvc", "remote", "add", "--local", "-f", "datasets", str(datasets)], project_copy)
    assert "up to date" in run(["dvc", "status"], project_copy).stdout

    # A file of a dataset this run does not read (it reads data/custom): no stage re-runs.
    with open(datasets / "sst2" / "train.tsv", "a") as handle:
        handle.write("one more row\t1\n")
    assert "up to date" in run(["dvc", "status"], project_copy).stdout

    # One row appended to the custom file: fetch and everything downstream of the data re-run; the
    # base model and the prompt-only row's model do not.
    with open(project_copy / "data" / "custom" / "reviews.csv", "a") as handle:
        handle.write("a late review,1\n")
    status = run(["dvc", "status"], project_copy).stdout
    assert "fetch:" in status and "remote://dataset-custom/" in status
    stages = ran(run(["dvc", "repro"], project_copy))
    assert stages[0] == "fetch" and {"preprocess", "split", "train", "evaluate"} <= set(stages)
    assert "fetch_model" not in stages
    raw = json.loads((project_copy / "data" / "raw" / "source.json").read_text())
    assert raw["rows"] == {"train": 61} and raw["files"] == {"train": "data/custom/reviews.csv"}

    # Removing a file of the dataset's folder is a change too.
    (project_copy / "data" / "custom" / "README.md").unlink()
    assert "remote://dataset-custom/" in run(["dvc", "status"], project_copy).stdout


def test_clones_hash_alike_and_share_results_through_remotes(reproduced_copy, datasets, tmp_path):
    a = reproduced_copy  # reproduced and committed
    run(["dvc", "remote", "add", "--local", "-f", "datasets", str(datasets)], a)
    storage, origin = tmp_path / "storage", tmp_path / "origin.git"
    run(["dvc", "remote", "add", "--local", "-f", "storage", str(storage)], a)
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    run(["git", "remote", "add", "origin", str(origin)], a)
    run(["git", "push", "-q", "origin", "HEAD:main"], a)
    run(["dvc", "push"], a)

    def clone(name):
        path = tmp_path / "elsewhere" / name
        run(["git", "clone", "-q", "-b", "main", str(origin), str(path)], tmp_path)
        for cmd in (["git", "config", "user.email", "t@llmcls"], ["git", "config", "user.name", "t"]):
            run(cmd, path)
        run(["dvc", "remote", "add", "--local", "-f", "datasets", str(datasets)], path)
        run(["dvc", "remote", "add", "--local", "-f", "storage", str(storage)], path)
        return path

    # A clone at another path that runs the pipeline itself gets the same lock and metrics, byte for byte.
    c = clone("c")
    shutil.rmtree(c / "metrics")
    (c / "dvc.lock").unlink()
    run(["dvc", "repro"], c)
    assert (c / "dvc.lock").read_text() == (a / "dvc.lock").read_text()
    assert run(["git", "status", "--porcelain", "dvc.lock", "metrics"], c).stdout == ""

    # A clone that pulls is up to date and runs nothing.
    b = clone("b")
    run(["dvc", "pull"], b)
    assert "up to date" in run(["dvc", "status"], b).stdout
    assert ran(run(["dvc", "repro"], b)) == []
    assert (b / "metrics" / "eval.json").read_text() == (a / "metrics" / "eval.json").read_text()
    assert (b / "models" / "classifier" / "llmcls.json").is_file()
    # Experiments pushed and pulled between clones: tests/test_cluster.py (each sweep job pushes its own).
