"""Fine-tuning: the Trainer set-up, losses, checkpoints, warm-started heads, the generative objective."""
