"""What every stage script shares: one clean error line instead of a traceback, and quiet libraries."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from llmcls.core import faults
from llmcls.core.errors import full_disk_is_an_error
from llmcls.core.outputs import drop_leftovers
from llmcls.core.processes import process_age
from llmcls.core.progress import add_phase_time, phase_times

PathDir = click.Path(file_okay=False, path_type=Path)
PathFile = click.Path(dir_okay=False, path_type=Path)

params_option = click.option(
    "--params",
    "params_path",
    default="params.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="params file to read settings from",
)


def evaluation_outputs(func: Callable[..., Any]) -> Callable[..., Any]:
    """The three outputs every scoring stage writes (evaluate, prompt_only, baseline, ensemble)."""
    options = [
        click.option("--metrics", type=PathFile, required=True, help="summary metrics JSON"),
        click.option("--report", type=PathFile, required=True, help="full report JSON (per class, confusion matrix)"),
        click.option("--predictions", type=PathDir, required=True, help="folder for val.csv / test.csv predictions"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def stage(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a stage body with the libraries' progress chatter off; an LlmclsError (a click exception) exits 1
    with its message, which names the file, row or key. With `--run-log` (run_log_option, given above this
    decorator) the main process writes what the body returns (its timings), the stage's wall time from process
    start and each phase's time (core/progress.phase) to that JSON file."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run_log = kwargs.pop("run_log", None)
        add_phase_time("startup", process_age())  # the interpreter and the imports, up to here
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the Rust tokenizer
        faults.enter(Path(sys.argv[0]).stem)  # the stage's name, for fault points
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # tqdm bars (loading, saving) read badly in a log: ours say the phase
        # A stage killed mid-write left its temporaries beside its outputs; when `dvc repro` then restores
        # those outputs from its run cache, that stage does not run again to clean them. Every stage cleans
        # the dead writers' temporaries beside the paths it is given (its inputs are earlier stages' outputs).
        for value in kwargs.values():
            if isinstance(value, Path):
                drop_leftovers(value)
        with full_disk_is_an_error():
            stats = func(*args, **kwargs)
            if os.environ.get("RANK", "0") == "0":
                write_run_log(run_log, (stats or {}) | {"wall_s": round(process_age(), 2), "phases_s": phase_times()})
        return stats

    return wrapper


def run_log_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--run-log",
        type=PathFile,
        default=None,
        help="JSON of timings and memory: a git-tracked log, not a DVC output or metric (they differ run to run)",
    )(func)


def rate(summary: dict[str, Any], seconds: float) -> dict[str, float]:
    """The timing entries of a scoring stage's run log: wall time and rows scored per second."""
    rows = sum(part["n"] for part in summary.values() if isinstance(part, dict) and "n" in part)
    return {"seconds": seconds, "rows": rows, "samples_per_second": rows / max(seconds, 1e-9)}


def write_run_log(path: Path | None, stats: dict[str, Any]) -> None:
    """Timings and memory of a stage run, with the process's peak resident memory added."""
    if path is not None:
        import resource

        from llmcls.core.outputs import write_json

        write_json(path, stats | {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
