"""Is evaluation the same bytes in every fresh process? Runs the head's probabilities for the first batches of a
split (the batches evaluate scores first: the longest prompts) in N fresh processes and prints, per process, a
hash of the outputs and which oneDNN kernels ran the first bf16 matmuls (ONEDNN_VERBOSE), so a process that
differs can be told apart by what it ran.

    python benchmarks/eval_determinism.py --runs 20 [--batches 2] [--env ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16]

Needs a trained model (models/classifier, models/base and data/split after `dvc repro`). One process:
    python benchmarks/eval_determinism.py --child
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]


def child(model_dir: Path, base_dir: Path, split_dir: Path, split: str, batches: int, warmup: str, flag: str) -> None:
    import numpy as np
    import torch

    if flag != "default":  # oneDNN's deterministic mode on or off, as the stages would set it
        torch.backends.mkldnn.deterministic = flag == "on"

    from llmcls.core.artifacts import SplitFolder
    from llmcls.model.inference import head_probabilities
    from llmcls.model.store import load_trained_model

    if warmup == "library":  # what the evaluate, predict, prompt-only and train stages do before loading
        from llmcls.core.devices import enable_fast_matmul

        enable_fast_matmul()
    model, labels, meta = load_trained_model(model_dir, base_dir)
    frame = SplitFolder(split_dir).frame(split)
    sequences = [list(s) for s in frame["input_ids"]]
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    batch = 64
    chosen = [sequences[i] for i in order[: batch * batches]]
    if warmup == "forward":  # one throwaway forward of another shape first
        head_probabilities(model, [chosen[-1][:8]], meta["pad_token_id"], 1, meta["precision"])

    probs = head_probabilities(model, chosen, meta["pad_token_id"], batch, meta["precision"])
    per_batch = [hashlib.sha256(probs[i : i + batch].tobytes()).hexdigest()[:12] for i in range(0, len(probs), batch)]
    result = {"batches": per_batch, "threads": torch.get_num_threads(), "sum": float(np.sum(probs))}
    print("RESULT " + json.dumps(result))


def kernels(log: str) -> str:
    """The distinct oneDNN implementations of the bf16 matmul / inner-product primitives a process executed,
    in the order first seen."""
    seen: dict[str, int] = collections.OrderedDict()
    for line in log.splitlines():
        if line.startswith("onednn_verbose") and ",exec," in line and "bf16" in line:
            fields = line.split(",")
            impl = next((f for f in fields if re.match(r"^(brg|gemm|jit|ref|brgemm)", f)), fields[5])
            key = f"{fields[3] if len(fields) > 3 else ''}:{impl}"
            seen[key] = seen.get(key, 0) + 1
    return "; ".join(f"{k} x{v}" for k, v in seen.items())


@click.command()
@click.option("--runs", default=10, show_default=True)
@click.option("--batches", default=1, show_default=True, help="batches scored (64 rows each, longest first)")
@click.option("--split", default="val", show_default=True)
@click.option("--model", "model_dir", default=ROOT / "models/classifier", type=click.Path(path_type=Path))
@click.option("--base", "base_dir", default=ROOT / "models/base", type=click.Path(path_type=Path))
@click.option("--data", "split_dir", default=ROOT / "data/split", type=click.Path(path_type=Path))
@click.option("--env", "envs", multiple=True, help="KEY=VALUE for the child processes")
@click.option(
    "--warmup",
    type=click.Choice(["none", "forward", "library"]),
    default="none",
    show_default=True,
    help="nothing; a small throwaway forward before the measured batches; or llmcls's enable_fast_matmul first",
)
@click.option("--verbose-kernels", is_flag=True, help="log oneDNN kernels (ONEDNN_VERBOSE=1)")
@click.option(
    "--onednn-deterministic",
    "flag",
    type=click.Choice(["default", "on", "off"]),
    default="default",
    help="torch.backends.mkldnn.deterministic in the child (default: as llmcls sets it)",
)
@click.option("--child", "is_child", is_flag=True, hidden=True)
def main(runs, batches, split, model_dir, base_dir, split_dir, envs, warmup, verbose_kernels, flag, is_child) -> None:
    if is_child:
        child(model_dir, base_dir, split_dir, split, batches, warmup, flag)
        return
    env = os.environ | dict(e.split("=", 1) for e in envs) | {"PYTHONPATH": str(ROOT / "src")}
    if verbose_kernels:
        env["ONEDNN_VERBOSE"] = "1"
    args = [sys.executable, __file__, "--child", "--batches", str(batches), "--split", split]
    args += ["--model", str(model_dir), "--base", str(base_dir), "--data", str(split_dir)]
    args += ["--warmup", warmup]
    args += ["--onednn-deterministic", flag]
    outcomes = collections.Counter()
    for run in range(runs):
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"run {run} failed:\n{done.stderr[-2000:]}")
        result = json.loads(line[7:])
        outcomes[tuple(result["batches"])] += 1
        shown = kernels(done.stdout) if verbose_kernels else ""
        print(f"run {run:2d}: {' '.join(result['batches'])} threads={result['threads']} {shown}", flush=True)
    print(f"{len(outcomes)} distinct outcome(s) in {runs} runs: " + ", ".join(f"{v}x" for v in outcomes.values()))


if __name__ == "__main__":
    main()
