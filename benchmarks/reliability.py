"""The reliability table (docs/reliability.md), measured rather than written by hand: generated inputs per
reader, faults injected and survived, and bit-identical evaluation runs.

    python benchmarks/reliability.py --examples 300 --kills 3 --eval-runs 20 --out docs/reliability.md

Generated inputs: the hypothesis strategies of tests/hostile.py, with fresh random examples (the test suite
replays a fixed set), through custom files (fetch -> preprocess -> split), `llmcls predict` and params.yaml:
each either gives a result, is rejected cleanly (one `llmcls: error:` naming the file / row / key), or gets a
traceback (the goal: none). Faults: a tiny project reproduced once; every stage killed at --kills random
moments (tests/test_faults.py's kill_during), each followed by `dvc repro`, which must end with dvc.lock's
outputs as before and no temporary file left; a kill and a full disk (ENOSPC) at each named fault point of
each stage's write-and-rename phase (tests/test_faults.py's strike); a full disk per stage; a corrupted cache
object; `llmcls sweep` killed while it queues and its queue worker killed mid-run (tests/test_faults.py's
bodies). Edges: the tests of each guarantee of issue 53 (writes that cannot destroy, all or nothing, no code
unasked, no secret or name escapes, concurrency), run and counted per guarantee. Scoring: the
evaluate and prompt_only stages of this workspace's run (`dvc repro` first) and `llmcls predict`, each
--eval-runs times in fresh processes, every output compared byte for byte.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import os
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
                survived += hit and problem is None  # a kill that missed the stage proves nothing
                if problem:
                    print(problem, flush=True)
            rows.append((f"SIGKILL at a random moment of `{stage}`", kills, landed, survived))
            print(rows[-1], flush=True)
        for stage, outs in expected.items():
            swapped = len([out for out in outs if out not in tf.LIVE])
            points = [("write", 1), ("rename", 1)] + ([("rename", swapped)] if swapped > 1 else [])
            for (point, nth), action in itertools.product(points, ("kill", "enospc")):
                hit, problem = tf.strike(project, reference, stage, point, nth, action)
                if problem and hit and action == "enospc":
                    print(problem, flush=True)
                if action == "enospc":  # the aged outputs were kept: bring the project back to the reference
                    run(["dvc", "repro"], project)
                    run(["git", "checkout", "--", *tf.LIVE], project, check=False)
                what = {"kill": "SIGKILL", "enospc": "ENOSPC"}[action]
                rows.append((f"{what} at `{stage}:{point}:{nth}`", 1, int(hit), int(hit and problem is None)))
                print(rows[-1], problem or "", flush=True)
        for stage in [s for s in expected if s != "fetch_model"]:
            code, problem = tf.full_disk(project, stage, 1024)
            hit = int(code != 0)  # 0: every file it wrote fit under the limit, no fault happened
            rows.append((f"full disk (1 KiB file limit, EFBIG) in `{stage}`", 1, hit, int(hit and problem is None)))
            print(rows[-1], problem or "", flush=True)
            run(["dvc", "repro"], project)  # its aged outputs back to the reference
            run(["git", "checkout", "--", *tf.LIVE], project, check=False)
        md5 = expected["split"]["data/split"]
        listing = project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
        entry = yaml.safe_load(listing.read_text())[0]
        victim = project / ".dvc/cache/files/md5" / entry["md5"][:2] / entry["md5"][2:]
        victim.chmod(0o644)
        victim.write_bytes(victim.read_bytes()[:-8] + b"CORRUPT!")
        found = run([sys.executable, "-m", "llmcls.cli.main", "verify"], project, check=False)
        rows.append(("corrupted DVC cache object (`llmcls verify`)", 1, 1, int(found.returncode == 1)))
        sweeping = scratch / "sweeping"
        shutil.copytree(reference, sweeping, symlinks=True)
        problems = [tf.kill_sweep_while_queueing(sweeping, rng, edited=i % 2 == 1) for i in range(kills)]
        rows.append(("SIGKILL of `llmcls sweep` inside `dvc exp run --queue`", kills, kills, problems.count(None)))
        print(rows[-1], *filter(None, problems), flush=True)
        problems = []
        for i in range(kills):
            shutil.copytree(reference, scratch / f"worker{i}", symlinks=True)
            problems.append(tf.kill_queue_worker(scratch / f"worker{i}", rng)[0])
        rows.append(("SIGKILL of the queue worker mid-run", kills, kills, problems.count(None)))
        print(rows[-1], *filter(None, problems), flush=True)
    return rows


# Each guarantee at the project's edges and the tests (by name) that try it: hostile targets, faults, folders.
EDGES = {
    "writes that cannot destroy (targets refused, temporaries, concurrent writers)": (
        "folder_is_replaced",
        "repository_its_parents",
        "committed_folder",
        "only_llmcls_temporaries",
        "two_writers",
        "export_refuses",
        "two_predicts",
        "writes_its_out_and_nothing_else",
    ),
    "all or nothing (sets, checkpoints, requeued jobs)": (
        "kill_between",
        "full_disk_or_a_kill",
        "checkpoints_resume",
        "fingerprint",
        "requeued_job",
    ),
    "no code runs unasked (remote code, pickles)": (
        "own_code_never_runs",
        "remote_code_stays_off",
        "pickle",
        "unsafe_load",
        "holds_no_code",
    ),
    "no secret leaks, no name escapes": (
        "names_that_become",
        "passwords_are_masked",
        "password_in_storage",
        "sweep_point_is_validated",
        "no_params_values",
        "escape_data_custom",
    ),
    "concurrency (locks, liveness, out-of-memory back-off)": (
        "second_sweep",
        "backs_off",
        "reused_pid",
        "process_is_gone",
        "jobs_state",
    ),
}
EDGE_TESTS = [
    "tests/test_safe_edges.py",
    "tests/test_security.py",
    "tests/test_cluster_units.py",
    "tests/test_sweep_and_report.py",
]


def edges() -> list[tuple[str, int, int]]:
    """(guarantee, cases tried, cases held) from one pytest run of the edge tests."""
    import xml.etree.ElementTree as ElementTree

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
        subprocess.run([*pytest, *EDGE_TESTS], cwd=ROOT, capture_output=True)
        cases = ElementTree.parse(report).getroot().iter("testcase")
        outcome = {case.get("name"): not list(case) for case in cases}  # no failure/error/skip child: held
    rows = []
    for guarantee, words in EDGES.items():
        tried = [held for name, held in outcome.items() if any(word in name for word in words)]
        rows.append((guarantee, len(tried), sum(tried)))
        print(rows[-1], flush=True)
    return rows


def determinism_runs(runs: int) -> list[tuple[str, int, int]]:
    """(what, runs, distinct outputs) of the evaluate and prompt_only stages of this workspace's run (dvc.lock's
    commands, their outputs and run log sent to a temporary folder) and `llmcls predict` on the raw test file,
    each in ``runs`` fresh processes."""
    import test_faults as tf

    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    commands = {}
    for stage in ("evaluate", "prompt_only"):
        words = lock[stage]["cmd"].split()
        outs = [o["path"] for o in lock[stage]["outs"]]
        # Each output, and the run log (timings: never the same twice), to {out}/<its name>.
        for i, word in enumerate(words):
            if word in outs or (i and words[i - 1] == "--run-log"):
                words[i] = "{out}/" + ("run-log" if words[i - 1] == "--run-log" else Path(word).name)
        commands[f"`{stage}` stage"] = " ".join(words)
    raw = lock["fetch"]["outs"][0]["path"]  # the fetched dataset folder: its test file has texts and labels
    commands["`llmcls predict` (test file)"] = (
        f"llmcls predict --model models/classifier --input {raw}/test.parquet --out {{out}}/predictions.csv"
    )
    # `python` and `llmcls` of this interpreter's environment, whatever PATH the script was started with
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    rows = []
    for what, command in commands.items():
        seen: collections.Counter = collections.Counter()
        for i in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out"
                out.mkdir()
                subprocess.run(command.format(out=out), shell=True, cwd=ROOT, check=True, capture_output=True, env=env)
                (out / "run-log").unlink(missing_ok=True)
                seen[tf.digest(out)] += 1
            print(f"{what} {i + 1}/{runs}: {dict(seen)}", flush=True)
        rows.append((what, runs, len(seen)))
    return rows


@click.command()
@click.option("--examples", default=300, show_default=True, help="generated inputs per reader")
@click.option("--kills", default=3, show_default=True, help="SIGKILLs per stage")
@click.option("--eval-runs", default=20, show_default=True, help="fresh processes of each scorer (0: skip)")
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
    edge_rows = edges()
    evaluation = determinism_runs(eval_runs) if eval_runs else None
    out.write_text(
        report(counts, samples, fault_rows, edge_rows, evaluation, examples, kills, eval_runs), encoding="utf-8"
    )
    print(f"-> {out}")


def report(counts, samples, fault_rows, edge_rows, evaluation, examples, kills, eval_runs) -> str:
    day = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    lines = [
        "# Reliability",
        "",
        f"Measured {day} at commit {commit.stdout.strip()} on {platform.machine()} "
        f"({platform.processor() or 'cpu'}) by `benchmarks/reliability.py --examples {examples} --kills {kills} "
        f"--eval-runs {eval_runs}`; rerun it to refresh this page (it is written by the script, not by hand).",
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
    lines += [
        "",
        "## Faults",
        "",
        "Named fault points (core/faults.py, `LLMCLS_FAULT=STAGE:POINT:N:ACTION`) strike the write-and-rename phase",
        "of each stage on purpose, over aged outputs (a file added to each folder, a byte to each file), so a kept",
        "old output cannot pass for the same one written again. Only a fault that landed counts as survived.",
        "",
        "| fault | injected | landed | survived |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {n} | {landed} | {ok} |" for name, n, landed, ok in fault_rows]
    lines += ["", "## Edges", "", "| guarantee | cases tried | held |", "|---|---|---|"]
    lines += [f"| {guarantee} | {tried} | {held} |" for guarantee, tried, held in edge_rows]
    if evaluation:
        lines += [
            "",
            "## Scoring, byte for byte",
            "",
            "The default run's model scored in fresh processes; every output file (metrics, report, predictions)",
            "compared byte for byte (the goal: 1 distinct, every run the same bytes).",
            "",
            "| scorer | fresh processes | distinct outputs |",
            "|---|---|---|",
        ]
        lines += [f"| {what} | {runs} | **{distinct}** |" for what, runs, distinct in evaluation]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
