"""llmcls's sequence classifier as plain transformers builds it: any base architecture (AutoModel) with the
head llmcls trained, read at the last non-padding token as the architectures' own classifiers read it.

`llmcls export` saves this file beside the weights through `register_for_auto_class`, so
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` builds it without llmcls:
it imports torch and transformers only, never llmcls.
"""

import torch
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


def head_layers(kind: str, hidden: int, classes: int, dropout: float) -> torch.nn.Module:
    """The head's layers (PyTorch's default initialisation): `linear` is hidden -> classes with a bias; `mlp` is
    hidden -> 512 -> 256 -> classes with ReLU and dropout."""
    if kind == "mlp":
        return torch.nn.Sequential(
            torch.nn.Linear(hidden, 512),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(512, 256),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(256, classes),
        )
    return torch.nn.Linear(hidden, classes, bias=True)


class LlmclsForSequenceClassification(PreTrainedModel):
    """The base model under `model`, the head under the name `config.llmcls_head["attribute"]` gives (`score`
    for decoder LLMs): the parameter names of the weights llmcls saves."""

    config_class = PretrainedConfig
    base_model_prefix = "model"
    # Attention runs inside the base model, which supports what its architecture supports.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config):
        super().__init__(config)
        head = config.llmcls_head
        self.model = AutoModel.from_config(config)
        self.head_name = head["attribute"]
        layers = head_layers(head["kind"], head["in_features"], config.num_labels, head["dropout"])
        self.add_module(self.head_name, layers)
        self.post_init()

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        logits = getattr(self, self.head_name)(hidden)
        # The rightmost token that is not padding, whichever side the batch is padded on.
        positions = torch.arange(input_ids.shape[-1], device=logits.device)
        last = (positions * (input_ids != self.config.pad_token_id).to(logits.device)).argmax(-1)
        return SequenceClassifierOutputWithPast(logits=logits[torch.arange(len(input_ids), device=logits.device), last])
