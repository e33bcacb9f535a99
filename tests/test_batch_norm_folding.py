"""Frozen image encoders run with their batch norms folded into the convolutions (mxt_timm.folding)."""
from __future__ import annotations

import timm
import torch

from conftest import TINY_T5
from mxt_sdk.config import ModelConfig
from mxt_sdk.model.mxt import MXTModel
from mxt_timm.encoders import TimmEncoder, TimmOptions
from mxt_timm.folding import folded_copy


def _with_running_statistics(network: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``network`` in eval mode with batch-norm statistics and affines far from the identity."""
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator))
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(size, generator=generator))
            module.bias.data.copy_(torch.randn(size, generator=generator))
    return network.eval()


def test_folded_efficientnet_keeps_its_features_and_loses_every_batch_norm():
    network = _with_running_statistics(timm.create_model("tf_efficientnet_lite0", num_classes=0))
    before = {name: value.clone() for name, value in network.state_dict().items()}
    folded = folded_copy(network, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    assert folded is not None
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules()) == 49  # the original is untouched
    assert all(torch.equal(before[name], value) for name, value in network.state_dict().items())
    other = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # not the example it checked on
    with torch.no_grad():
        expected, got = network(other), folded(other)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


class _ReadsTheConvolutionTwice(torch.nn.Module):
    """A skip connection from a convolution's output around its batch norm: folding would change it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)

    def forward(self, pixels):
        features = self.conv(pixels)
        return self.norm(features) + features


def test_a_network_that_folding_would_change_runs_unfolded():
    network = _with_running_statistics(_ReadsTheConvolutionTwice())
    assert folded_copy(network, torch.randn(1, 3, 8, 8)) is None


def _frozen_encoder() -> TimmEncoder:
    options = TimmOptions(model_name="test_resnet", image_size=64, pool=False, freeze=True)
    return TimmEncoder(options)


def test_frozen_encoder_saves_its_own_weights_and_refolds_after_loading():
    encoder = _frozen_encoder()
    _with_running_statistics(encoder.net, seed=3)
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        first = encoder(pixels)
        assert encoder._folded is not None and encoder._folded[1] is not None  # the folded copy ran
        keys = set(encoder.state_dict())
        assert keys == {f"net.{name}" for name in encoder.net.state_dict()}  # no copy in what is saved

        other = _frozen_encoder()
        _with_running_statistics(other.net, seed=5)
        encoder.load_state_dict(other.state_dict())
        reloaded = encoder(pixels)
        encoder.fold_batch_norms = False
        unfolded = encoder(pixels)
    assert not torch.allclose(reloaded, first)  # the new weights are used, not the stale copy
    assert torch.allclose(reloaded, unfolded, rtol=1e-4, atol=1e-4 * unfolded.abs().max().item())


def test_trainable_encoder_runs_its_own_network():
    encoder = TimmEncoder(TimmOptions(model_name="test_resnet", image_size=64, pool=True, freeze=False))
    encoder.eval()
    with torch.no_grad():
        encoder(torch.zeros(1, 3, 64, 64))
    assert encoder._folded is None


def test_model_with_frozen_encoder_folds_in_extraction_not_in_its_parameters():
    model = MXTModel(ModelConfig.model_validate({
        "generator": TINY_T5,
        "global_encoder": {"name": "timm", "options": {"model_name": "test_resnet", "image_size": 64,
                                                       "freeze": True}},
        "fusions": [{"name": "mag"}]})).eval()
    parameters = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        model.encoders["global"](torch.zeros(1, 3, 64, 64))
    assert sum(p.numel() for p in model.parameters()) == parameters
