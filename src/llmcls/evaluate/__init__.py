"""Scoring predictions: metrics, the evaluate / prompt-only stages, generation, baseline, ensemble, submission."""
