"""The ``mxt serve`` app under Ray Serve (optional extra ``mxt-sdk[ray-serve]``): one model per replica.

    from ray import serve
    from mxt_sdk.serving.ray_serve import deployment

    serve.run(deployment("my-model", num_replicas=4, settings={"image_root": "/data/images"}))

Each replica builds :func:`~mxt_sdk.serving.app.create_app` around its own loaded
:class:`~mxt_sdk.Extractor` when it starts (Ray Serve runs the app's lifespan, so the replica warms up
and its micro-batcher runs as under uvicorn); Ray Serve's proxy spreads the requests over the replicas.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve

from mxt_sdk.extractor import Extractor
from mxt_sdk.serving.app import create_app
from mxt_sdk.serving.settings import ServeSettings


@serve.ingress()
class MXTReplica:
    """One replica: the model folder, the device and the :class:`ServeSettings` fields it is built from."""

    def __init__(self, model_dir: str, settings: dict[str, Any] | None = None, device: str | None = None):
        self.model_dir, self.device = model_dir, device
        self.settings = ServeSettings.model_validate(settings or {})  # a bad setting fails the deployment

    def __serve_build_asgi_app__(self):
        return create_app(Extractor.from_pretrained(self.model_dir, device=self.device), self.settings)


def deployment(model_dir: str | Path, *, num_replicas: int = 1, num_cpus: float = 1, num_gpus: float = 0,
               settings: dict[str, Any] | None = None, device: str | None = None,
               max_ongoing_requests: int = 64) -> Any:
    """A bound Ray Serve application of ``num_replicas`` replicas of the model in ``model_dir``, each with
    ``num_cpus`` / ``num_gpus``; ``settings`` are :class:`ServeSettings` fields (``image_root`` must be
    readable from every node; ``workers`` defaults to one engine thread per CPU of the replica, at least
    one). Pass the result to ``serve.run``."""
    settings = {"workers": max(1, int(num_cpus)), **(settings or {})}
    ServeSettings.model_validate(settings)  # fail here, not in every replica
    options = serve.deployment(MXTReplica, name="mxt", num_replicas=num_replicas,
                               max_ongoing_requests=max_ongoing_requests,
                               ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus})
    return options.bind(str(model_dir), settings, device)
