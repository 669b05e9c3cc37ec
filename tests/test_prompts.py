"""Truncation happens inside the template: the cue after the text always survives."""

import pytest

from llmcls.core.errors import LlmclsError
from llmcls.data.prompt import PromptEncoder, compose_template, fair_budgets


@pytest.mark.parametrize(
    ("lengths", "budget", "expected"),
    [
        ([5, 5], 20, [5, 5]),
        ([100, 4], 20, [16, 4]),
        ([100, 100, 100], 30, [10, 10, 10]),
        ([100, 100], 31, [16, 15]),
        ([3, 50, 50], 23, [3, 10, 10]),
        ([0, 80], 10, [0, 10]),
    ],
)
def test_fair_budgets(lengths, budget, expected):
    got = fair_budgets(lengths, budget)
    assert got == expected
    assert sum(got) <= budget


def test_compose_template_fills_class_labels():
    template = compose_template('Read "{text}", pick one of {class_labels}, answer:', "{text}", ["neg", "pos"])
    assert template == 'Read "{text}", pick one of neg, pos, answer:'
    assert compose_template(None, "A: {a} B: {b}", ["x"]) == "A: {a} B: {b}"


def test_long_text_is_cut_inside_the_template(tiny_base_dir):
    from llmcls.model.base import load_tokenizer

    tokenizer = load_tokenizer(tiny_base_dir)
    template = 'Please carefully read the following reference text:"{text}", answer:'
    encoder = PromptEncoder(tokenizer, template, max_length=40)
    long_text = " ".join(["a great and moving film"] * 50)
    encoded = encoder.encode({"text": long_text})
    assert encoded.truncated
    assert len(encoded.input_ids) <= 40
    decoded = tokenizer.decode(encoded.input_ids)
    assert decoded.endswith('", answer:')
    assert decoded.startswith("Please carefully read")
    short = encoder.encode({"text": "a dull mess"})
    assert not short.truncated
    assert (
        tokenizer.decode(short.input_ids) == 'Please carefully read the following reference text:"a dull mess", answer:'
    )


def test_left_truncation_keeps_the_end(tiny_base_dir):
    from llmcls.model.base import load_tokenizer

    tokenizer = load_tokenizer(tiny_base_dir)
    encoder = PromptEncoder(tokenizer, "T:{text}.", max_length=24, truncation_side="left")
    text = "first words " + "filler " * 60 + "final words"
    decoded = tokenizer.decode(encoder.encode({"text": text}).input_ids)
    assert decoded.endswith("final words.") and "first" not in decoded


def test_pairwise_fields_share_the_budget(tiny_base_dir):
    from llmcls.model.base import load_tokenizer

    tokenizer = load_tokenizer(tiny_base_dir)
    encoder = PromptEncoder(tokenizer, "Q:{prompt}\nA:{response_a}\nB:{response_b}\nanswer:", max_length=48)
    rows = {"prompt": "why ?", "response_a": "great film " * 40, "response_b": "dull mess " * 40}
    encoded = encoder.encode_batch({k: [v] for k, v in rows.items()})[0]
    decoded = tokenizer.decode(encoded.input_ids)
    assert len(encoded.input_ids) <= 48
    assert "Q:why ?" in decoded and "\nA:great" in decoded and "\nB:dull" in decoded
    assert decoded.endswith("\nanswer:")
    a_part = decoded.split("\nA:")[1].split("\nB:")[0]
    b_part = decoded.split("\nB:")[1].split("\nanswer:")[0]
    assert abs(len(tokenizer(a_part)["input_ids"]) - len(tokenizer(b_part)["input_ids"])) <= 2


def test_template_longer_than_max_length_is_an_error(tiny_base_dir):
    from llmcls.model.base import load_tokenizer

    with pytest.raises(LlmclsError, match="preprocess.max_length"):
        PromptEncoder(load_tokenizer(tiny_base_dir), "Please carefully read the following reference {text}", 16)


def test_a_template_longer_than_max_length_still_gets_min_text_tokens(tiny_base_dir):
    """Many class names listed in the template: the text keeps its floor, the cue survives, the cap grows."""
    from llmcls.model.base import load_tokenizer

    tokenizer = load_tokenizer(tiny_base_dir)
    template = "Read:{text}. Classes: " + ", ".join(f"class number {i}" for i in range(30)) + ". answer:"
    encoder = PromptEncoder(tokenizer, template, max_length=32, min_text_tokens=12)
    assert encoder.fixed > 32 and encoder.budget == 12 and encoder.max_length == encoder.fixed + 12
    encoded = encoder.encode({"text": "a long review " * 20})
    assert encoded.truncated and len(encoded.input_ids) == encoder.max_length
    assert tokenizer.decode(encoded.input_ids).endswith(". answer:")
    # where the template fits, the floor changes nothing
    roomy = PromptEncoder(tokenizer, "T:{text}.", max_length=64, min_text_tokens=12)
    assert roomy.max_length == 64 and roomy.budget == 64 - roomy.fixed


def test_a_long_class_list_is_left_out_of_the_prompt(tiny_base_dir):
    from llmcls.config.catalog import dataset_spec
    from llmcls.core.artifacts import LabelSet
    from llmcls.data.prompt import class_list_fits, prompt_record
    from llmcls.model.base import load_tokenizer

    tokenizer = load_tokenizer(tiny_base_dir)
    names = [f"category number {i}" for i in range(40)]
    assert class_list_fits(tokenizer, names[:2], 64) and not class_list_fits(tokenizer, names, 64)
    assert class_list_fits(tokenizer, names, None)
    spec, labels = dataset_spec("sst2"), LabelSet(tuple(names))
    wrapper = "Read:{text}. Pick one of:{class_labels}. answer:"
    listed = prompt_record(spec, labels, wrapper, 256, "right", 128, True)
    unlisted = prompt_record(spec, labels, wrapper, 256, "right", 128, False)
    assert "category number 39" in listed["template"] and listed["class_labels_listed"]
    assert unlisted["template"] == "Read:{text}. Pick one of:. answer:" and not unlisted["class_labels_listed"]
    assert unlisted["label_texts"] == names  # scoring and generation still know every class
