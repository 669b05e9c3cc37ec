"""llmcls: reproducible fine-tuning of large language models as text classifiers.

Subpackages, one layer each (imports point down this list, never up; `make lint` checks it):
cli -> serve | experiments -> train -> evaluate -> model -> data -> config -> core.
`from llmcls.serve import load_classifier` loads a trained or exported model for prediction.
"""

__version__ = "0.1.0"
