"""Optuna pruning inside the train stage, for `llmcls tune --prune`.

`llmcls tune` runs each trial as a DVC experiment in another process; with pruning on, it names the trial in the
environment (LLMCLS_TUNE_TRIAL: study name, trial id; LLMCLS_TUNE_STORAGE: the storage URL). The stage then reports
every validation to that trial, and when the study's pruner gives up on it the stage stops with an error: a pruned
trial is never recorded as an experiment, so every experiment DVC holds is a complete run of its params. Without
the variable nothing here runs; with it, a trial that is not pruned trains exactly as it would without (the
callback only reads the validation metrics).
"""

from __future__ import annotations

import json
import os
from typing import Any

from transformers import TrainerCallback

from llmcls.core.errors import LlmclsError

TRIAL_ENV = "LLMCLS_TUNE_TRIAL"
# The study's storage URL: from the environment only (it may hold a password), as `llmcls tune --storage` reads it.
STORAGE_ENV = "LLMCLS_TUNE_STORAGE"
PRUNED_AT = "pruned_at_step"  # the trial's user attribute `llmcls tune` reads to tell pruned from failed


class OptunaPruning(TrainerCallback):
    """Report each validation's ``metric`` to an Optuna trial; stop the run when the pruner says so."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is None or not state.is_world_process_zero:
            return control
        self.trial.report(float(value), state.global_step)
        if self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_AT, state.global_step)
            raise LlmclsError(
                f"pruned by llmcls tune at step {state.global_step}: val {self.metric} {value:.4f} is behind the "
                f"study's other trials (trial {self.trial.number})"
            )
        return control


def pruning_callbacks(metric: str) -> list[TrainerCallback]:
    """The pruning callback when this run is a `llmcls tune --prune` trial, else nothing."""
    spec = os.environ.get(TRIAL_ENV)
    if not spec:
        return []
    import optuna

    fields = json.loads(spec)
    study = optuna.load_study(study_name=fields["study"], storage=os.environ[STORAGE_ENV])
    return [OptunaPruning(optuna.trial.Trial(study, fields["trial_id"]), metric)]
