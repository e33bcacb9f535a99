"""Inference: the batched extraction engine (answers -> normalizers -> canonicalizer -> predictions), and Ray."""
