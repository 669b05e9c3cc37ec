"""The `llmcls` command and what every stage script shares."""
