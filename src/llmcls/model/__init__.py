"""The base model, classifier heads, building, saving and loading, and batched inference."""
