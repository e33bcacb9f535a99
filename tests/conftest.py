"""Shared fixtures. Tests never touch the network: the hub is forced offline before anything imports."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch):
    """Every test starts from the installed plugins with nothing blocked, and leaves no trace."""
    from mxt_sdk import plugins

    monkeypatch.delenv("MXT_DISABLE_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()
