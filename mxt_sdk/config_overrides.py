"""``section.field=value`` overrides of a config (``mxt train --set training.learning_rate=0.002``).

A path names a section of :class:`~mxt_sdk.config.MXTConfig` (``model``, ``training``, ``extraction``)
and a field in it; a component field goes on with ``name`` or ``options.<option>``
(``model.generator.options.d_model=64``). The value is read as YAML (``0.002``, ``true``, ``null``,
``[text, units]``). A path that names no field is a :class:`ConfigError` listing the valid ones;
the result is validated again, so a value of the wrong type is an error naming the field.
"""
from __future__ import annotations

import copy
import difflib
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import BaseModel

from mxt_sdk.config import ComponentSpec, MXTConfig, load_config
from mxt_sdk.errors import ConfigError

__all__ = ["parse_override", "apply_overrides"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"training.seed=7"`` -> ``(["training", "seed"], 7)``."""
    path, sep, raw = text.partition("=")
    keys = [key.strip() for key in path.split(".")]
    if not sep or len(keys) < 2 or not all(keys):
        raise ConfigError(f"--set {text!r} is not of the form section.field=value "
                          "(e.g. training.learning_rate=0.002).")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {exc}") from None
    return keys, value


def _fields(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _unknown(keys: list[str], depth: int, valid: Sequence[str]) -> ConfigError:
    name, where = keys[depth], ".".join(keys[:depth]) or "the config"
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f" Did you mean {'.'.join([*keys[:depth], close[0]])!r}?" if close else ""
    return ConfigError(f"--set {'.'.join(keys)}: {where} has no field {name!r}.{hint} "
                       f"Valid fields of {where}: {', '.join(valid)}.")


def _check_path(keys: list[str]) -> None:
    """Raise :class:`ConfigError` unless ``keys`` names a field of :class:`MXTConfig`."""
    model: type[BaseModel] | None = MXTConfig
    for depth, key in enumerate(keys):
        if model is None:  # inside a free-form mapping (component options): any key
            return
        if key not in model.model_fields:
            raise _unknown(keys, depth, _fields(model))
        annotation = model.model_fields[key].annotation
        nested = [t for t in (annotation, *getattr(annotation, "__args__", ())) if isinstance(t, type)
                  and issubclass(t, BaseModel)]
        if depth == len(keys) - 1:
            return
        if model is ComponentSpec and key == "options":
            return
        if not nested:
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth + 1])} is a value, not a section; "
                              f"set it as --set {'.'.join(keys[:depth + 1])}=VALUE.")
        model = nested[0]


def apply_overrides(config: str | Any, overrides: Sequence[str]) -> MXTConfig:
    """``config`` (anything :func:`~mxt_sdk.config.load_config` takes) with each ``section.field=value``
    of ``overrides`` applied in order, validated."""
    data = copy.deepcopy(load_config(config).model_dump(mode="json"))
    for text in overrides:
        keys, value = parse_override(text)
        _check_path(keys)
        target = data
        for key in keys[:-1]:
            if target.get(key) is None:
                target[key] = {}
            target = target[key]
        target[keys[-1]] = value
    return load_config(data)
