"""Throughput of llmcls's train and evaluate paths against a seed-style loop, on the same model and data.

    dvc repro split fetch_model                     # the default params: SST-2, prompt-wrapped, 2,000 sentences
    python benchmarks/throughput.py --steps 50 --repeats 3

(a) seed-style: HF Trainer defaults (random order, no grouping), every batch padded to `--pad-to` tokens,
    fp32; evaluation in dataset order, padded the same way, under `torch.no_grad`, batch = train batch.
(b) llmcls: the train stage's own Trainer settings (`training_arguments` / `make_trainer`: dynamic padding,
    length-grouped batches, bf16 autocast where the hardware runs it fast) and the evaluate stage's
    `head_probabilities` (longest-first batches, dynamic padding, `inference_mode`, LoRA merged, eval batch size).
Both start from the same seed and train the same number of optimizer steps with the same LoRA, learning rate
and batch size. Each variant runs in its own process, so its peak memory is its own, and the two processes
take turns: only one computes at any moment, and they swap every `--turn-steps` optimizer steps and every
`--eval-chunk` validation rows. The speed of this shared machine drifts by up to ~25% over minutes; run one
variant after the other and that drift lands in the ratio, while short alternating turns give both the same
machine. Each variant's time is its own turns only. Tokens/s counts real (non-padding) tokens; "computed"
tokens include padding. HF's length-grouped sampler serves the longest rows of each 50-batch megabatch first,
so over fewer than 50 steps llmcls trains on longer-than-average rows and its samples/s (not its tokens/s)
is understated: the ratio is conservative. llmcls evaluates each chunk longest-first, a little less
efficient than sorting all of val at once: conservative again.
Last, it times DVC itself: `dvc repro` with nothing to do in this workspace, and `dvc exp run` of a tiny
configuration against the same stage commands run bare.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("seed-style", "llmcls")


class Turns:
    """Turn-taking between the two variants' processes (made once, before they start; see `shared_turns`).

    Variant 0 moves first. `hand_over` gives the machine to the other variant and waits for it back, unless
    the other has finished; the time spent waiting is summed so it can be taken out of this variant's timings.
    """

    def __init__(self, ctx, players: int = 2):
        self.start = ctx.Barrier(players)  # nobody's turn starts while the other is still loading its model
        self.turn = [ctx.Semaphore(1 if i == 0 else 0) for i in range(players)]
        self.done = [ctx.Event() for _ in range(players)]
        self.me = 0
        self.waited = 0.0

    def join(self, me: int) -> None:
        self.me = me
        self.start.wait()
        self._wait()

    def hand_over(self) -> None:
        other = 1 - self.me
        if not self.done[other].is_set():
            self.turn[other].release()
            self._wait()

    def leave(self) -> None:
        self.done[self.me].set()
        self.turn[1 - self.me].release()

    def _wait(self) -> None:
        start = time.perf_counter()
        self.turn[self.me].acquire()
        self.waited += time.perf_counter() - start


TURNS: Turns | None = None  # this process's Turns, set when the pool starts it


def _share_turns(turns: Turns) -> None:
    global TURNS
    TURNS = turns
    if sys.platform == "linux":
        # Die with the parent: a killed benchmark must not leave its workers computing beside the next one.
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class CountingCollator:
    """Wraps a collator and records the real and the padded token count of every batch it builds."""

    def __init__(self, inner):
        self.inner = inner
        self.real: list[int] = []
        self.computed: list[int] = []

    def __call__(self, features):
        batch = self.inner(features)
        self.real.append(int(batch["attention_mask"].sum()))
        self.computed.append(batch["attention_mask"].numel())
        return batch

    def totals(self, batches: int) -> tuple[int, int]:
        """Tokens of the first ``batches`` batches: the data loader builds one more ahead than it trains on."""
        return sum(self.real[:batches]), sum(self.computed[:batches])


def seed_style_predict(model, sequences, pad_id: int, width: int, batch_size: int):
    """Evaluation as the seed notebooks do it: dataset order, padded to a fixed width, fp32, no_grad."""
    import numpy as np
    import torch

    from llmcls.model.inference import pad_batch

    out = []
    device = next(model.parameters()).device  # the Trainer moved the model to the GPU where there is one
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            batch = pad_batch(sequences[start : start + batch_size], pad_id)
            extra = width - batch["input_ids"].shape[1]
            batch = {
                "input_ids": torch.nn.functional.pad(batch["input_ids"], (0, extra), value=pad_id),
                "attention_mask": torch.nn.functional.pad(batch["attention_mask"], (0, extra), value=0),
            }
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out)


def run_variant(
    variant: str, split_dir: str, base_dir: str, params_path: str, steps: int, pad_to: int, turn_steps: int, chunk: int
) -> dict:
    """Train ``steps`` optimizer steps and evaluate on val, in turns with the other variant's process."""
    import numpy as np
    import pandas as pd
    import torch
    from transformers import DataCollatorWithPadding, TrainerCallback, set_seed

    from llmcls.config.params import load_params
    from llmcls.core.artifacts import LabelSet
    from llmcls.core.devices import resolve_precision, use_all_cpu_cores
    from llmcls.core.outputs import read_json
    from llmcls.model.base import load_tokenizer
    from llmcls.model.build import build_classifier
    from llmcls.model.inference import head_probabilities
    from llmcls.train.trainer import make_trainer, training_arguments

    turns = TURNS
    assert turns is not None, "run_variant runs in a pool started with _share_turns"

    class HandOver(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % turn_steps == 0:
                turns.hand_over()

    try:
        params = load_params(params_path)
        threads = use_all_cpu_cores()  # both variants get every core
        set_seed(params.train.seed)
        tokenizer = load_tokenizer(base_dir)
        labels = LabelSet.from_json(read_json(Path(split_dir) / "labels.json"))
        train = pd.read_parquet(Path(split_dir) / "train.parquet")
        val = pd.read_parquet(Path(split_dir) / "val.parquet")
        width = max(pad_to, int(train["length"].max()), int(val["length"].max()))
        model = build_classifier(base_dir, labels, tokenizer.pad_token_id, params.model, params.train)
        seed_style = variant == "seed-style"
        precision = "fp32" if seed_style else resolve_precision(params.train.precision)
        common = dict(max_steps=steps, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
        turns.join(VARIANTS.index(variant))
        with tempfile.TemporaryDirectory() as out:
            if seed_style:
                args = training_arguments(params, Path(out), precision, train_sampling_strategy="random", **common)
                padding = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=width)
            else:
                args = training_arguments(params, Path(out), precision, **common)
                padding = DataCollatorWithPadding(tokenizer)
            collator = CountingCollator(padding)
            trainer = make_trainer(model, args, tokenizer, train, val, collator=collator)
            trainer.add_callback(HandOver())
            waited = turns.waited
            result = trainer.train()
        train_s = result.metrics["train_runtime"] - (turns.waited - waited)
        real_tokens, computed_tokens = collator.totals(steps * params.train.gradient_accumulation_steps)
        model = trainer.model.eval()
        if not seed_style and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        sequences = [list(s) for s in val["input_ids"]]
        parts, eval_s = [], 0.0
        for first in range(0, len(sequences), chunk):
            turns.hand_over()
            rows = sequences[first : first + chunk]
            start = time.perf_counter()
            if seed_style:
                parts.append(seed_style_predict(model, rows, tokenizer.pad_token_id, width, params.train.batch_size))
            else:
                parts.append(
                    head_probabilities(model, rows, tokenizer.pad_token_id, params.evaluate.batch_size, precision)
                )
            eval_s += time.perf_counter() - start
    except BaseException:
        turns.start.abort()  # the other variant must not wait at the start for a process that is gone
        raise
    finally:
        turns.leave()
    probs = np.concatenate(parts)
    return {
        "variant": variant,
        "precision": precision,
        "threads": threads,
        "train_seconds": train_s,
        "eval_seconds": eval_s,
        "train_samples_per_s": steps * params.train.batch_size * params.train.gradient_accumulation_steps / train_s,
        "train_tokens_per_s": real_tokens / train_s,
        "train_computed_tokens_per_s": computed_tokens / train_s,
        "eval_samples_per_s": len(val) / eval_s,
        "eval_tokens_per_s": float(val["length"].sum()) / eval_s,
        "val_accuracy": float((np.argmax(probs, axis=1) == val["label_id"].to_numpy()).mean()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }


def both_in_turns(*args) -> dict[str, dict]:
    """Both variants, each in a fresh process of its own, taking turns on the machine."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(VARIANTS), mp_context=ctx, initializer=_share_turns, initargs=(Turns(ctx),)) as pool:
        futures = {v: pool.submit(run_variant, v, *args) for v in VARIANTS}
        return {v: f.result() for v, f in futures.items()}


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def timed(cmd: list[str] | str, cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if done.returncode:
        raise click.ClickException(f"{cmd} failed in {cwd} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def stage_commands(project: Path, target: str | None = None) -> list[str]:
    """The pipeline's commands as DVC runs them: ${...} interpolated, in dependency order; with ``target``,
    only that stage and the stages it depends on (what `dvc repro target` runs)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        # DVC's graph points from a stage to the stages it depends on.
        graph = repo.index.graph
        order = list(reversed(list(nx.topological_sort(graph))))
        if target is not None:
            chosen = next(stage for stage in order if stage.name == target)
            wanted = {chosen, *nx.descendants(graph, chosen)}
            order = [stage for stage in order if stage in wanted]
        return [stage.cmd for stage in order]


def dvc_overhead(base_dir: Path, local_dir: Path, target: str | None = None) -> dict[str, Any]:
    """`dvc repro` with nothing to do here, and a tiny `dvc exp run` against its bare stage commands (the whole
    pipeline, or ``target`` and what it depends on)."""
    import pandas as pd
    import yaml

    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result: dict[str, Any] = {}
    status = subprocess.run(["dvc", "status", "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
    if status.returncode == 0 and json.loads(status.stdout or "{}") == {}:
        result["noop_repro_s"] = min(timed(["dvc", "repro"], ROOT, env) for _ in range(3))
    else:
        result["noop_repro_s"] = None  # the workspace is not up to date; `dvc repro` would run stages
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for name in files.split():
            if (ROOT / name).is_file():
                (project / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, project / name)
        sst2 = pd.read_csv(local_dir / "sst2" / "train.tsv", sep="\t", quoting=3)
        sst2.iloc[:96].to_csv(project / "data" / "custom" / "tiny.csv", index=False)
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["dataset"] = "custom"
        params["model"]["name"] = str(base_dir.resolve())
        params["custom"] |= {"train_path": "data/custom/tiny.csv", "text_columns": ["sentence"]}
        params["split"] |= {"train_size": 32}
        params["train"] |= {"max_steps": 2, "batch_size": 8, "eval_steps": 2}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        pin = ["dvc", "remote", "add", "--local", "-f", "datasets", str(local_dir.resolve())]
        for cmd in (["git", "init", "-q"], pin, ["git", "add", "-A"], ["git", "commit", "-qm", "tiny"]):
            subprocess.run(cmd, cwd=project, env=env, check=True, capture_output=True)
        commands = stage_commands(project, target)
        result["stages"] = len(commands)
        result["bare_stage_commands_s"] = sum(timed(cmd, project, env) for cmd in commands)
        result["dvc_exp_run_s"] = timed(["dvc", "exp", "run", *([target] if target else [])], project, env)
    result["dvc_exp_run_overhead_s"] = result["dvc_exp_run_s"] - result["bare_stage_commands_s"]
    return result


@click.command()
@click.option("--split", "split_dir", default="data/split", show_default=True, help="split folder (dvc repro split)")
@click.option("--base", "base_dir", default="models/base", show_default=True, help="base model (fetch_model)")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--steps", default=50, show_default=True, help="optimizer steps each variant trains (50: one megabatch)")
@click.option("--repeats", default=3, show_default=True, help="runs of both variants, for min / median / max")
@click.option(
    "--accuracy-steps",
    default=0,
    show_default=True,
    help="also train both this many steps and compare validation accuracy (0: compare after --steps only)",
)
@click.option("--pad-to", default=128, show_default=True, help="the seed-style padding width (max_length)")
@click.option("--turn-steps", default=2, show_default=True, help="optimizer steps in one variant's turn")
@click.option("--eval-chunk", default=128, show_default=True, help="validation rows in one variant's turn")
@click.option("--local-dir", default="../shared/datasets", show_default=True, help="SST-2 for the tiny dvc run")
@click.option("--skip-dvc", is_flag=True, help="do not time DVC")
@click.option("--json-out", type=click.Path(dir_okay=False), help="also write every number here")
def main(
    split_dir,
    base_dir,
    params_path,
    steps,
    repeats,
    accuracy_steps,
    pad_to,
    turn_steps,
    eval_chunk,
    local_dir,
    skip_dvc,
    json_out,
) -> None:
    runs = []
    for repeat in range(repeats):
        pair = both_in_turns(split_dir, base_dir, params_path, steps, pad_to, turn_steps, eval_chunk)
        runs.append(pair)
        for variant, r in pair.items():
            click.echo(
                f"run {repeat + 1} {variant:>10} ({r['precision']}, {r['threads']} threads): "
                f"train {r['train_samples_per_s']:.2f} samples/s, {r['train_tokens_per_s']:.0f} tokens/s "
                f"({r['train_computed_tokens_per_s']:.0f} computed) | eval {r['eval_samples_per_s']:.2f} samples/s, "
                f"{r['eval_tokens_per_s']:.0f} tokens/s | val accuracy {r['val_accuracy']:.4f} after {steps} steps "
                f"| peak RSS {r['peak_rss_mb']:.0f} MB"
                + (f", peak GPU {r['peak_gpu_mb']:.0f} MB" if r["peak_gpu_mb"] else ""),
            )
    train_ratio = [p["llmcls"]["train_samples_per_s"] / p["seed-style"]["train_samples_per_s"] for p in runs]
    eval_ratio = [p["llmcls"]["eval_samples_per_s"] / p["seed-style"]["eval_samples_per_s"] for p in runs]
    click.echo(f"llmcls / seed-style, min / median / max over {repeats} runs:")
    click.echo(f"  train samples/s: {spread(train_ratio)}x")
    click.echo(f"  eval  samples/s: {spread(eval_ratio)}x")
    summary: dict[str, Any] = {"steps": steps, "runs": runs, "train_ratio": train_ratio, "eval_ratio": eval_ratio}
    if accuracy_steps:
        # A few steps leave both near chance; accuracy is compared where training has converged somewhat.
        pair = both_in_turns(split_dir, base_dir, params_path, accuracy_steps, pad_to, turn_steps, eval_chunk)
        summary["accuracy_run"] = pair
        shown = ", ".join(f"{v} {r['val_accuracy']:.4f}" for v, r in pair.items())
        click.echo(f"val accuracy after {accuracy_steps} steps: {shown}")
    if json_out:  # written now as well: the throughput numbers survive a failing DVC measurement
        Path(json_out).write_text(json.dumps(summary, indent=2, default=str))
    if not skip_dvc:
        summary["dvc"] = dvc_overhead(Path(base_dir), Path(local_dir))
        d = summary["dvc"]
        noop = f"{d['noop_repro_s']:.2f} s" if d["noop_repro_s"] is not None else "skipped (workspace not up to date)"
        click.echo(f"dvc repro, nothing to do: {noop}")
        click.echo(
            f"tiny dvc exp run: {d['dvc_exp_run_s']:.1f} s vs its {d['stages']} stage commands run bare "
            f"{d['bare_stage_commands_s']:.1f} s -> DVC overhead {d['dvc_exp_run_overhead_s']:.1f} s"
        )
        if json_out:
            Path(json_out).write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
