"""Resuming an interrupted train stage from its last good checkpoint.

Hand-written over transformers' `get_last_checkpoint` because that one resumes any checkpoint it finds: this
one resumes only a run of the same settings, data, software and process count (a fingerprint), and only a
checkpoint that is complete: `CheckpointComplete` writes `llmcls_complete.json` after everything else of a
checkpoint (the Trainer's files and the weight averager's side files), listing each file's size. A checkpoint
without it, or whose files no longer match it, is skipped (and said so) for the one before it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from transformers import TrainerCallback

from llmcls.config.params import Params
from llmcls.core.errors import LlmclsError
from llmcls.core.outputs import drop_leftovers, read_json, write_json

FINGERPRINT = "llmcls_run.json"
COMPLETE = "llmcls_complete.json"


def fingerprint(params: Params, split_dir: Path, base_dir: Path, precision: str, world_size: int) -> str:
    """What a checkpoint must match to be resumed: every setting the train stage reads (its params in dvc.yaml),
    the input data and base model record, the resolved precision and process count (the global batch), and the
    versions of the libraries that train."""
    import peft
    import torch
    import transformers

    model = params.model
    settings = {
        "train": params.train.to_dict(),
        "model": [model.head, model.head_dropout, model.trust_remote_code],
        "evaluate_batch_size": params.evaluate.batch_size,
        "precision": precision,
        "world_size": world_size,
        "versions": [torch.__version__, transformers.__version__, peft.__version__],
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted([*split_dir.glob("*"), base_dir / "llmcls_base.json"]):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class CheckpointComplete(TrainerCallback):
    """Mark each checkpoint complete once all of it is written; must be the last callback (the others'
    on_save, such as the weight averager's, write into the checkpoint first)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != COMPLETE}
            write_json(folder / COMPLETE, {"step": state.global_step, "files": files})
        return control


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed, or None if it is good."""
    marker = folder / COMPLETE
    if not marker.is_file():
        return "incomplete (cut short while it was written)"
    try:
        files = read_json(marker)["files"]
        read_json(folder / "trainer_state.json")
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable ({err})"
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"damaged ({name} is missing or changed size)"
    return None


def resumable_checkpoint(checkpoint_dir: Path, stamp: str, say=print) -> str | None:
    """The last good checkpoint of an interrupted run with the same fingerprint; otherwise start clean.

    A checkpoint that is incomplete or damaged is removed (it lies in this run's own fingerprinted folder) and
    the one before it is tried. A folder of another run's checkpoints is cleared; a folder llmcls did not
    write (no fingerprint) is refused rather than deleted."""
    if not checkpoint_dir.is_dir():
        return None
    saved = checkpoint_dir / FINGERPRINT
    drop_leftovers(saved)  # a run killed while writing its fingerprint left only that temporary
    if not saved.is_file():
        if any(checkpoint_dir.iterdir()):
            raise LlmclsError(
                f"{checkpoint_dir}: the checkpoint folder holds files llmcls did not write (no {FINGERPRINT}); "
                "move them away or pass another checkpoint folder"
            )
        return None
    try:
        same = read_json(saved).get("fingerprint") == stamp
    except (OSError, ValueError, AttributeError):
        same = False
    if not same:
        shutil.rmtree(checkpoint_dir)
        return None
    folders = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda f: int(f.name.split("-")[-1]), reverse=True)
    for folder in folders:
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        say(f"llmcls: skipping checkpoint {folder.name}: {problem}", flush=True)
        shutil.rmtree(folder)
    return None


def drop_checkpoints(checkpoint_dir: Path) -> None:
    """Remove a finished run's resumption state: only a folder this stage wrote (it has its fingerprint)."""
    if (checkpoint_dir / FINGERPRINT).is_file():
        shutil.rmtree(checkpoint_dir)
