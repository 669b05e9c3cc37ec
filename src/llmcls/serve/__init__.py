"""Using a trained model outside the pipeline: predict and export."""

from llmcls.serve.predict import TextClassifier, load_classifier

__all__ = ["TextClassifier", "load_classifier"]
