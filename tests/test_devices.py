"""Per-device set-up: MKL's reproducible mode pinned before any model computes."""

import os
import subprocess
import sys
from pathlib import Path

from llmcls.core.devices import MKL_CBWR

ATTENTION = """
import torch
from llmcls.core.devices import enable_fast_matmul
enable_fast_matmul()
block = torch.zeros(1, 4, 16, 64, dtype=torch.bfloat16)
torch.nn.functional.scaled_dot_product_attention(block, block, block)
"""


def mkl_modes(extra_env: dict) -> set[str]:
    """The reproducibility modes MKL reports (MKL_VERBOSE) for the CPU attention's products in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"} | {"MKL_VERBOSE": "1"} | extra_env
    done = subprocess.run([sys.executable, "-c", ATTENTION], env=env, capture_output=True, text=True, check=True)
    return {part.split()[0] for part in done.stdout.split("CNR:")[1:]}


def test_the_stages_run_mkl_in_its_reproducible_mode_and_a_users_choice_wins():
    assert mkl_modes({}) == {MKL_CBWR}
    assert mkl_modes({"MKL_CBWR": "COMPATIBLE"}) == {"COMPATIBLE"}


def test_every_model_entry_point_pins_it():
    root = Path(__file__).resolve().parents[1] / "src" / "llmcls"
    callers = {p.relative_to(root).as_posix() for p in root.rglob("*.py") if "enable_fast_matmul()" in p.read_text()}
    assert callers >= {"evaluate/classifier.py", "evaluate/prompt_only.py", "serve/predict.py", "train/classifier.py"}
