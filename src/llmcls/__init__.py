"""llmcls: reproducible fine-tuning of large language models as text classifiers.

`load_classifier(folder)` loads a trained or exported model for prediction (llmcls.predictor); it is
imported on first use, so `import llmcls` (and the `llmcls` command) stays free of torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_classifier"]


def __getattr__(name: str) -> Any:
    if name == "load_classifier":
        from llmcls.predictor import load_classifier

        return load_classifier
    raise AttributeError(f"module 'llmcls' has no attribute {name!r}")
