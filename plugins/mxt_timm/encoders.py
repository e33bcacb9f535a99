"""timm image encoders: pooled (``global``) vectors or un-pooled (``regional``) feature maps."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch
from pydantic import Field, model_validator

from mxt_sdk import ComponentOptions, ImageEncoder
from mxt_sdk.errors import ConfigError

from mxt_timm.folding import folded_copy
from mxt_timm.packaged import load_packaged_weights
from mxt_timm.tail import check_cut, tail_forward, tail_modules, trunk_forward
from mxt_timm.weights import load_backbone_weights


class _EncoderOptions(ComponentOptions):
    """Weights come from at most one source: timm's hub (``pretrained``), a local file
    (``checkpoint_path``) or an installed package (``packaged_weights``, see ``mxt_timm.packaged``)."""

    model_name: str
    pretrained: bool = Field(default=False, description="fetch timm's pretrained weights (needs network)")
    checkpoint_path: str | None = Field(default=None, description="local .safetensors or torch weights file")
    packaged_weights: bool = Field(default=False, description="ImageNet weights from an installed package, "
                                                              "offline and hash-pinned (tf_efficientnet_lite0/1/2)")
    image_size: int | None = Field(default=None, ge=16, description="square input side; default: the model's")
    freeze: bool | None = Field(default=None, description="keep the weights fixed (batch norm in eval mode); "
                                                          "default: frozen when pretrained weights are loaded")
    train_last_blocks: int = Field(default=0, ge=0, description="train the last N blocks and the head convolution "
                                                                "of a frozen EfficientNet-family network; the rest "
                                                                "stays fixed (and cacheable), see mxt_timm.tail")

    @model_validator(mode="after")
    def _one_weight_source(self) -> "_EncoderOptions":
        sources = [name for name in ("pretrained", "checkpoint_path", "packaged_weights") if getattr(self, name)]
        if len(sources) > 1:
            raise ValueError(f"choose one source of weights, not {' and '.join(sources)}")
        return self

    @model_validator(mode="after")
    def _tail_of_a_frozen_network(self) -> "_EncoderOptions":
        if self.train_last_blocks and not self.frozen:
            raise ValueError("train_last_blocks trains the tail of a frozen network: it needs pretrained weights "
                             "(or freeze: true); an unfrozen network trains whole")
        return self

    @property
    def has_pretrained_weights(self) -> bool:
        return bool(self.pretrained or self.checkpoint_path or self.packaged_weights)

    @property
    def frozen(self) -> bool:
        return self.has_pretrained_weights if self.freeze is None else self.freeze


class _MapOptions(_EncoderOptions):
    """Options of an encoder that can give the un-pooled feature map (``grid`` reduces that map)."""

    grid: int | None = Field(default=None, ge=1, description="average-pool the regional feature map to a "
                                                             "grid x grid map (grid^2 regions); default: the "
                                                             "network's whole map (e.g. 7x7 at 224 px)")


class TimmOptions(_MapOptions):
    model_name: str = "resnet18"
    pool: bool = Field(default=True, description="True: one pooled vector; False: the feature map")

    @model_validator(mode="after")
    def _grid_needs_map(self) -> "TimmOptions":
        if self.pool and self.grid is not None:
            raise ValueError("grid reduces the regional map: it needs pool: false")
        return self


class GlobalOptions(_EncoderOptions):
    model_name: str = "resnet152"


class RegionalOptions(_MapOptions):
    model_name: str = "legacy_xception"


class TimmEncoder(ImageEncoder):
    """Any timm model: ``pool=True`` gives one vector per image, ``pool=False`` the spatial map.

    A frozen encoder runs a copy of its network with the batch norms folded into the convolutions
    (:mod:`mxt_timm.folding`; same features up to float rounding, about 1.5x faster on CPU). The copy
    is built on the first pass, rebuilt when the weights are loaded or move to another device, dtype or
    memory format, and is never saved: the model folder keeps the network's own weights. Set
    :attr:`fold_batch_norms` to False to run the network as it is.
    """

    name = "timm"
    Options = TimmOptions
    example_options = {"model_name": "test_resnet", "image_size": 64}
    fold_batch_norms: bool = True

    def __init__(self, options: _EncoderOptions, *, saved: Mapping[str, Any] | None = None):
        super().__init__(options, saved=saved)
        self.net = self._create(options, fetch=options.pretrained and saved is None)
        if saved is None and options.checkpoint_path:
            load_backbone_weights(self.net, Path(options.checkpoint_path))
        if saved is None and options.packaged_weights:
            load_packaged_weights(self.net, options.model_name)
        self._preprocessing = dict(saved["preprocessing"]) if saved else self._data_config(options)
        self.output = "global" if self._pools(options) else "regional"
        self.pooled_dim = int(getattr(self.net, "head_hidden_size", None) or self.net.num_features)
        self.out_dim = self.pooled_dim if self.output == "global" else int(self.net.num_features)
        if options.frozen:
            self.net.requires_grad_(False)
            self.net.eval()
        if options.train_last_blocks:
            check_cut(self.net, options.train_last_blocks, options.model_name)
            for module in tail_modules(self.net, options.train_last_blocks):
                module.requires_grad_(True)
        self._folded: tuple[tuple, torch.nn.Module | None] | None = None  # (key of the weights it copies, copy)
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_folded", None))

    @staticmethod
    def _pools(options: _EncoderOptions) -> bool:
        return getattr(options, "pool", True)

    @staticmethod
    def _create(options: _EncoderOptions, fetch: bool) -> torch.nn.Module:
        try:
            network = timm.create_model(options.model_name, pretrained=fetch, num_classes=0)
            fixed = network.pretrained_cfg.get("fixed_input_size", False)
            if fixed and options.image_size:
                network = timm.create_model(options.model_name, pretrained=fetch, num_classes=0,
                                            img_size=options.image_size)
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                raise ConfigError(f"timm has no model {options.model_name!r}; see timm.list_models().") from None
            raise
        return network

    def _data_config(self, options: _EncoderOptions) -> dict[str, Any]:
        config = dict(timm.data.resolve_data_config({}, model=self.net))
        if options.image_size:
            config["input_size"] = (3, options.image_size, options.image_size)
        return config

    def preprocessing(self) -> dict[str, Any]:
        return dict(self._preprocessing)

    def train(self, mode: bool = True) -> "TimmEncoder":
        super().train(mode)
        if self.options.frozen:
            self.net.eval()
        return self

    @property
    def shares_pass(self) -> bool:
        """A regional encoder with loaded weights is the same network as a global one with the same
        options, so one pass can serve both (random-init encoders stay separate networks)."""
        return self.output == "regional" and self.options.has_pretrained_weights

    @property
    def trains_tail(self) -> bool:
        return bool(self.options.train_last_blocks)

    def fixed_state_dict(self) -> dict[str, torch.Tensor]:
        if not self.trains_tail:
            return super().fixed_state_dict()
        trained = {id(t) for module in tail_modules(self.net, self.options.train_last_blocks)
                   for t in (*module.parameters(), *module.buffers())}
        return {name: t for name, t in self.state_dict(keep_vars=True).items() if id(t) not in trained}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.trains_tail:
            return self.finish(self.encode_trunk(pixels))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.options.frozen):
            net = self._running_net(pixels)
            if self.output == "global":
                return net(pixels)
            return self._regions(net.forward_features(pixels))

    def encode_both(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.trains_tail:
            return self.finish_both(self.encode_trunk(pixels))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.options.frozen):
            net = self._running_net(pixels)
            features = net.forward_features(pixels)
            return net.forward_head(features, pre_logits=True), self._regions(features)

    def encode_trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return trunk_forward(self._running_net(pixels), pixels, self.options.train_last_blocks)

    def finish(self, trunk: torch.Tensor) -> torch.Tensor:
        features = self._tail(trunk)
        return self.net.forward_head(features, pre_logits=True) if self.output == "global" else self._regions(features)

    def finish_both(self, trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self._tail(trunk)
        return self.net.forward_head(features, pre_logits=True), self._regions(features)

    def _tail(self, trunk: torch.Tensor) -> torch.Tensor:
        """The final feature map from the trunk's (the network's own tail modules, with gradients when enabled)."""
        return tail_forward(self.net, trunk.to(next(self.net.conv_head.parameters()).dtype),
                            self.options.train_last_blocks)

    def _running_net(self, pixels: torch.Tensor) -> torch.nn.Module:
        """The network a pass runs: the folded copy for a frozen encoder (built here when missing or
        stale), the network itself otherwise or where folding does not apply."""
        if not (self.options.frozen and self.fold_batch_norms) or self.net.training:
            return self.net
        weight = next(self.net.parameters())
        key = (weight.device, weight.dtype, self._layout(), weight._version)
        if self._folded is None or self._folded[0] != key:
            example = torch.randn((1, *pixels.shape[1:]), generator=torch.Generator().manual_seed(0))
            example = example.to(device=pixels.device, dtype=pixels.dtype)
            with torch.inference_mode(False), torch.no_grad():  # a copy of plain tensors, even when built in
                self._folded = (key, folded_copy(self.net, example))  # inference mode
        return self._folded[1] or self.net

    def _layout(self) -> bool:
        """Whether the network's first 4-d weight is channels-last (the folded copy keeps that layout)."""
        weight = next((p for p in self.net.parameters() if p.dim() == 4), None)
        return weight is not None and weight.is_contiguous(memory_format=torch.channels_last) \
            and not weight.is_contiguous()

    def _regions(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, R, C]`` regions of the backbone's output: its map ``[B, C, h, w]`` as ``h*w`` regions,
        or, with the ``grid`` option, average-pooled to ``grid x grid`` first (the same reduction
        whether the features are cached for training or computed at extraction)."""
        grid = getattr(self.options, "grid", None)
        if features.dim() == 4:
            if grid is not None:
                features = torch.nn.functional.adaptive_avg_pool2d(features, grid)
            return features.flatten(2).transpose(1, 2)
        if grid is not None:
            raise ConfigError(f"grid: {grid} reduces a feature map, but {self.options.model_name!r} gives "
                              "tokens [B, N, C]; remove grid for this model")
        return features  # token models already give [B, N, C]


class ResNet152Encoder(TimmEncoder):
    """The paper's global encoder: ResNet-152, average-pooled to one 2048-d vector."""

    name = "resnet152"
    Options = GlobalOptions
    example_options = {"image_size": 64}


class XceptionEncoder(TimmEncoder):
    """The paper's regional encoder: Xception's un-pooled final feature map (2048 channels)."""

    name = "xception"
    Options = RegionalOptions
    example_options = {"image_size": 96}

    @staticmethod
    def _pools(options: _EncoderOptions) -> bool:
        return False
