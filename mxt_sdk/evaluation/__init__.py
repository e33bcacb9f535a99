"""Evaluation: metrics, per-pair confidence thresholds, the report files and their plots."""
