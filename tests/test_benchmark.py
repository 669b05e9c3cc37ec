"""benchmarks/throughput.py: the turn-taking that keeps its ratios steady, and a tiny end-to-end run."""

import json
import multiprocessing
import sys

import pytest
import yaml
from conftest import ROOT, SHARED, run, tiny_train_overrides
from test_stages import custom_project, invoke, run_until_preprocess  # noqa: F401 (fixture)

sys.path.insert(0, str(ROOT / "benchmarks"))
import throughput  # noqa: E402


def record(log, count, event: int) -> None:
    """Append to shared memory at once (a multiprocessing queue's feeder thread could reorder processes)."""
    with count.get_lock():
        log[count.value] = event
        count.value += 1


def take_turns(turns: "throughput.Turns", me: int, rounds: int, log, count) -> None:
    turns.join(me)
    try:
        for _ in range(rounds):
            record(log, count, 10 * me + 1)  # start of a turn
            record(log, count, 10 * me + 2)  # its end
            turns.hand_over()
    finally:
        turns.leave()


def test_turns_alternate_and_never_overlap():
    ctx = multiprocessing.get_context("spawn")
    turns, log, count = throughput.Turns(ctx), ctx.Array("i", 12), ctx.Value("i", 0)
    players = [ctx.Process(target=take_turns, args=(turns, me, rounds, log, count)) for me, rounds in ((0, 2), (1, 4))]
    for p in players:
        p.start()
    for p in players:
        p.join(timeout=60)
        assert p.exitcode == 0, "a player hung or failed"
    # Each turn's start is followed by its own end (no other process ran in between); player 0 moves first,
    # they alternate while both play, and player 1 plays on alone once player 0 is done.
    assert count.value == 12
    assert list(log) == [1, 2, 11, 12, 1, 2, 11, 12, 11, 12, 11, 12]


@pytest.mark.model
def test_benchmark_runs_end_to_end_on_a_tiny_model(custom_project, tmp_path, tiny_model_dir):  # noqa: F811
    params = custom_project(**tiny_train_overrides(tiny_model_dir), **{"split.val_fraction": 0.3})
    assert run_until_preprocess(params).exit_code == 0
    assert invoke("split", "--params", params, "--processed", "processed", "--out", "split").exit_code == 0
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--split", "split", "--base", "base"]
    cmd += ["--params", params, "--steps", "2", "--repeats", "1", "--turn-steps", "1", "--eval-chunk", "4"]
    result = run([*cmd, "--pad-to", "256", "--skip-dvc", "--json-out", str(out)], tmp_path)
    assert "llmcls / seed-style" in result.stdout
    summary = json.loads(out.read_text())
    seed_style, llmcls = summary["runs"][0]["seed-style"], summary["runs"][0]["llmcls"]
    for r in (seed_style, llmcls):
        assert r["train_samples_per_s"] > 0 and r["eval_samples_per_s"] > 0 and 0 <= r["val_accuracy"] <= 1
    # Seed-style pads every row to 256 tokens; llmcls pads each batch only to its longest row.
    assert seed_style["train_computed_tokens_per_s"] / seed_style["train_tokens_per_s"] > 1.5
    assert llmcls["train_computed_tokens_per_s"] / llmcls["train_tokens_per_s"] < 1.5
    assert summary["train_ratio"] == [llmcls["train_samples_per_s"] / seed_style["train_samples_per_s"]]


@pytest.mark.slow
@pytest.mark.dvc
@pytest.mark.model
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets")
def test_dvc_overhead_runs_the_pipeline_bare_and_under_dvc(tiny_model_dir):
    # The bare stage commands are DVC's own, ${...} resolved: dvc.yaml's raw cmd strings do not run.
    commands = throughput.stage_commands(ROOT)
    assert len(commands) == len(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert not any("${" in cmd for cmd in commands)
    assert all(cmd.startswith("PYTHONPATH=src ") for cmd in commands)
    order = [next(word for word in cmd.split() if word.startswith("stages/")) for cmd in commands]
    assert order.index("stages/evaluate.py") < order.index("stages/submit.py")
    # The measurement itself on the stages up to split (the benchmark script times the whole pipeline).
    d = throughput.dvc_overhead(tiny_model_dir, SHARED, target="split")
    assert d["stages"] == 4  # fetch, fetch_model, preprocess, split
    assert d["bare_stage_commands_s"] > 0 and d["dvc_exp_run_s"] > 0


@pytest.mark.model
def test_gpu_benchmark_runs_the_project_path_on_a_tiny_shape_on_cpu(tmp_path):
    """benchmarks/gpu.py on the tiny shape: the Trainer path with token-budget batches, evaluate's
    head_probabilities and the bare loop on the same batches, written as JSON."""
    from click.testing import CliRunner

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu

    out = tmp_path / "gpu.json"
    args = ["--shape", "tiny", "--steps", "2", "--warmup", "1", "--rows", "64", "--eval-rows", "16"]
    result = CliRunner().invoke(gpu.main, [*args, "--max-tokens", "256", "--peak-tflops", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["shape"] == "tiny" and data["settings"]["max_tokens"] == 256
    for phase in ("train_trainer", "train_plain_loop", "eval"):
        assert data[phase]["tokens_per_s"] > 0 and data[phase]["samples_per_s"] > 0
    assert data["trainer_vs_plain"] > 0
    # 2 layers of hidden 64 with a 1024-token vocabulary: embeddings and LM head alone are 2 x 65,536.
    assert 131_072 < data["parameters"] < 300_000
    assert data["non_embedding_parameters"] == data["parameters"] - 131_072
    # LoRA: weight gradients only for the adapter and the head, so fewer FLOPs done than 6N; evaluate: 2N both.
    for phase in ("train_trainer", "train_plain_loop"):
        assert 0 < data[phase]["mfu_done"] < data[phase]["mfu"]
    assert data["eval"]["mfu_done"] == data["eval"]["mfu"] > 0


@pytest.mark.model
def test_paths_benchmark_compares_old_and_new_and_estimates_the_run_as_an_avx2_host(trained_tiny, tmp_path):
    """benchmarks/paths.py --avx2 (it starts itself again with the instruction set held down) on the tiny
    trained project: each pair timed, the two prompt-only paths giving the same log-probabilities, and the
    run logs' model-bound phases replaced by estimates while the rest is kept as logged."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "evaluate.json").write_text(json.dumps({"wall_s": 10.0, "phases_s": {"score val": 4.0, "score test": 4.0}}))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "paths.py"), "--avx2", "--logs", str(logs), "--rows", "8"]
    result = run([*cmd, "--steps", "2", "--repeats", "1", "--install-s", "100"], trained_tiny)
    out = result.stdout
    assert "AVX2 forced (ONEDNN_MAX_CPU_ISA=AVX2" in out and "precision fp32" in out, out
    for pair in ("prompt-only scoring", "head inference", "a bf16-trained model scored"):
        assert f"| {pair} | " in out
    gap = float(out.split("differ by at most ")[1].split()[0])
    assert gap < 1e-4
    assert "| install (--install-s, not measured here) | 100 | 100 |" in out and "| evaluate | " in out
    assert "the run logs in" in out and "add up to 0.2 min" in out  # 10 s of evaluate
