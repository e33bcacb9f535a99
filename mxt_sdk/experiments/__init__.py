"""Experiments: the ablation runner, one-model-per-type runs, the synthetic catalog and ``mxt demo``."""
