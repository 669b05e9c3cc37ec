"""End to end: the real `dvc repro` and `dvc exp run` in a fresh git repo, on a tiny configuration.

Most tests start from one reproduced project (conftest `reproduced`), copied per test."""

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import BIN, SHARED, commit_all, run, sentiment_frame, tiny_train_overrides, write_params

pytestmark = [pytest.mark.slow, pytest.mark.dvc, pytest.mark.model]

STAGES = ["fetch", "fetch_model", "preprocess", "split", "probe", "train", "evaluate", "baseline", "ensemble", "submit"]


def test_repro_then_noop_then_experiments(reproduced, reproduced_copy):
    tiny_project = reproduced_copy
    for name in STAGES:
        assert f"Running stage '{name}'" in reproduced.first_run
    metrics = json.loads((tiny_project / "metrics" / "eval.json").read_text())
    assert {"val", "test"} <= set(metrics) and 0 <= metrics["test"]["accuracy"] <= 1
    assert {"accuracy", "f1_macro", "log_loss", "f1_per_class"} <= set(metrics["test"])
    for system in ("baseline", "ensemble"):  # the classical reference and the blend, scored alike
        other = json.loads((tiny_project / "metrics" / system / "eval.json").read_text())
        assert 0 <= other["test"]["accuracy"] <= 1 and other["test"]["n"] == metrics["test"]["n"]
    submission = pd.read_csv(tiny_project / "data" / "submission.csv")
    assert list(submission.columns) == ["id", "0", "1"]
    assert (tiny_project / "models" / "classifier" / "llmcls.json").is_file()

    start = time.perf_counter()
    again = run(["dvc", "repro"], tiny_project)
    assert "Running stage" not in again.stdout
    assert time.perf_counter() - start < 10

    first_head = json.loads((tiny_project / "models" / "classifier" / "llmcls.json").read_text())["training"]
    exp = run(["dvc", "exp", "run", "-S", "train.seed=42"], tiny_project)
    assert "Running stage 'train'" in exp.stdout and "Running stage 'fetch'" not in exp.stdout
    # The probe's features are the first seed's: not recomputed, read by train, the same warm start.
    assert "Running stage 'probe'" not in exp.stdout and "probe features read from data/probe" in exp.stdout
    head = json.loads((tiny_project / "models" / "classifier" / "llmcls.json").read_text())["training"]
    assert head["head_init"] == first_head["head_init"] and head["head_init"]["method"] == "linear_probe"
    shown = json.loads(run(["dvc", "exp", "show", "--json"], tiny_project).stdout)
    experiments = [e for commit in shown for e in (commit.get("experiments") or [])]
    assert experiments, shown
    exp_data = experiments[0]["revs"][0]["data"]
    assert exp_data["params"]["params.yaml"]["data"]["train"]["seed"] == 42
    assert "accuracy" in exp_data["metrics"]["metrics/eval.json"]["data"]["test"]

    diff = run(["dvc", "metrics", "diff", "--json"], tiny_project)
    assert "metrics/eval.json" in json.loads(diff.stdout)
    plots = run(["dvc", "plots", "diff", "--json"], tiny_project)
    assert "Validation accuracy" in plots.stdout


def test_queued_seed_sweep(reproduced_copy):
    """The README's seed sweep queues one experiment per seed. (That the queue then runs them, in copies of the
    project, is test_faults' killed-worker test: two queued points run to the end there.)"""
    tiny_project = reproduced_copy
    run(["dvc", "exp", "run", "-S", "train.seed=0,42", "--queue"], tiny_project)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], tiny_project).stdout)
    queued = [e for commit in shown for e in (commit.get("experiments") or [])]
    assert {e["executor"]["state"] for e in queued} == {"queued"}
    seeds = sorted(e["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"]["seed"] for e in queued)
    assert seeds == [0, 42]


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets")
def test_arena_sample_gives_a_valid_submission(project_copy, tiny_model_dir):
    write_params(
        project_copy,
        **(
            tiny_train_overrides(tiny_model_dir)
            | {
                "dataset": "arena",
                "preprocess.max_length": 256,
            }
        ),
    )
    commit_all(project_copy)
    run(["dvc", "repro", "submit"], project_copy)  # and what it needs (prompt_only is not upstream)
    submission = pd.read_csv(project_copy / "data" / "submission.csv")
    expected = pd.read_csv(SHARED / "lmsys_arena" / "sample_submission.csv")
    assert list(submission.columns) == list(expected.columns)
    assert sorted(submission["id"]) == sorted(expected["id"])
    assert (submission.iloc[:, 1:].sum(axis=1) - 1).abs().max() < 1e-6
    record = json.loads((project_copy / "data" / "raw" / "source.json").read_text())
    assert record["source"] == "local"
    # A/B-swap TTA is on by default: val is scored both ways and the plain numbers are kept beside.
    metrics = json.loads((project_copy / "metrics" / "eval.json").read_text())
    assert {"accuracy", "f1_macro", "log_loss"} == set(metrics["val"]["without_tta"])
    assert json.loads((project_copy / "data" / "split" / "labels.json").read_text())["swap_permutation"] == [1, 0, 2]


def test_headerless_tsv_with_an_empty_row_then_predict_and_export(project_copy, tiny_model_dir, tmp_path):
    """A user's files as they come (no header, label ids with a names file, one empty text), `dvc repro evaluate`
    with bad_rows: skip, then `llmcls predict` / `llmcls export` on the result."""
    rows = sentiment_frame(30)
    rows.loc[7, "sentence"] = ""
    custom = project_copy / "data" / "custom"
    rows[["sentence", "label"]].to_csv(custom / "news.tsv", sep="\t", header=False, index=False)
    (custom / "classes.txt").write_text("negative\npositive\n", encoding="utf-8")
    settings = {
        "dataset": "custom",
        "custom.train_path": "data/custom/news.tsv",
        "custom.header": False,
        "custom.names": ["text", "label_id"],
        "custom.label_column": "label_id",
        "custom.label_names": "data/custom/classes.txt",
        "preprocess.bad_rows": "skip",
    }
    write_params(project_copy, **tiny_train_overrides(tiny_model_dir), **settings)
    commit_all(project_copy)
    result = run(["dvc", "repro", "evaluate"], project_copy)  # what predict and export read
    assert "skipped 1 bad row(s)" in result.stdout and "news.tsv row 8 (id train-7)" in result.stdout
    report = json.loads((project_copy / "metrics" / "bad_rows.json").read_text())
    assert report["skipped"] == 1 and report["rows"][0]["row"] == 8
    assert json.loads((project_copy / "models" / "classifier" / "labels.json").read_text())["labels"] == [
        "negative",
        "positive",
    ]

    new = pd.DataFrame({"text": [f"new review number {i}" for i in range(50)]})
    new.to_csv(tmp_path / "new.csv", index=False)
    llmcls = [f"{BIN}/llmcls", "predict", "--model", "models/classifier"]
    run([*llmcls, "--input", str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv")], project_copy)
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert len(predicted) == 50 and set(predicted["predicted"]) <= {"negative", "positive"}

    test = pd.read_parquet(project_copy / "data" / "split" / "test.parquet")
    pd.DataFrame({"text": test["text"]}).to_csv(tmp_path / "test.csv", index=False)
    run([*llmcls, "--input", str(tmp_path / "test.csv"), "--out", str(tmp_path / "t.csv")], project_copy)
    ours = pd.read_csv(tmp_path / "t.csv")[["prob_negative", "prob_positive"]].to_numpy()
    theirs = pd.read_csv(project_copy / "metrics" / "predictions" / "test.csv")[["prob_negative", "prob_positive"]]
    assert abs(ours - theirs.to_numpy()).max() <= 1e-6

    run([f"{BIN}/llmcls", "export", "--out", str(tmp_path / "exported")], project_copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [f"{BIN}/llmcls", "predict", "--model", str(tmp_path / "exported"), "--input", str(tmp_path / "test.csv")]
    run([*cmd, "--out", "e.csv"], elsewhere)
    exported = pd.read_csv(elsewhere / "e.csv")[["prob_negative", "prob_positive"]].to_numpy()
    assert abs(exported - theirs.to_numpy()).max() <= 1e-6


def edit(path: Path) -> None:
    """A change to a file that DVC sees (its hash changes) and Python ignores."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n# edited\n")


def stages_to_rerun(project: Path) -> set[str]:
    """The stages `dvc status` says changed."""
    return set(json.loads(run(["dvc", "status", "--json"], project).stdout))


def test_an_edit_reruns_only_the_stages_that_use_it(reproduced_copy):
    """A stage depends on the code and data it uses and on nothing else: editing the code of prompt-only, the
    baseline, the report, export or predict, or a dataset this run does not read, names only the stages that
    run it (none for the report, export, predict and another dataset)."""
    project = reproduced_copy
    src = project / "src" / "llmcls"
    assert stages_to_rerun(project) == set()
    cases = {
        src / "evaluate" / "prompt_only.py": {"prompt_only"},
        src / "evaluate" / "baseline.py": {"baseline"},
        src / "experiments" / "report.py": set(),
        src / "serve" / "export.py": set(),
        src / "serve" / "predict.py": set(),
        src / "data" / "prompt.py": {"preprocess"},
    }
    for path, expected in cases.items():
        before = path.read_bytes()
        edit(path)
        assert stages_to_rerun(project) == expected, path
        path.write_bytes(before)
    # A dataset this run (custom) does not read, in the shared datasets folder: the datasets remote moves to a
    # private copy first, since the real one is not ours to edit.
    datasets = project.parent / "datasets"
    (datasets / "sst2").mkdir(parents=True)
    (datasets / "sst2" / "train.tsv").write_text("sentence\tlabel\nfine\t1\n", encoding="utf-8")
    run(["dvc", "remote", "add", "--local", "-f", "datasets", str(datasets)], project)
    edit(datasets / "sst2" / "train.tsv")
    assert stages_to_rerun(project) == set()
    edit(project / "data" / "custom" / "reviews.csv")  # the run's own data
    assert stages_to_rerun(project) == {"fetch"}
