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
import typing
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


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The config section type inside a field's annotation, and whether the field is a list of them."""
    is_list = typing.get_origin(annotation) is list
    candidates = (annotation, *typing.get_args(annotation))
    if is_list:
        candidates = typing.get_args(annotation)
    else:  # Optional[list[...]] and the like
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is list:
                is_list, candidates = True, typing.get_args(arg)
    nested = [t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)]
    return (nested[0] if nested else None), is_list


def _check_path(keys: list[str]) -> None:
    """Raise :class:`ConfigError` unless ``keys`` names a field of :class:`MXTConfig` (a list of sections,
    such as ``model.fusions``, takes an index: ``model.fusions.0.options.dropout``)."""
    model: type[BaseModel] | None = MXTConfig
    depth = 0
    while depth < len(keys):
        key = keys[depth]
        if model is None:  # inside a free-form mapping (component options): any key
            return
        if key not in model.model_fields:
            raise _unknown(keys, depth, _fields(model))
        if depth == len(keys) - 1 or (model is ComponentSpec and key == "options"):
            return
        nested, is_list = _nested_model(model.model_fields[key].annotation)
        if is_list:
            depth += 1
            if not keys[depth].isdigit():
                raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth])} is a list; name an item by its "
                                  f"position, e.g. {'.'.join([*keys[:depth], '0', *keys[depth + 1:]])}.")
            if depth == len(keys) - 1:
                return
        elif nested is None:
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth + 1])} is a value, not a section; "
                              f"set it as --set {'.'.join(keys[:depth + 1])}=VALUE.")
        model = nested
        depth += 1


def _child(target: Any, key: str, keys: list[str], depth: int) -> Any:
    """``target[key]`` while walking an override's path; a list takes a position in range."""
    if isinstance(target, list):
        position = int(key)
        if position >= len(target):
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth])} has {len(target)} item(s); "
                              f"there is no position {position}.")
        return target[position]
    if target.get(key) is None:
        target[key] = {}
    return target[key]


def apply_overrides(config: str | Any, overrides: Sequence[str]) -> MXTConfig:
    """``config`` (anything :func:`~mxt_sdk.config.load_config` takes) with each ``section.field=value``
    of ``overrides`` applied in order, validated."""
    data = copy.deepcopy(load_config(config).model_dump(mode="json"))
    for text in overrides:
        keys, value = parse_override(text)
        _check_path(keys)
        target = data
        for depth, key in enumerate(keys[:-1]):
            target = _child(target, key, keys, depth)
        if isinstance(target, list):
            _child(target, keys[-1], keys, len(keys) - 1)  # the position must exist
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value
    return load_config(data)
