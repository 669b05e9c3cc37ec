"""The reliability table (docs/reliability.md), measured rather than written by hand: generated inputs per
reader, faults injected and survived, and bit-identical evaluation runs.

    python benchmarks/reliability.py --examples 300 --kills 3 --eval-runs 20 --out docs/reliability.md

Generated inputs: the hypothesis strategies of tests/hostile.py, with fresh random examples (the test suite
replays a fixed set), through custom files (fetch -> preprocess -> split), `llmcls predict` and params.yaml:
each either gives a result, is rejected cleanly (one `llmcls: error:` naming the file / row / key), or gets a
traceback (the goal: none). Faults: a tiny project reproduced once; every stage killed at --kills random
moments (tests/test_faults.py's kill_during), each followed by `dvc repro`, which must end with dvc.lock's
outputs as before and no temporary file left; a full disk per stage; a corrupted cache object. Evaluation:
the evaluate stage of this workspace's run (`dvc repro` first) --eval-runs times in fresh processes, its
eval.json and predictions compared byte for byte.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import (  # noqa: E402
    build_tiny_model,
    commit_all,
    new_project,
    run,
    tiny_custom_project,
    train_tiny_project,
)
from hostile import OK, REJECTED, TRACEBACK, table_files  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def explore(name: str, test, examples: int) -> None:
    """Run a property's body over ``examples`` fresh (unseeded) examples; the body counts outcomes."""
    started = time.time()
    settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))(test)()
    print(f"{name}: {examples} examples in {time.time() - started:.0f}s", flush=True)


def generated_inputs(examples: int, base: Path, trained: Path) -> tuple[collections.Counter, dict]:
    from test_hostile_inputs import LEAVES, YAML_VALUES, params_outcome, predict_outcome, reader_outcomes

    counts: collections.Counter = collections.Counter()
    samples: dict = {}

    @given(table=table_files())
    def custom_files(table):
        for stage, kind, detail in reader_outcomes(table, base):
            counts[(f"custom file: {stage}", kind)] += 1
            if kind == TRACEBACK:
                samples.setdefault(f"custom {stage}", (repr(table)[:500], detail))

    @given(table=table_files(formats=("csv", "tsv", "jsonl", "parquet"), max_rows=6))
    def predict_files(table):
        kind, detail = predict_outcome(table, trained / "models/classifier")
        counts[("llmcls predict", kind)] += 1
        if kind == TRACEBACK:
            samples.setdefault("predict", (repr(table)[:500], detail))

    @given(changes=st.lists(st.tuples(st.sampled_from([*LEAVES, "extra"]), YAML_VALUES), min_size=1, max_size=3))
    def params_files(changes):
        kind, detail = params_outcome(changes, [])
        counts[("params.yaml", kind)] += 1
        if kind == TRACEBACK:
            samples.setdefault("params", (repr(changes), detail))

    for name, test in (("custom files", custom_files), ("predict", predict_files), ("params", params_files)):
        explore(name, test, examples)
    return counts, samples


def faults(kills: int, model_dir: Path, seed: int) -> list[tuple[str, int, int, int]]:
    """(fault, injected, landed mid-stage, survived) rows."""
    import test_faults as tf

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        reference = tiny_custom_project(new_project(scratch / "reference", scratch), model_dir)
        run(["dvc", "repro"], reference)
        commit_all(reference, "reproduced")  # train's curves are git-tracked: git restores them
        expected = tf.locked_outs(reference)
        project = scratch / "project"
        shutil.copytree(reference, project, symlinks=True)
        rng = random.Random(seed)
        for stage in [s for s in expected if s != "fetch_model"]:
            landed = survived = 0
            for _ in range(kills):
                hit, problem = tf.kill_and_recover(
                    project, reference, stage, rng.uniform(0, 3.0 if stage == "train" else 1.5)
                )
                landed += hit
                survived += problem is None
                if problem:
                    print(problem, flush=True)
            rows.append((f"SIGKILL during `{stage}`", kills, landed, survived))
            print(rows[-1], flush=True)
        for stage in ("fetch", "preprocess", "split", "train", "evaluate", "baseline", "ensemble", "submit"):
            code, problem = tf.full_disk(project, stage, 1024)
            hit = int(code != 0)  # 0: every file it wrote fit under the limit, no fault happened
            rows.append((f"full disk (1 KiB file limit) in `{stage}`", hit, hit, int(hit and problem is None)))
            print(rows[-1], problem or "", flush=True)
        md5 = expected["split"]["data/split"]
        listing = project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
        entry = yaml.safe_load(listing.read_text())[0]
        victim = project / ".dvc/cache/files/md5" / entry["md5"][:2] / entry["md5"][2:]
        victim.chmod(0o644)
        victim.write_bytes(victim.read_bytes()[:-8] + b"CORRUPT!")
        found = run([sys.executable, "-m", "llmcls.cli.main", "verify"], project, check=False)
        rows.append(("corrupted DVC cache object (`llmcls verify`)", 1, 1, int(found.returncode == 1)))
    return rows


def evaluation_runs(runs: int) -> tuple[int, int, int]:
    """(runs, distinct eval.json, distinct prediction sets) of the evaluate stage in fresh processes."""
    command = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]["evaluate"]["cmd"]
    seen_metrics, seen_predictions = collections.Counter(), collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        command = command.replace("metrics/eval.json", f"{out}/eval.json")
        command = command.replace("metrics/report.json", f"{out}/report.json")
        command = command.replace("metrics/predictions", f"{out}/predictions")
        for i in range(runs):
            subprocess.run(command, shell=True, cwd=ROOT, check=True, capture_output=True)
            seen_metrics[hashlib.sha256((out / "eval.json").read_bytes()).hexdigest()[:12]] += 1
            files = sorted((out / "predictions").glob("*.csv"))
            seen_predictions[hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]] += 1
            print(f"evaluate {i + 1}/{runs}: eval.json {dict(seen_metrics)}", flush=True)
    return runs, len(seen_metrics), len(seen_predictions)


@click.command()
@click.option("--examples", default=300, show_default=True, help="generated inputs per reader")
@click.option("--kills", default=3, show_default=True, help="SIGKILLs per stage")
@click.option("--eval-runs", default=20, show_default=True, help="fresh evaluate processes (0: skip)")
@click.option("--seed", default=0, show_default=True, help="the kill moments' seed")
@click.option("--out", default=ROOT / "docs/reliability.md", type=click.Path(path_type=Path))
def main(examples, kills, eval_runs, seed, out) -> None:
    from llmcls.config.catalog import model_spec
    from llmcls.model.base import materialize

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model = build_tiny_model(scratch / "tiny")
        base = scratch / "base"
        materialize(model_spec(str(model)), ("local",), base)
        trained = train_tiny_project(scratch / "trained", model)
        counts, samples = generated_inputs(examples, base, trained)
        fault_rows = faults(kills, model, seed)
    evaluation = evaluation_runs(eval_runs) if eval_runs else None
    out.write_text(report(counts, samples, fault_rows, evaluation, examples), encoding="utf-8")
    print(f"-> {out}")


def report(counts, samples, fault_rows, evaluation, examples) -> str:
    day = datetime.date.today().isoformat()
    lines = [
        "# Reliability",
        "",
        f"Measured {day} on {platform.machine()} ({platform.processor() or 'cpu'}) by `benchmarks/reliability.py "
        f"--examples {examples}`; rerun it to refresh this page (it is written by the script, not by hand).",
        "",
        "## Generated inputs",
        "",
        "| reader | tried | result | rejected cleanly | traceback |",
        "|---|---|---|---|---|",
    ]
    readers = sorted({name for name, _ in counts})
    for name in readers:
        ok, rejected, bad = (counts[(name, k)] for k in (OK, REJECTED, TRACEBACK))
        lines.append(f"| {name} | {ok + rejected + bad} | {ok} | {rejected} | **{bad}** |")
    for where, (example, detail) in samples.items():
        lines += ["", f"Traceback in {where}: `{example}`", "", "```", detail[-800:], "```"]
    lines += ["", "## Faults", "", "| fault | injected | landed mid-stage | survived |", "|---|---|---|---|"]
    lines += [f"| {name} | {n} | {landed} | {ok} |" for name, n, landed, ok in fault_rows]
    if evaluation:
        runs, metrics, predictions = evaluation
        lines += [
            "",
            "## Evaluation, byte for byte",
            "",
            f"The evaluate stage of the default run, {runs} fresh processes: {metrics} distinct eval.json, "
            f"{predictions} distinct prediction files (the goal: 1 and 1, every run the same bytes).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
