"""The old and the new path of each costly phase of the default run, side by side in one process, and what the
default run costs with each, estimated from the measured rates; on this host's instruction set or as an
AVX2-only host (the CPU most people have).

    dvc repro split fetch_model                    # the default run's inputs (data/split, models/base)
    python benchmarks/paths.py                     # this host as it is
    python benchmarks/paths.py --avx2              # as an AVX2-only host: oneDNN, MKL and ATen held to AVX2, fp32

Pairs, each on the same validation rows (whole batches of the length-sorted split, from its longest to its
shortest, as a stage scores them) and the same model, old and new alternated --repeats times (medians):
- prompt-only scoring: vocabulary logits at every position where some row of the batch ends (old) | at each
  row's last position only (evaluate/label_scoring.last_positions_only).
- head inference (validation, calibration, evaluate, the probe's forward): the forward builds a KV cache it never
  reads (old) | use_cache=False.
- a model trained in bf16 (on a GPU or an AMX host) scored here: in bf16 (old) | in core.devices.
  inference_precision's choice (fp32 where bf16 is emulated: the same path on a host that runs bf16 fast).
The training loop's time per optimizer step is measured once (--steps steps of the train stage's own Trainer);
old and new differ in how many steps and validations they run (OLD_TRAIN against params.yaml).

The estimate: each model-bound phase of the run logs in logs/ (this host's last `dvc repro`) is replaced by
rows x the measured time per row (or steps x time per step); startup, loading, fetch, baseline... are kept as
logged. Install time is not measured here (--install-s).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
# What an AVX2-only host runs: oneDNN (matmuls, attention), MKL (BLAS) and ATen's own vectorised kernels.
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
# The default run's training settings before issue 48 (params.yaml at 06d5f5f): validation every 250 steps.
OLD_TRAIN = {"epochs": 2, "eval_steps": 250}


def medians(old: Callable[[], object], new: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``old()`` and ``new()``, run in turns so a drift of the machine hits both."""
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(repeats):
        for name, fn in (("old", old), ("new", new)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["old"]), statistics.median(times["new"])


def prompt_scores(lm, prompts, firsts: list[int], pad_id: int, batch: int, precision: str, gathered: bool):
    """The first label token's log-probability after each prompt, the old way or the new one."""
    import torch

    from llmcls.evaluate.label_scoring import last_positions_only
    from llmcls.model.inference import map_batches

    def read(b):
        lengths = b["attention_mask"].sum(dim=1)
        rows = torch.arange(len(lengths))
        if gathered:
            with last_positions_only(lm, rows, lengths - 1):
                logits = lm(**b, use_cache=False).logits[:, 0]
        else:
            ends = torch.unique(lengths - 1)
            logits = lm(**b, use_cache=False, logits_to_keep=ends).logits[rows, torch.searchsorted(ends, lengths - 1)]
        return torch.log_softmax(logits.float(), dim=-1)[:, firsts].cpu().numpy()

    return map_batches(lm, prompts, pad_id, batch, read, precision, progress=lambda n: None)


def batch_blocks(frame, rows: int, batch: int) -> list[list[int]]:
    """About ``rows`` rows of ``frame`` as whole batches of its length-sorted order, spread evenly from its
    longest rows to its shortest: the batches a stage scores (a sparse sample would mix lengths that the
    stage never puts in one batch, and change what padding and per-batch work cost)."""
    ordered = frame.sort_values("length", ascending=False, kind="stable")["input_ids"].tolist()
    blocks = max(rows // batch, 1)
    last = max(len(ordered) - batch, 0)
    starts = sorted({round(i * last / max(blocks - 1, 1)) for i in range(blocks)})
    return [list(ids) for start in starts for ids in ordered[start : start + batch]]


def prompt_pair(base_dir, split, tokenizer, sample, batch: int, precision: str, repeats: int):
    """({"prompt-only scoring": (old s, new s)}, the largest difference between their log-probabilities)."""
    import numpy as np

    from llmcls.evaluate.label_scoring import label_token_ids, scoring_batch_size
    from llmcls.model.build import base_lm

    lm = base_lm(base_dir).eval()
    firsts = [ids[0] for ids in label_token_ids(tokenizer, split.prompt["label_texts"])]
    size = scoring_batch_size(sample, batch)  # the prompt_only stage's batch
    pad = tokenizer.pad_token_id
    score = {g: (lambda g=g: prompt_scores(lm, sample, firsts, pad, size, precision, g)) for g in (False, True)}
    gap = float(np.abs(score[False]() - score[True]()).max())
    return {"prompt-only scoring": medians(score[False], score[True], repeats)}, gap


def head_pairs(base_dir, split, params, pad: int, sample, batch: int, precision: str, repeats: int, avx2: bool):
    """{"head inference": (old s, new s)} and, where bf16 is emulated here, the bf16-trained model's pair."""
    from llmcls.core.devices import inference_precision
    from llmcls.model.build import base_classifier
    from llmcls.model.inference import head_probabilities

    head = base_classifier(base_dir, split.labels, pad, params.model.to_dict())

    def infer(cache: bool, precision: str = precision, rows=sample):
        head.config.use_cache = cache
        return head_probabilities(head, rows, pad, batch, precision, progress=lambda n: None)

    pairs = {"head inference": medians(lambda: infer(True), lambda: infer(False), repeats)}
    if inference_precision("bf16") != "bf16" or avx2:  # held to AVX2, bf16 is emulated whatever the flags say
        few = sample[:: max(len(sample) // 8, 1)]  # emulated bf16 is ~100x slower: a few rows tell
        old, new = medians(lambda: infer(False, "bf16", few), lambda: infer(False, "fp32", few), 1)
        pairs["a bf16-trained model scored"] = (old * len(sample) / len(few), new * len(sample) / len(few))
    return pairs


def step_seconds(params, split, base_dir: Path, tokenizer, precision: str, steps: int) -> float:
    """Seconds per optimizer step of the train stage's Trainer (the first step, with its setup, left out)."""
    import tempfile

    from transformers import TrainerCallback, set_seed

    from llmcls.model.build import build_classifier
    from llmcls.train.trainer import make_trainer, training_arguments

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    set_seed(params.train.seed)
    frames = split.frames(("train", "val"))
    model = build_classifier(base_dir, split.labels, tokenizer.pad_token_id, params.model, params.train)
    with tempfile.TemporaryDirectory() as out:
        common = dict(max_steps=steps + 1, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
        args = training_arguments(params, Path(out), precision, **common)
        trainer = make_trainer(model, args, tokenizer, frames["train"], frames["val"])
        trainer.add_callback(Clock())
        trainer.train()
    return (marks[-1] - marks[0]) / (len(marks) - 1)


def run_plan(train, frames) -> tuple[int, int]:
    """(optimizer steps, validations) of a run with these train settings on these rows."""
    from llmcls.train.trainer import planned_steps, validation_interval

    steps = planned_steps(train, frames["train"]["length"].tolist(), 1)
    return steps, -(-steps // validation_interval(train, steps))


def logged_phases(log_dir: Path) -> dict[str, dict[str, float]]:
    """Each stage's wall time and phase times from the run logs (stage -> phase -> seconds, '' the rest)."""
    import json

    stages = {}
    for path in sorted(log_dir.glob("*.json")):
        log = json.loads(path.read_text())
        phases = dict(log.get("phases_s", {}))
        phases[""] = log["wall_s"] - sum(phases.values())
        stages[path.stem] = phases
    return stages


@click.command()
@click.option("--split", "split_dir", default="data/split", show_default=True, type=click.Path(path_type=Path))
@click.option("--base", "base_dir", default="models/base", show_default=True, type=click.Path(path_type=Path))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--logs", "log_dir", default="logs", show_default=True, type=click.Path(path_type=Path))
@click.option("--rows", default=128, show_default=True, help="validation rows each pair scores")
@click.option("--steps", default=50, show_default=True, help="optimizer steps timed (50: one length-grouped megabatch)")
@click.option("--repeats", default=3, show_default=True, help="turns of each old / new pair")
@click.option("--avx2", is_flag=True, help="run as an AVX2-only host would (oneDNN, MKL and ATen held to AVX2, fp32)")
@click.option(
    "--install-s", default=150.0, show_default=True, help="install time added to the estimate (measured apart)"
)
def main(split_dir, base_dir, params_path, log_dir, rows, steps, repeats, avx2, install_s):
    """Old and new path of each phase, side by side, and the default run's estimated time with each."""
    if avx2 and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        # The instruction set is fixed when torch loads: start again with it held down.
        os.execve(sys.executable, [sys.executable, *sys.argv], os.environ | AVX2_ENV)

    from llmcls.config.params import load_params
    from llmcls.core.artifacts import SplitFolder
    from llmcls.core.devices import enable_fast_matmul, resolve_precision, use_all_cpu_cores
    from llmcls.model.base import load_tokenizer

    threads = use_all_cpu_cores()
    enable_fast_matmul()
    params = load_params(params_path)
    # An AVX2 host has no fast bf16, so `precision: auto` picks fp32 there; cpu flags cannot tell that here.
    precision = "fp32" if avx2 else resolve_precision(params.train.precision)
    split, tokenizer = SplitFolder(split_dir), load_tokenizer(base_dir)
    frames, pad, batch = split.frames(("train", "val", "test")), tokenizer.pad_token_id, params.evaluate.batch_size
    sample = batch_blocks(frames["val"], rows, batch)
    kind = "AVX2 forced (" + ", ".join(f"{k}={v}" for k, v in AVX2_ENV.items()) + ")" if avx2 else "as it is"
    print(f"# host {kind}, {threads} threads, precision {precision}, {len(sample)} rows a pair", flush=True)

    per_row, gap = prompt_pair(base_dir, split, tokenizer, sample, batch, precision, repeats)
    per_row |= head_pairs(base_dir, split, params, pad, sample, batch, precision, repeats, avx2)
    step_s = step_seconds(params, split, base_dir, tokenizer, precision, steps)

    print(f"\n| phase (per {len(sample)} rows) | old s | new s | old / new |\n|---|---|---|---|")
    for name, (old, new) in per_row.items():
        print(f"| {name} | {old:.2f} | {new:.2f} | {old / new:.2f}x |")
    print(f"\nprompt-only: old and new log-probabilities differ by at most {gap:.1e}")
    print(f"training loop: {step_s:.2f} s per optimizer step ({params.train.batch_size} rows)")

    head_old, head_new = (t / len(sample) for t in per_row["head inference"])
    prompt_old, prompt_new = (t / len(sample) for t in per_row["prompt-only scoring"])
    n = {name: len(frame) for name, frame in frames.items()}
    plans = {"old": run_plan(params.train.model_copy(update=OLD_TRAIN), frames), "new": run_plan(params.train, frames)}
    logged = logged_phases(log_dir)
    # Model-bound phases, estimated from the rates; the probe's forward costs what head inference does.
    model_bound = {
        ("probe", "probe"): (n["train"] * head_old, n["train"] * head_new),
        ("train", "training"): (plans["old"][0] * step_s, plans["new"][0] * step_s),
        ("train", "validation"): (plans["old"][1] * n["val"] * head_old, plans["new"][1] * n["val"] * head_new),
        ("train", "calibration"): (n["val"] * head_old, n["val"] * head_new),
        ("evaluate", "score val"): (n["val"] * head_old, n["val"] * head_new),
        ("evaluate", "score test"): (n["test"] * head_old, n["test"] * head_new),
        ("prompt_only", "score val"): (n["val"] * prompt_old, n["val"] * prompt_new),
        ("prompt_only", "score test"): (n["test"] * prompt_old, n["test"] * prompt_new),
    }
    print(f"\nold: {plans['old'][0]} steps, {plans['old'][1]} validations; new: {plans['new'][0]}, {plans['new'][1]}")
    print("\n| stage | old s | new s |\n|---|---|---|")
    totals = {"old": install_s, "new": install_s}
    print(f"| install (--install-s, not measured here) | {install_s:.0f} | {install_s:.0f} |")
    for stage, phases in logged.items():
        spent = {"old": 0.0, "new": 0.0}
        for phase, seconds in phases.items():
            old, new = model_bound.get((stage, phase), (seconds, seconds))
            spent["old"] += old
            spent["new"] += new
        totals = {k: totals[k] + spent[k] for k in totals}
        print(f"| {stage} | {spent['old']:.0f} | {spent['new']:.0f} |")
    print(f"| **default run** | **{totals['old'] / 60:.1f} min** | **{totals['new'] / 60:.1f} min** |")
    logged_s = sum(sum(phases.values()) for phases in logged.values())
    print(f"\nthe run logs in {log_dir}/ add up to {logged_s / 60:.1f} min (+ install): the host they were measured on")


if __name__ == "__main__":
    main()
