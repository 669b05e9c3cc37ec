"""Per-device set-up: the CPU attention kernels entered once from one thread before any model runs."""

import pytest
import torch

from llmcls.core.devices import enable_fast_matmul, initialise_cpu_attention


@pytest.mark.parametrize("mode", ["grad", "inference"])
def test_attention_is_initialised_on_one_thread_and_the_thread_count_comes_back(mode, monkeypatch):
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((torch.get_num_threads(), args[0].dtype, args[0].requires_grad))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    before = torch.get_num_threads()
    if mode == "inference":  # predict and evaluate may already be inside inference mode
        with torch.inference_mode():
            initialise_cpu_attention()
    else:
        initialise_cpu_attention()
    assert calls == [(1, torch.bfloat16, True), (1, torch.float16, True)]
    assert torch.get_num_threads() == before


def test_every_model_entry_point_initialises_it(monkeypatch):
    import llmcls.core.devices as devices

    seen = []
    monkeypatch.setattr(devices, "initialise_cpu_attention", lambda: seen.append(True))
    enable_fast_matmul()
    assert seen == [True]
    # evaluate, prompt-only, predict and train call enable_fast_matmul before loading a model
    from pathlib import Path

    root = Path(devices.__file__).parents[1]
    callers = {p.relative_to(root).as_posix() for p in root.rglob("*.py") if "enable_fast_matmul()" in p.read_text()}
    assert callers >= {"evaluate/classifier.py", "evaluate/prompt_only.py", "serve/predict.py", "train/classifier.py"}
