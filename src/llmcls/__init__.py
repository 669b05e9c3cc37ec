"""llmcls: reproducible fine-tuning of large language models as text classifiers."""

__version__ = "0.1.0"
