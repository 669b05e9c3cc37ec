"""Per-device defaults: which reduced precision the hardware runs fast, and CPU threads."""

from __future__ import annotations

import os
import sys

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX-512 bf16 or AMX: CPUs where bf16 autocast runs faster than fp32 (elsewhere it runs far slower)."""
    cpu = torch.backends.cpu
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return hasattr(cpu, "get_cpu_capability") and any(check is not None and check() for check in checks)


def resolve_precision(precision: str) -> str:
    """Turn params `train.precision` ('auto' included) into fp32 / bf16 / fp16 for this machine."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def inference_precision(trained: str) -> str:
    """The precision to run a model trained in ``trained`` on this machine: the same where the hardware runs it
    fast; on a CPU without fast half precision (bf16 without AVX-512 bf16 or AMX is emulated, ~100x slower;
    fp16 has no fast CPU path), fp32, with a warning, since the outputs may move in their last digits."""
    if trained == "fp32" or torch.cuda.is_available() or (trained == "bf16" and cpu_has_fast_bf16()):
        return trained
    print(
        f"llmcls: the model was trained in {trained}, which this CPU only emulates (slowly): running it in fp32; "
        "probabilities may differ from the trained precision's in their last digits",
        file=sys.stderr,
        flush=True,
    )
    return "fp32"


def enable_fast_matmul() -> None:
    """TF32 matmuls on Ampere and newer GPUs (fp32 master weights stay fp32); on CPU, MKL's reproducible mode
    (pin_mkl_reproducibility)."""
    pin_mkl_reproducibility()
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


# MKL's reproducible mode: its automatic code path, with results that do not depend on how threads meet.
MKL_CBWR = "AUTO,STRICT"


def pin_mkl_reproducibility() -> None:
    """Pin MKL's conditional numerical reproducibility (MKL_CBWR) before the first MKL call of the process.

    PyTorch's CPU attention multiplies half-precision blocks with MKL (mkl_gemm_bf16bf16f32) from inside its
    parallel loop: always on CPUs without AMX, for small blocks with it. With MKL's reproducibility off, the
    first forward of a process could come out with other bits than in the next process, far more often than
    with it (docs/results.md has the runs; benchmarks/eval_determinism.py repeats them). MKL reads it at its
    first call, so this runs before any model computes; a value the user set wins."""
    os.environ.setdefault("MKL_CBWR", MKL_CBWR)


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def process_state():
    """accelerate's view of this process. Without CUDA it must be asked for CPU explicitly, or each process
    of `ACCELERATE_USE_CPU=1 accelerate launch` believes it is alone ("rank 0 of 1" in every process)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    """True in a plain run and in the first process of `accelerate launch`."""
    return process_state().is_main_process


def use_all_cpu_cores(local_processes: int = 1) -> int:
    """On CPU, give each local process its share of the cores this process may run on.

    `accelerate launch` sets OMP_NUM_THREADS=1 when it is not told otherwise, which halved training
    speed on a 2-core machine; the thread count is a property of the machine, not of dvc.yaml.
    """
    if torch.cuda.is_available():
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, local_processes))
    torch.set_num_threads(threads)
    return threads
