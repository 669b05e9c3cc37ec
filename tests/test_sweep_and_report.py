"""`llmcls sweep` and `llmcls report`: aggregation math on fixed numbers, the report on a fake
`dvc exp show --json`, and the commands a sweep queues."""

import json
import math
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import ROOT, default_params
from dvc.utils.hydra import apply_overrides

from llmcls.cli import experiments as cli_experiments
from llmcls.cli import main as cli
from llmcls.config.params import read_yaml
from llmcls.experiments.aggregate import (
    PairedTest,
    Summary,
    comparisons,
    entries,
    group_entries,
    learning_curves,
    paired_test,
)
from llmcls.experiments.report import build_report, generated_table
from llmcls.experiments.runs import finished, normalise_params, parse_exp_show
from llmcls.experiments.seed_ensemble import PREDICTIONS, average, read_predictions, score
from llmcls.experiments.sweep import experiment_name, flat_params, grid, override_value, plan
from llmcls.experiments.workers import orphaned, recover

REFERENCE = flat_params((ROOT / "params.yaml").read_text())
# The committed defaults, so these tests follow a change of the default model or train size.
MODEL = REFERENCE["model.name"]
SIZE = REFERENCE["split.train_size"]


def has_cells(text: str, *cells: str) -> bool:
    """Whether a Markdown table row of ``text`` holds ``cells`` side by side (tables pad their cells)."""
    for line in text.splitlines():
        if line.startswith("|"):
            row = [c.strip() for c in line.strip().strip("|").split("|")]
            if any(row[i : i + len(cells)] == list(cells) for i in range(len(row))):
                return True
    return False


def test_summary_mean_and_sample_std():
    s = Summary.of([0.8, 0.9, 1.0])
    assert s.mean == pytest.approx(0.9) and s.std == pytest.approx(0.1) and s.n == 3
    assert s.format() == "0.9000 ± 0.1000"
    one = Summary.of([0.85])
    assert math.isnan(one.std) and one.format() == "0.8500"


def test_paired_t_test_on_fixed_numbers():
    # Differences 0.05, 0.04, 0.06: mean 0.05, sd 0.01 -> t = 0.05 / (0.01 / sqrt 3) = 8.660 with 2 df.
    result = paired_test([0.80, 0.82, 0.84], [0.85, 0.86, 0.90])
    assert result.mean_diff == pytest.approx(0.05)
    assert result.t == pytest.approx(5 * math.sqrt(3), rel=1e-6)
    # Two-sided p for t = 5 sqrt(3) with 2 df: 1 - t / sqrt(2 + t^2) = 1 - 8.660 / 8.775.
    assert result.p == pytest.approx(1 - 5 * math.sqrt(3) / math.sqrt(2 + 75), rel=1e-6)
    assert "paired t-test" in result.test


def test_paired_test_without_variation_or_pairs_is_not_a_test():
    assert math.isnan(paired_test([0.8, 0.9], [0.85, 0.95]).p)  # every difference 0.05
    assert math.isnan(paired_test([0.8], [0.9]).p)
    with pytest.raises(ValueError):
        paired_test([0.8, 0.9], [0.9])


def metrics(acc, f1=None, loss=None, classes=("negative", "positive")):
    test = {"accuracy": acc, "f1_macro": f1 if f1 is not None else acc - 0.01, "log_loss": loss or 1 - acc}
    test["f1_per_class"] = {c: acc for c in classes}
    return {"data": {"test": test, "val": test}}


def row(rev, params, acc, timestamp, base_acc=None, name=None, state=None, seconds=600.0):
    """One `dvc exp show --json` state: params.yaml and the three metrics files."""
    files = {"metrics/eval.json": metrics(acc), "metrics/train/metrics.json": {"data": {"train_runtime_s": seconds}}}
    if base_acc is not None:
        files["metrics/baseline/eval.json"] = metrics(base_acc)
        files["metrics/ensemble/eval.json"] = metrics(min(acc + 0.01, 1.0))
        files["metrics/prompt_only/eval.json"] = metrics(0.5)
    data = {"rev": rev, "timestamp": timestamp, "params": {"params.yaml": {"data": params}}, "metrics": files}
    if state == "queued":
        data["metrics"] = {}
    return {"rev": rev, "name": name, "data": data, "error": None, "experiments": None}


def params(**overrides):
    return default_params(**overrides)


def fake_exp_show():
    """A commit (sst2 seed 0) with five experiments, the workspace repeating the commit, and an older commit
    whose `model` was still a plain string."""
    exps = []
    accs = {("sst2", 42): 0.87, ("sst2", 123): 0.85, ("r8", 0): 0.95, ("r8", 42): 0.96, ("r8", 123): 0.94}
    for i, ((dataset, seed), acc) in enumerate(accs.items()):
        p = params(dataset=dataset, **{"train.seed": seed})
        state = row(
            f"e{i:039d}",
            p,
            acc,
            f"2026-11-22T1{i}:00:00",
            base_acc=0.80 if dataset == "sst2" else 0.93,
            name=f"{dataset}-s{seed}",
        )
        exps.append({"revs": [state], "executor": None, "name": f"{dataset}-s{seed}"})
    queued = row("q" * 40, params(dataset="sst2", **{"train.mode": "full"}), 0, None, name="sst2-full", state="queued")
    exps.append(
        {"revs": [queued], "executor": {"state": "queued", "name": "dvc-task", "local": None}, "name": "sst2-full"}
    )
    commit = row("c" * 40, params(), 0.86, "2026-11-22T09:00:00", base_acc=0.80)
    commit["experiments"] = exps
    workspace = row("workspace", params(), 0.86, None, base_acc=0.80)
    old = params(**{"train.epochs": 1})
    old["model"] = "smollm2-135m"
    older = row("o" * 40, old, 0.83, "2026-11-20T09:00:00")
    return [workspace, commit, older]


def test_runs_are_read_and_deduplicated():
    runs = parse_exp_show(fake_exp_show())
    assert {r.state for r in runs} == {"done", "queued"}
    kept = finished(runs)
    # The workspace repeats its commit; the queued run has no metrics: 5 experiments + commit + older commit.
    assert len(kept) == 7
    assert {r.rev for r in kept} >= {"c" * 40, "o" * 40}
    older = next(r for r in kept if r.rev == "o" * 40)
    assert older.params["model.name"] == "smollm2-135m"


def test_leaderboard_groups_seeds_and_tests_pairs():
    groups = group_entries(entries(finished(parse_exp_show(fake_exp_show()))), REFERENCE)
    llm = {(g.key("dataset"), g.variant): g for g in groups if g.system == "llm"}
    sst2 = llm[("sst2", "")]
    assert sst2.seeds == [0, 123, 42] and sst2.summary("accuracy").mean == pytest.approx((0.86 + 0.87 + 0.85) / 3)
    assert sst2.summary("accuracy").std == pytest.approx(0.01)
    assert llm[("sst2", "train.epochs=1")].summary("accuracy").n == 1  # the older commit is its own row
    baseline = next(g for g in groups if g.system == "baseline" and g.key("dataset") == "sst2")
    assert baseline.summary("accuracy").std == pytest.approx(0, abs=1e-12) and len(baseline.seeds) == 3
    found = {(c.a.key("dataset"), c.what): c.result for c in comparisons(groups)}
    vs_base = found[("sst2", "baseline -> llm")]
    assert isinstance(vs_base, PairedTest) and vs_base.n == 3 and vs_base.mean_diff == pytest.approx(0.06)
    assert found[("r8", "ensemble -> llm")].mean_diff == pytest.approx(-0.01)


def test_prompt_only_row_ignores_training_settings_and_pairs_with_each_seed():
    rows = fake_exp_show()
    # Another LLM run that differs only in a training setting: same data, same prompt, same base model.
    other = params(**{"train.learning_rate": 0.0001, "train.seed": 7})
    rows.append(row("f" * 40, other, 0.70, "2026-11-22T21:00:00", base_acc=0.80))
    groups = group_entries(entries(finished(parse_exp_show(rows))), REFERENCE)
    prompt_only = [g for g in groups if g.system == "prompt_only" and g.key("dataset") == "sst2"]
    assert len(prompt_only) == 1 and prompt_only[0].variant == ""
    assert prompt_only[0].title == f"prompt-only: {MODEL}, no fine-tuning"
    assert "train.seed" not in prompt_only[0].params and "train.learning_rate" not in prompt_only[0].params
    assert len(prompt_only[0].seeds) == 4  # the same value from every run of the dataset
    found = {(c.a.key("dataset"), c.what): c.result for c in comparisons(groups)}
    assert found[("sst2", "prompt_only -> llm")].mean_diff == pytest.approx(0.86 - 0.5)


def test_generative_rows_beside_the_head_with_a_paired_test_and_their_generated_answers(tmp_path):
    rows = fake_exp_show()
    for seed, acc, share in ((0, 0.80, 0.9), (42, 0.82, 1.0), (123, 0.78, 0.95)):
        state = row(f"g{seed:039d}", params(**{"train.objective": "generative", "train.seed": seed}), acc, "2026-11-23")
        state["data"]["metrics"]["metrics/eval.json"]["data"]["test"]["generated"] = {
            "in_label_set_share": share,
            "accuracy": acc - 0.05,
            "f1_macro": acc - 0.06,
        }
        rows.append(state)
    groups = group_entries(entries(finished(parse_exp_show(rows))), REFERENCE)
    generative = next(g for g in groups if g.system == "llm" and g.key("train.objective") == "generative")
    assert generative.title == f"{MODEL} lora generative (scored)" and generative.variant == ""
    assert generative.generated("in_label_set_share").mean == pytest.approx(0.95)
    found = {(c.a.key("dataset"), c.what): c.result for c in comparisons(groups)}
    head_vs_gen = found[("sst2", "train.objective: head -> generative")]
    assert head_vs_gen.n == 3 and head_vs_gen.mean_diff == pytest.approx(0.80 - 0.86)
    table = "\n".join(generated_table(groups))
    assert has_cells(
        table, "sst2", f"{MODEL} lora generative (scored)", f"{SIZE}", "3", "0.9500 ± 0.0500", "0.7500 ± 0.0200"
    )


def test_learning_curve_needs_two_sizes():
    rows = fake_exp_show()
    extra = row("d" * 40, params(**{"split.train_size": 500, "train.seed": 42}), 0.80, "2026-11-22T20:00:00")
    rows.append(extra)
    groups = group_entries(entries(finished(parse_exp_show(rows))), REFERENCE)
    curves = [c for c in learning_curves(groups) if c.dataset == "sst2"]
    assert len(curves) == 1
    sizes = [size for size, _ in curves[0].points]
    assert sizes == [500, SIZE] and curves[0].points[1][1].n == 3


def test_report_command_on_a_fake_exp_show(tmp_path):
    rows = fake_exp_show()
    rows.append(row("d" * 40, params(**{"split.train_size": 500}), 0.80, "2026-11-22T20:00:00", base_acc=0.7))
    saved = tmp_path / "exp_show.json"
    saved.write_text(json.dumps(rows))
    out = tmp_path / "report.md"
    result = CliRunner().invoke(cli.main, ["report", "--from-json", str(saved), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert has_cells(text, "sst2", f"{MODEL} lora", f"{SIZE}", "3", "0.8600 ± 0.0100")
    assert has_cells(text, "r8", f"{MODEL} lora", f"{SIZE}", "3", "0.9500 ± 0.0100")
    assert has_cells(text, "r8", f"ensemble: {MODEL} lora + TF-IDF", f"{SIZE}", "3", "**0.9600 ± 0.0100**")
    assert has_cells(text, "sst2", "TF-IDF + logistic regression", f"{SIZE}", "3", "0.8000 ± 0.0000")
    assert "paired t-test (two-sided, scipy.stats.ttest_rel)" in text
    assert "baseline -> llm" in text
    for figure in ("learning_curve_sst2.png", "per_class_f1_sst2.png", "per_class_f1_r8.png"):
        assert (tmp_path / "report" / figure).stat().st_size > 5000, figure
        assert f"](report/{figure})" in text
    assert "confusion matrix not drawn" in text  # the fake revs have no eval_report.json in git


def test_report_without_runs_is_one_clear_error(tmp_path):
    saved = tmp_path / "empty.json"
    saved.write_text("[]")
    result = CliRunner().invoke(cli.main, ["report", "--from-json", str(saved), "--out", str(tmp_path / "r.md")])
    assert result.exit_code == 1 and "no run with test metrics found" in result.output


def predictions_csv(rows: list[tuple[str, str, float]]) -> str:
    """A two-class predictions CSV: (id, true label, probability of positive) per row."""
    lines = ["id,label,predicted,prob_negative,prob_positive"]
    for rid, label, pos in rows:
        lines.append(f"{rid},{label},{'positive' if pos > 0.5 else 'negative'},{1 - pos:.4f},{pos:.4f}")
    return "\n".join(lines) + "\n"


def test_seed_ensemble_averages_probabilities_by_id_and_scores_them():
    # Seed 2 lists the rows in another order: averaging matches them by id, not by position.
    one = read_predictions(
        predictions_csv([("a", "positive", 0.9), ("b", "negative", 0.6), ("c", "positive", 0.4)]), "1"
    )
    two = read_predictions(
        predictions_csv([("c", "positive", 0.8), ("a", "positive", 0.7), ("b", "negative", 0.2)]), "2"
    )
    mean = average([one, two])
    assert list(mean["id"]) == ["a", "b", "c"]
    assert mean["prob_positive"].tolist() == pytest.approx([0.8, 0.4, 0.6])
    assert list(mean["predicted"]) == ["positive", "negative", "positive"]  # each seed alone got one row wrong
    metrics = score(mean)
    assert metrics["accuracy"] == 1.0 and metrics["n"] == 3
    assert metrics["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.6)) / 3)
    unlabelled = mean.assign(label="")
    assert score(unlabelled) is None  # a Kaggle test split: averaged predictions, no metrics


def test_seed_ensemble_refuses_tables_of_other_rows_or_classes():
    one = read_predictions(predictions_csv([("a", "positive", 0.9), ("b", "negative", 0.6)]), "1")
    other_rows = read_predictions(predictions_csv([("a", "positive", 0.9), ("z", "negative", 0.6)]), "2")
    with pytest.raises(ValueError, match="other rows"):
        average([one, other_rows])
    other_classes = one.rename(columns={"prob_positive": "prob_neutral"})
    with pytest.raises(ValueError, match="other classes"):
        average([one, other_classes])
    with pytest.raises(ValueError, match="not a predictions table"):
        read_predictions("id,label\na,positive\n", "x.csv")


def test_report_lists_seed_ensembles_and_writes_their_predictions(tmp_path):
    runs = finished(parse_exp_show(fake_exp_show()))
    # The three sst2 seeds (the commit and two experiments); the r8 runs have no predictions in git.
    truth = [("a", "positive"), ("b", "negative"), ("c", "positive"), ("d", "negative")]
    positive = {
        "c" * 40: [0.9, 0.6, 0.4, 0.2],
        "e" + "0" * 39: [0.7, 0.2, 0.8, 0.6],
        f"e{1:039d}": [0.6, 0.3, 0.7, 0.1],
    }
    files = {
        rev: predictions_csv([(i, lab, p) for (i, lab), p in zip(truth, ps, strict=True)])
        for rev, ps in positive.items()
    }
    result = build_report(
        runs, REFERENCE, tmp_path / "report.md", lambda run, path: files.get(run.rev) if path == PREDICTIONS else None
    )
    text = (tmp_path / "report.md").read_text()
    assert "## Seed ensembles" in text
    # Averages 0.7333, 0.3667, 0.6333, 0.3: all four right, against the seeds' mean of 0.86 in the leaderboard.
    name = "seed_ensemble_sst2_1.csv"
    assert has_cells(text, "sst2", f"{MODEL} lora", f"{SIZE}", "3", "1.0000", "1.0000")
    assert has_cells(text, "+0.1400", "1800", f"[{name}](report/{name})")
    assert has_cells(
        text,
        "r8",
        f"{MODEL} lora",
        f"{SIZE}",
        "3",
        "—",
        "—",
        "—",
        "—",
        "—",
        f"not averaged: no {PREDICTIONS} in `r8-s0`",
    )
    written = read_predictions((tmp_path / "report" / name).read_text(), name)
    assert written["prob_positive"].tolist() == pytest.approx([2.2 / 3, 1.1 / 3, 1.9 / 3, 0.3])
    assert len(result["seed_ensembles"]) == 2  # sst2 averaged, r8 with its reason; single-seed rows are left out


def test_sweep_plans_names_and_skips_what_ran():
    axes = {"dataset": ["sst2", "r8"], "train.seed": [0, 42, 123]}
    points = grid(axes, {})
    assert len(points) == 6
    runs = parse_exp_show(fake_exp_show())
    planned = plan(points, {}, REFERENCE, runs)
    queued = [p for p in planned if not p.skipped]
    # sst2 seed 0 is the commit, sst2 42/123 and r8 0/42/123 are experiments: all six ran already.
    assert queued == []
    assert next(p for p in planned if p.name == "sst2-s0").skipped.startswith("already ran as")
    fresh = plan(grid({"dataset": ["sst2"], "train.mode": ["full"], "train.seed": [0, 42]}, {}), {}, REFERENCE, runs)
    assert [p.skipped is None for p in fresh] == [False, True]  # seed 0 full is queued already
    assert fresh[0].skipped == "queued as sst2-full"
    assert fresh[1].command() == [
        "dvc",
        "exp",
        "run",
        "--queue",
        "-n",
        "sst2-full-s42",
        "-S",
        "dataset=sst2",
        "-S",
        "train.mode=full",
        "-S",
        "train.seed=42",
    ]


def test_a_run_from_before_a_key_existed_reads_as_the_behaviour_it_had():
    """A head run recorded before `train.objective` (and LP-FT's `train.head_init`) existed: a generative sweep
    must queue its point, and the run groups as a random-head run, not as today's default."""
    old = params(**{"split.train_size": 100})
    del old["train"]["objective"], old["train"]["head_init"]
    runs = parse_exp_show([row("o" * 40, old, 0.6, "2026-11-20T09:00:00")])
    assert runs[0].params["train.objective"] == "head"
    assert runs[0].params["train.head_init"] == "random"
    point = {"split.train_size": 100, "train.seed": 0}
    generative = plan(
        grid({"train.seed": [0]}, {"split.train_size": 100, "train.objective": "generative"}),
        {"train.objective": "generative"},
        REFERENCE,
        runs,
    )
    assert generative[0].skipped is None
    random_head = plan([point | {"train.head_init": "random"}], {}, REFERENCE, runs)
    assert random_head[0].skipped == f"already ran as {'o' * 7}"
    assert plan([point], {}, REFERENCE, runs)[0].skipped is None  # today's default starts from a linear probe


def test_a_running_point_whose_process_is_gone_is_released_and_a_live_one_is_not(tmp_path):
    """The pid of a running experiment comes from `dvc exp show`; a dead one (or none: the worker died before it
    started the run, or its pid now belongs to another command) is released, a live one never (DVC would kill
    it), nor a queued one."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    # A stand-in for a live `dvc exp exec-run`: its command line says so, as the real one's does.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "exec-run"])
    rows = fake_exp_show()

    def running(rev, name, pid):
        state = row(rev, params(**{"train.seed": 7}), 0, None, name=name, state="queued")
        local = None if pid is None else {"root": str(tmp_path / name), "pid": pid, "log": "x", "task_id": rev}
        return {"revs": [state], "executor": {"state": "running", "name": "dvc-task", "local": local}, "name": name}

    rows[1]["experiments"] += [running("d" * 40, "dead", ended.pid), running("l" * 40, "live", live.pid)]
    rows[1]["experiments"] += [running("n" * 40, "never-started", None), running("r" * 40, "reused", os.getpid())]
    try:
        runs = parse_exp_show(rows)
        assert {r.name: r.pid for r in runs if r.state == "running"} == {
            "dead": ended.pid,
            "live": live.pid,
            "never-started": None,
            "reused": os.getpid(),
        }
        assert sorted(r.name for r in orphaned(runs)) == ["dead", "never-started", "reused"]
        kept, lines = recover(runs, tmp_path, dry_run=True)  # a dry run releases nothing, and says so
        assert {r.name for r in runs} - {r.name for r in kept} == {"dead", "never-started", "reused"}
        assert len(lines) == 3 and all("its worker is gone" in line for line in lines)
    finally:
        live.kill()
        live.wait()
    # Released, the point is planned again; the live one still blocks its own.
    reference = normalise_params(params())
    assert plan(grid({"train.seed": [7]}, {}), {}, reference, runs)[0].skipped == "running as dead"
    assert plan(grid({"train.seed": [7]}, {}), {}, reference, kept)[0].skipped == "running as live"


def test_sweep_names_and_values():
    point = {
        "dataset": "sst2",
        "model.name": "Qwen/Qwen3-1.7B",
        "train.mode": "lora",
        "split.train_size": None,
        "train.seed": 0,
    }
    assert experiment_name(point, {}) == "sst2-Qwen-Qwen3-1.7B-lora-nall-s0"
    assert experiment_name(point, {"preprocess.prompt_wrapping": False}).startswith(
        "sst2-Qwen-Qwen3-1.7B-lora-nall-s0-x"
    )
    assert [override_value(v) for v in (None, True, 5e-4, "all-linear", ["q_proj", "v_proj"])] == [
        "null",
        "true",
        "0.0005",
        "all-linear",
        "[q_proj, v_proj]",
    ]


@pytest.mark.parametrize(
    "value",
    [
        "请仔细阅读下面这条评论：“{text}”，判断它属于以下哪个类别：{class_labels}，答案：",
        'Please carefully read the following reference text:"{text}", answer:',
        "it's a\\b, \\'quoted\\' ${x} a\\${y} end\\",
        "null",
        "",
        ["q_proj", "注意"],
        {"negative": 1.5, "positive": "x y"},
        1e-05,
    ],
)
def test_sweep_values_read_back_unchanged_through_dvc_set_param(tmp_path, value):
    """What `-S key=<value>` writes into params.yaml is the value the sweep meant (a Chinese template was
    written as literal \\u escapes before)."""
    path = tmp_path / "params.yaml"
    path.write_text("preprocess:\n  template: x\n")
    apply_overrides(str(path), [f"preprocess.template={override_value(value)}"])
    assert read_yaml(path.read_text())["preprocess"]["template"] == value


def test_sweep_command_dry_run_prints_the_dvc_commands(monkeypatch):
    monkeypatch.setattr(cli_experiments, "exp_show", lambda scope: [])  # no dvc: a fast test
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(
        cli.main, ["sweep", "--datasets", "sst2,r8", "--train-sizes", "2000", "--dry-run", "--start", "-j", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    commands = [line for line in lines if line.startswith("dvc exp run")]
    assert len(commands) == 6
    assert commands[0] == (
        f"dvc exp run --queue -n sst2-{MODEL}-lora-n2000-s0 -S dataset=sst2 -S model.name={MODEL} "
        "-S train.mode=lora -S split.train_size=2000 -S train.seed=0"
    )
    assert "dvc queue start -j 2" in lines and lines[-1] == "# 6 queued, 0 skipped (dry run)"


def test_sweep_rejects_an_unknown_setting(monkeypatch):
    monkeypatch.setattr(cli_experiments, "exp_show", lambda scope: [])  # no dvc: a fast test
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli.main, ["sweep", "--set", "train.learnign_rate=0.1", "--dry-run"])
    assert result.exit_code == 1 and "unknown params keys ['train.learnign_rate']" in result.output


def test_sweep_reads_exponent_values_as_numbers():
    from llmcls.experiments.sweep import parse_value

    assert parse_value("5e-5") == 5e-05 and parse_value("all") is None and parse_value("false") is False


def test_a_commit_whose_params_moved_on_after_its_repro_is_not_a_result():
    from llmcls.experiments.runs import lock_agrees

    run = parse_exp_show([row("c" * 40, params(dataset="zh-reviews"), 0.86, "2026-11-22T09:00:00")])[0]
    lock = "schema: '2.0'\nstages:\n  fetch:\n    params:\n      params.yaml:\n        dataset: sst2\n"
    assert not lock_agrees(run, lock)
    assert lock_agrees(run, lock.replace("sst2", "zh-reviews")) and lock_agrees(run, None)
    nested = (
        "stages:\n  train:\n    params:\n      params.yaml:\n"
        "        model.head: linear\n        train:\n          seed: 0\n"
    )
    assert lock_agrees(run, nested) and not lock_agrees(run, nested.replace("seed: 0", "seed: 42"))
    # DVC writes small floats as 5e-05 in the lock too: read as the number it is, it agrees.
    exp_run = parse_exp_show([row("e" * 40, params(**{"train.learning_rate": 5e-05}), 0.86, "2026-11-22T09:00:00")])[0]
    assert lock_agrees(exp_run, nested.replace("seed: 0", "seed: 0\n          learning_rate: 5e-05"))


def test_a_pinned_data_revision_is_part_of_a_runs_identity():
    from llmcls.experiments.runs import identity

    params = {"dataset": "sst2", "fetch.revision": "a" * 40, "fetch.sources": ("local",), "train.seed": 0}
    assert identity(params) == {"dataset": "sst2", "fetch.revision": "a" * 40, "train.seed": 0}


def score_metrics(pearson):
    test = {"n": 100, "pearson": pearson, "spearman": pearson - 0.01, "rmse": 1 - pearson, "mae": 0.5, "r2": 0.5}
    return {"data": {"test": test, "val": test}}


def test_a_score_dataset_is_ranked_and_tested_by_pearson(tmp_path):
    rows = fake_exp_show()
    for i, (seed, pearson) in enumerate(((0, 0.80), (42, 0.82))):
        state = row(f"s{i:039d}", params(dataset="stsb", **{"train.seed": seed}), 0, f"2026-11-23T1{i}:00:00")
        state["data"]["metrics"]["metrics/eval.json"] = score_metrics(pearson)
        state["data"]["metrics"]["metrics/baseline/eval.json"] = score_metrics(0.40)
        rows[1]["experiments"].append({"revs": [state], "executor": None, "name": f"stsb-s{seed}"})
    result = build_report(finished(parse_exp_show(rows)), REFERENCE, tmp_path / "r.md", lambda run, path: None)
    text = (tmp_path / "r.md").read_text()
    assert result["best"]["stsb"].system == "llm" and result["best"]["sst2"].system == "ensemble"
    assert "**0.8100 ± 0.0141**" in text and "Pearson" in text and "accuracy" in text
    tests = {(c.a.key("dataset"), c.what): c for c in result["comparisons"]}
    assert tests[("stsb", "baseline -> llm")].metric == "pearson"
    assert tests[("sst2", "baseline -> llm")].metric == "accuracy"


def test_metric_for_best_auto_is_the_task_metric_when_runs_are_compared():
    from llmcls.experiments.runs import identity, same_config

    before_auto = params(**{"train.metric_for_best": "accuracy"})
    assert same_config(flat_params(json.dumps(before_auto)), REFERENCE)  # sst2: auto picks accuracy
    assert identity(flat_params(json.dumps(params(dataset="stsb"))))["train.metric_for_best"] == "pearson"
    assert identity(flat_params(json.dumps(params(dataset="goemotions"))))["train.metric_for_best"] == "f1_macro"


def test_a_score_group_is_not_seed_averaged_and_says_why(tmp_path):
    from llmcls.experiments.seed_ensemble import seed_ensemble

    rows = fake_exp_show()
    for i, seed in enumerate((0, 42)):
        state = row(f"s{i:039d}", params(dataset="stsb", **{"train.seed": seed}), 0, f"2026-11-23T1{i}:00:00")
        state["data"]["metrics"]["metrics/eval.json"] = score_metrics(0.8)
        rows[1]["experiments"].append({"revs": [state], "executor": None, "name": f"stsb-s{seed}"})
    groups = group_entries(entries(finished(parse_exp_show(rows))), REFERENCE)
    stsb = next(g for g in groups if g.key("dataset") == "stsb")
    assert "single-label runs" in seed_ensemble(stsb, lambda run, path: None)
