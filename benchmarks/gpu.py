"""Throughput and memory of llmcls's own train and evaluate code on a real model's shape, with no download.

The model is built from a config with the real dimensions (random weights) and saved as a local base folder,
so the train path is the project's own: `build_classifier` (LoRA / QLoRA / full, the frozen base in the
compute dtype per `train.base_precision`), `training_arguments` + `make_trainer` (token-budget or row
batches, our loss), and evaluate's `head_probabilities`. The same batches then run through a plain PyTorch loop
(AdamW, autocast, no Trainer) for the Trainer-vs-loop ratio. Rows are random token ids with SST-2's prompt
lengths (mean ~38 tokens) or a fixed `--seq-len`.

    python benchmarks/gpu.py --shape qwen3-1.7b                                 # params.yaml's settings
    python benchmarks/gpu.py --shape qwen3-1.7b --max-tokens 8192               # the README's GPU settings
    python benchmarks/gpu.py --shape llama-8b --seq-len 512 --batch-size 1 --gradient-checkpointing --no-plain
    python benchmarks/gpu.py --shape llama-8b --seq-len 512 --batch-size 1 --mode qlora --no-plain
    python benchmarks/gpu.py --shape tiny --steps 2 --warmup 1 --eval-rows 16   # CPU (the tests run this)

Prints and writes (--out) JSON: tokens/s (real, non-padding), samples/s, MFU against the GPU's dense bf16 peak
(`--peak-tflops` where the name is not known): `mfu` as the usual 6N FLOPs a token, N the base's parameters
without embeddings, and `mfu_done` from the FLOPs a step really does (a frozen base's weights get no weight
gradients: 4N + 2 x trainable); peak memory of each phase. `--profile` prints the Trainer steps' top operators.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# Real dimensions (config.json of each hub model); `tiny` runs on CPU in seconds.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1024,
    ),
    "qwen3-1.7b": dict(
        model_type="qwen3",
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        tie_word_embeddings=True,
        rope_theta=1000000.0,
        max_position_embeddings=40960,
    ),
    "llama-8b": dict(
        model_type="llama",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        rope_theta=500000.0,
        max_position_embeddings=8192,
    ),
}
# Dense bf16 tensor-core peak, TFLOP/s (vendor datasheets, SXM parts).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
PAD_ID = 0


def build_base(shape: str, folder: Path, device: str) -> tuple[Path, int, int]:
    """Save a model of ``shape`` with random weights (bf16 on disk) as an llmcls base folder; its parameters,
    all and without the embeddings (the vocabulary tables: a classifier looks rows up and never runs the LM
    head's matmul, so N of the usual 6N is the rest)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = dict(SHAPES[shape])
    config = AutoConfig.for_model(settings.pop("model_type"), pad_token_id=PAD_ID, **settings)
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU takes seconds, not minutes
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    tables = {id(m.weight): m.weight.numel() for m in (model.get_input_embeddings(), model.get_output_embeddings())}
    model.save_pretrained(folder)
    (folder / "llmcls_base.json").write_text(json.dumps({"model": shape, "weights": "local", "source": "config"}))
    del model
    return folder, n, n - sum(tables.values())


def synthetic_rows(rows: int, vocab: int, seq_len: int | None, seed: int):
    """A train / val frame like the split stage's: random ids, SST-2-like lengths (or all ``seq_len``)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    lengths = [seq_len] * rows if seq_len else np.clip(rng.normal(38.5, 11.0, rows), 14, 90).astype(int).tolist()
    ids = [rng.integers(3, vocab, size=n).tolist() for n in lengths]
    return pd.DataFrame({"input_ids": ids, "label_id": rng.integers(0, 2, size=rows), "length": lengths})


class Collator:
    """Right-padding with labels (the benchmark needs no tokenizer); counts real and padded tokens."""

    def __init__(self):
        self.real: list[int] = []
        self.rows: list[int] = []

    def __call__(self, features):
        import torch

        from llmcls.model.inference import pad_batch

        batch = pad_batch([f["input_ids"] for f in features], PAD_ID)
        batch["labels"] = torch.tensor([f["labels"] for f in features])
        self.real.append(int(batch["attention_mask"].sum()))
        self.rows.append(len(features))
        return batch


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def on_device(model, device):
    """``model`` on ``device``; a quantised model was placed there when loaded (and refuses `.to`)."""
    return model if next(model.parameters()).device.type == device.type else model.to(device)


def rates(
    tokens: int, rows: int, seconds: float, n_params: int, peak: float | None, done: float | None = None
) -> dict[str, Any]:
    """Rates of a phase; MFU as the usual 6N FLOPs a token (N without embeddings) and, with ``done``, from the
    FLOPs a token the phase really does (train_flops)."""
    tokens_s = tokens / seconds
    return {
        "seconds": seconds,
        "tokens_per_s": tokens_s,
        "samples_per_s": rows / seconds,
        "mfu": 6 * n_params * tokens_s / (peak * 1e12) if peak else None,
        "mfu_done": done * tokens_s / (peak * 1e12) if peak and done else None,
        "peak_memory_gb": peak_gb(),
    }


def train_flops(model, n_params: int, mode: str) -> float:
    """FLOPs a token of a training step: 6N for full fine-tuning; with a frozen base, forward (2N) and the
    backward pass's input gradients (2N) run through every weight, but weight gradients (2 a parameter) only
    through the trainable ones (LoRA's matrices and the head): 4N + 2T."""
    if mode == "full":
        return 6.0 * n_params
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4.0 * n_params + 2.0 * trainable


def trainer_phase(params, base_dir: Path, train_frame, steps: int, warmup: int, n: int, peak, profile: bool):
    """The project's train path for warmup + steps optimizer steps; timed over the last ``steps``."""
    import torch
    from transformers import TrainerCallback, set_seed

    from llmcls.core.artifacts import LabelSet
    from llmcls.core.devices import resolve_precision
    from llmcls.model.build import build_classifier
    from llmcls.train.losses import weighted_loss
    from llmcls.train.trainer import make_trainer, training_arguments

    set_seed(params.train.seed)
    reset_memory()
    precision = resolve_precision(params.train.precision)
    model = build_classifier(base_dir, LabelSet(("a", "b")), PAD_ID, params.model, params.train)
    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                sync()
                clock["start"] = time.perf_counter()

    collator = Collator()
    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(
            params,
            Path(out),
            precision,
            max_steps=warmup + steps,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            logging_steps=10**6,
        )
        trainer = make_trainer(
            model,
            args,
            None,
            train_frame,
            train_frame.head(8),
            collator=collator,
            callbacks=[Clock()],
            loss_func=weighted_loss(None, 0.0),
            max_tokens=params.train.max_tokens,
        )
        batches = [dict(b) for _, b in zip(range(warmup + steps), trainer.get_train_dataloader(), strict=False)]
        collator.real.clear(), collator.rows.clear()
        if profile:
            with torch.profiler.profile(record_shapes=False) as prof:
                trainer.train()
            sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=sort, row_limit=20), flush=True)
        else:
            trainer.train()
        sync()
        seconds = time.perf_counter() - clock["start"]
    per_step = params.train.gradient_accumulation_steps
    timed = slice(warmup * per_step, (warmup + steps) * per_step)
    done = train_flops(model, n, params.train.mode)
    result = rates(sum(collator.real[timed]), sum(collator.rows[timed]), seconds, n, peak, done)
    model = trainer.model
    del trainer
    return result, model, batches, precision


def plain_phase(params, base_dir: Path, batches, warmup: int, n: int, peak, precision: str):
    """The same batches through a bare loop: forward under autocast, cross-entropy, backward, AdamW."""
    import torch

    from llmcls.core.artifacts import LabelSet
    from llmcls.core.devices import autocast_dtype, process_state
    from llmcls.model.build import build_classifier

    torch.manual_seed(params.train.seed)
    reset_memory()
    device = process_state().device
    model = on_device(build_classifier(base_dir, LabelSet(("a", "b")), PAD_ID, params.model, params.train), device)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params.train.learning_rate)
    dtype = autocast_dtype(precision)
    tokens = rows = 0
    for i, batch in enumerate(batches):
        if i == warmup:
            sync()
            start = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        labels = batch.pop("labels")
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
            logits = model(**batch).logits
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            tokens += int(batch["attention_mask"].sum())
            rows += len(labels)
    sync()
    result = rates(tokens, rows, time.perf_counter() - start, n, peak, train_flops(model, n, params.train.mode))
    del model, optimizer
    return result


def eval_phase(model, params, frame, n: int, peak, precision: str) -> dict[str, Any]:
    """evaluate's head_probabilities over ``frame`` (LoRA merged, as evaluate loads it); 2N FLOPs a token."""
    from llmcls.core.devices import process_state
    from llmcls.model.inference import head_probabilities

    if hasattr(model, "merge_and_unload") and not getattr(model, "is_loaded_in_4bit", False):
        model = model.merge_and_unload()
    model = on_device(model, process_state().device).eval()
    sequences = frame["input_ids"].tolist()
    e = params.evaluate
    head_probabilities(
        model, sequences[: min(len(sequences), 64)], PAD_ID, e.batch_size, precision, max_tokens=e.max_tokens
    )
    reset_memory()
    sync()
    start = time.perf_counter()
    head_probabilities(model, sequences, PAD_ID, e.batch_size, precision, max_tokens=e.max_tokens)
    sync()
    result = rates(int(frame["length"].sum()), len(frame), time.perf_counter() - start, n, peak)
    result["mfu"] = result["mfu"] / 3 if result["mfu"] is not None else None  # forward only: 2N, not 6N
    result["mfu_done"] = result["mfu"]
    return result


@click.command()
@click.option("--shape", type=click.Choice(list(SHAPES)), default="qwen3-1.7b", show_default=True)
@click.option("--params", "params_path", default=str(ROOT / "params.yaml"), show_default=True)
@click.option("--mode", type=click.Choice(["lora", "qlora", "full"]), help="train.mode [params.yaml's]")
@click.option("--batch-size", type=int, help="train.batch_size [params.yaml's]")
@click.option("--max-tokens", type=int, help="train.max_tokens and evaluate.max_tokens [params.yaml's]")
@click.option("--base-precision", type=click.Choice(["auto", "fp32", "compute"]), help="train.base_precision")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None)
@click.option("--torch-compile/--no-torch-compile", default=None)
@click.option("--seq-len", type=int, help="every row this many tokens (default: SST-2-like lengths)")
@click.option("--rows", default=4000, show_default=True, help="synthetic train rows")
@click.option("--steps", default=30, show_default=True, help="timed optimizer steps")
@click.option("--warmup", default=5, show_default=True, help="untimed optimizer steps first")
@click.option("--eval-rows", default=2000, show_default=True)
@click.option("--plain/--no-plain", default=True, show_default=True, help="also time the bare loop")
@click.option("--peak-tflops", type=float, help="the device's dense bf16 peak (MFU); known for H100/H200/A100/L4")
@click.option("--profile", is_flag=True, help="print the Trainer steps' top operators")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write the JSON here too")
def main(shape, params_path, mode, batch_size, max_tokens, base_precision, gradient_checkpointing, torch_compile,
         seq_len, rows, steps, warmup, eval_rows, plain, peak_tflops, profile, out) -> None:  # fmt: skip
    """Train / evaluate throughput, MFU and peak memory of a real model shape (random weights)."""
    import torch

    from llmcls.config.params import load_params

    params = load_params(params_path)
    changes = {
        "mode": mode,
        "batch_size": batch_size,
        "max_tokens": max_tokens,
        "base_precision": base_precision,
        "gradient_checkpointing": gradient_checkpointing,
        "torch_compile": torch_compile,
    }
    train = params.train.replace(**{k: v for k, v in changes.items() if v is not None})
    evaluate = params.evaluate.replace(max_tokens=max_tokens or params.evaluate.max_tokens)
    params = params.replace(train=train, evaluate=evaluate)
    cuda = torch.cuda.is_available()
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    with tempfile.TemporaryDirectory() as tmp:
        base_dir, total, n = build_base(shape, Path(tmp) / "base", "cuda" if cuda else "cpu")
        vocab = SHAPES[shape]["vocab_size"]
        frame = synthetic_rows(rows, vocab, seq_len, 0)
        result: dict[str, Any] = {
            "shape": shape,
            "parameters": total,
            "non_embedding_parameters": n,
            "device": device_name,
            "peak_tflops": peak,
            "settings": {
                k: getattr(train, k)
                for k in (
                    "mode",
                    "batch_size",
                    "max_tokens",
                    "base_precision",
                    "gradient_checkpointing",
                    "torch_compile",
                )
            }
            | {"seq_len": seq_len or "sst2-like", "lora_r": train.lora.r, "targets": train.lora.target_modules},
        }
        trained, model, batches, precision = trainer_phase(params, base_dir, frame, steps, warmup, n, peak, profile)
        result |= {"precision": precision, "train_trainer": trained}
        result["eval"] = eval_phase(model, params, synthetic_rows(eval_rows, vocab, seq_len, 1), n, peak, precision)
        del model
        if plain:
            result["train_plain_loop"] = plain_phase(params, base_dir, batches, warmup, n, peak, precision)
            result["trainer_vs_plain"] = trained["tokens_per_s"] / result["train_plain_loop"]["tokens_per_s"]
    text = json.dumps(result, indent=2)
    click.echo(text)
    if out:
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
