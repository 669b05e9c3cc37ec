"""Settings: params.yaml as typed models, and the catalog of named datasets and models."""
