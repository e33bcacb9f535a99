"""Training: the fine-tuning loop (accelerate) and its atomic, resumable checkpoints."""
