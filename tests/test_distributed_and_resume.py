"""The real train stage with two gloo processes on CPU (and on two "machines" of this host), and a train stage
killed mid-run then resumed.

Each starts from a copy of the session's reproduced project: the same data, so fetch and preprocess come from
DVC's run cache and only what the new settings change runs."""

import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, commit_all, run, sentiment_frame, tiny_train_overrides, write_params
from safetensors.numpy import load_file

pytestmark = [pytest.mark.slow, pytest.mark.dvc, pytest.mark.model]


CUSTOM = {"dataset": "custom", "custom.train_path": "data/custom/reviews.csv", "custom.text_columns": ["review"]}


def tiny_dvc_project(project, tiny_model_dir, **overrides):
    frame = sentiment_frame(30).rename(columns={"sentence": "review"})
    frame.to_csv(project / "data" / "custom" / "reviews.csv", index=False)
    write_params(project, **(tiny_train_overrides(tiny_model_dir) | CUSTOM | overrides))
    commit_all(project)
    return project


def eval_metrics(project):
    """The quality metrics of evaluate (its timings and memory live in logs/evaluate.json)."""
    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    return {split: metrics[split] for split in ("val", "test")}


def test_two_machines_of_two_processes_match_one_process_with_the_same_global_batch(reproduced_copy, tiny_model_dir):
    # 32 training rows, global batch 8: one process x 8 rows, or 2 machines x 2 processes x 2 rows. With the same
    # seed all draw the same permutation; accelerate hands batch 4s + k to global rank k, so each step sees the
    # same 8 rows and DDP's mean of the four 2-row mean gradients is the 8-row mean. Only float summation order
    # differs. The machines are two launchers on this host (ranks 0 and 1, static rendezvous on 127.0.0.1):
    # machine 0 runs `dvc repro`, machine 1 `llmcls train-node`. (One machine's DDP: the token-budget test.)
    settings = {
        "split.train_size": 32,
        "train.max_steps": 8,
        "train.eval_steps": 4,
        "train.group_by_length": False,  # its megabatches are sized per process
        "train.lora.dropout": 0.0,  # dropout masks come from per-process RNG streams
    }
    project = tiny_dvc_project(reproduced_copy, tiny_model_dir, **settings)
    run(["dvc", "repro", "evaluate"], project)
    one = eval_metrics(project)
    one_adapter = load_file(project / "models" / "classifier" / "adapter_model.safetensors")

    four = {"train.launch.strategy": "ddp", "train.launch.num_processes": 2, "train.launch.num_machines": 2}
    write_params(project, **(tiny_train_overrides(tiny_model_dir) | CUSTOM | settings | four | {"train.batch_size": 2}))
    node = {"ACCELERATE_USE_CPU": "1", "LLMCLS_MAIN_IP": "127.0.0.1", "LLMCLS_MAIN_PORT": str(free_port())}
    other = subprocess.Popen(
        [f"{BIN}/llmcls", "train-node"],
        cwd=project,
        env=os.environ | {"PATH": BIN + os.pathsep + os.environ["PATH"], "LLMCLS_MACHINE_RANK": "1"} | node,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        repro = run(["dvc", "repro", "evaluate"], project, env=node | {"LLMCLS_MACHINE_RANK": "0"})
        output = other.communicate(timeout=300)[0]
    finally:
        other.kill()
    assert other.returncode == 0, output
    assert "--num_processes 4 --num_machines 2" in repro.stdout
    assert_same_training(project, one, one_adapter, world_size=4)
    assert run(["dvc", "status", "train"], project).stdout.strip().endswith("up to date.")  # lock recorded


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_same_training(project, one, one_adapter, world_size):
    """The run in ``project`` trained ``world_size`` processes on 8-row global batches and matches ``one``."""
    two = eval_metrics(project)
    meta = json.loads((project / "models" / "classifier" / "llmcls.json").read_text())
    assert meta["training"]["world_size"] == world_size and meta["training"]["global_batch_size"] == 8
    assert meta["training"]["steps"] == 8
    two_adapter = load_file(project / "models" / "classifier" / "adapter_model.safetensors")
    assert one_adapter.keys() == two_adapter.keys()
    for key in one_adapter:  # the saved adapter is the trained one, not one rank's partial state
        np.testing.assert_allclose(one_adapter[key], two_adapter[key], atol=1e-4, rtol=1e-3)
    for split in ("val", "test"):
        assert one[split]["accuracy"] == two[split]["accuracy"]
        assert abs(one[split]["log_loss"] - two[split]["log_loss"]) < 1e-4


def test_token_budget_batches_under_two_processes_match_accumulation_in_one(reproduced_copy, tiny_model_dir):
    # Token-budget batches hold different row counts. One process accumulating 2 batches a step and two
    # processes taking one each (accelerate deals batch 2k to rank 0, 2k+1 to rank 1) see the same rows every
    # step, so the adapters must agree: the batches are dealt out as planned and DDP scales the loss as one
    # process does (test_batching checks that the step's gradient is the per-row mean).
    budget = {
        "split.train_size": 32,
        "train.max_tokens": 150,  # 2-3 prompts a batch: more than 8 batches an epoch, so 4 steps stay in epoch 1
        "train.max_steps": 4,
        "train.eval_steps": 4,
        "train.lora.dropout": 0.0,
    }
    project = tiny_dvc_project(reproduced_copy, tiny_model_dir, **budget, **{"train.gradient_accumulation_steps": 2})
    run(["dvc", "repro", "train"], project)
    one = load_file(project / "models" / "classifier" / "adapter_model.safetensors")
    meta = json.loads((project / "models" / "classifier" / "llmcls.json").read_text())
    assert meta["training"]["global_batch_size"] == "300 tokens" and meta["training"]["steps"] == 4

    changes = ["train.launch.strategy=ddp", "train.launch.num_processes=2", "train.gradient_accumulation_steps=1"]
    sets = [a for c in changes for a in ("-S", c)]
    run(["dvc", "exp", "run", *sets, "train"], project, env={"ACCELERATE_USE_CPU": "1"})
    meta = json.loads((project / "models" / "classifier" / "llmcls.json").read_text())
    assert meta["training"]["world_size"] == 2 and meta["training"]["global_batch_size"] == "300 tokens"
    two = load_file(project / "models" / "classifier" / "adapter_model.safetensors")
    for key in one:
        np.testing.assert_allclose(one[key], two[key], atol=1e-4, rtol=1e-3)


def test_killed_train_stage_resumes_and_ends_like_an_uninterrupted_run(reproduced_copy, tiny_model_dir):
    project = tiny_dvc_project(
        reproduced_copy, tiny_model_dir, **{"train.max_steps": 60, "train.eval_steps": 5, "train.batch_size": 4}
    )
    run(["dvc", "repro", "split"], project)
    env = os.environ | {"PATH": BIN + os.pathsep + os.environ["PATH"]}
    first = subprocess.Popen(
        ["dvc", "repro", "train"], cwd=project, env=env, start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    checkpoints = project / "models" / "checkpoints"
    deadline = time.time() + 300
    while not (checkpoints / "checkpoint-5" / "trainer_state.json").is_file():
        assert first.poll() is None and time.time() < deadline, "train ended before its first checkpoint"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the whole stage: dvc, accelerate and the training process
    first.wait()
    if (project / "models" / "classifier" / "llmcls.json").is_file():
        pytest.skip("the stage finished before the kill landed; nothing was interrupted")

    resumed = run(["dvc", "repro", "evaluate"], project)
    assert "llmcls: resuming from checkpoint" in resumed.stdout + resumed.stderr
    after_resume = eval_metrics(project)
    curve = pd.read_csv(project / "metrics" / "train" / "plots" / "metrics" / "eval" / "accuracy.tsv", sep="\t")

    assert not checkpoints.exists()  # a finished run leaves no resumption state: a re-run trains from step 0
    fresh = run(["dvc", "repro", "-f", "train", "evaluate"], project)
    assert "resuming" not in fresh.stdout + fresh.stderr
    assert eval_metrics(project) == after_resume
    steps = curve["step"].tolist()
    assert steps == sorted(set(steps)) and steps[-1] == 60  # the resumed curve continues, without duplicates
