"""Resuming an interrupted train stage from its last complete checkpoint.

Hand-written over transformers' `get_last_checkpoint` because that one resumes any checkpoint it finds: this
one resumes only a run of the same settings and data (a fingerprint), and drops a checkpoint cut short.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from llmcls.config.params import Params
from llmcls.core.outputs import read_json

FINGERPRINT = "llmcls_run.json"


def fingerprint(params: Params, split_dir: Path, base_dir: Path) -> str:
    """What a checkpoint must match to be resumed: the train-relevant params and the input data."""
    settings = {"train": params.train.to_dict(), "model": params.model.to_dict()}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted([*split_dir.glob("*"), base_dir / "llmcls_base.json"]):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def resumable_checkpoint(checkpoint_dir: Path, stamp: str) -> str | None:
    """The last complete checkpoint of an interrupted run with the same fingerprint; otherwise start clean.

    The Trainer writes trainer_state.json last, so a checkpoint without it was cut short by the kill: it is
    removed and the one before it is resumed.
    """
    if checkpoint_dir.is_dir():
        saved = checkpoint_dir / FINGERPRINT
        if saved.is_file() and read_json(saved).get("fingerprint") == stamp:
            complete = []
            for folder in checkpoint_dir.glob("checkpoint-*"):
                if (folder / "trainer_state.json").is_file():
                    complete.append(folder)
                else:
                    shutil.rmtree(folder)
            return str(max(complete, key=lambda f: int(f.name.split("-")[-1]))) if complete else None
        shutil.rmtree(checkpoint_dir)
    return None
