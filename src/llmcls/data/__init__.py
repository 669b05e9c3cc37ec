"""From files to token ids: reading tables, fetching, canonical rows, prompts, preprocessing, splits."""
