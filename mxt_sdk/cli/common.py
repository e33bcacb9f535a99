"""What every ``mxt`` sub-command shares: logging and bars set by ``-v`` / ``-q``, the ``--config``,
``--seed`` and ``--set`` options and their meaning. Logging is configured here, when a command runs,
never when a module is imported."""
from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from mxt_sdk import progress
from mxt_sdk.config import builtin_configs
from mxt_sdk.devices import check_device_name, resolve_device
from mxt_sdk.errors import ConfigError

#: loggers of libraries that print on their own; quiet unless -vv
_THIRD_PARTY = ("transformers", "datasets", "accelerate", "timm", "torch", "urllib3", "filelock", "huggingface_hub")


def setup_logging(verbosity: int = 0) -> None:
    """Send mxt_sdk's records to stderr: INFO by default, DEBUG with ``-v``, WARNING with ``-q``,
    ERROR with ``-qq``. Libraries log at ERROR unless ``-vv``; ``-q`` also turns progress bars off."""
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(max(verbosity, -2), logging.DEBUG)
    logger = logging.getLogger("mxt_sdk")
    handlers = [h for h in logger.handlers if type(h) is logging.StreamHandler]
    if not handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        handlers = [handler]
    for handler in handlers:
        handler.setLevel(level)
    logger.setLevel(level)
    for name in _THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.INFO if verbosity >= 2 else logging.ERROR)
    _library_verbosity(verbosity)
    progress.configure(False if verbosity < 0 else None)


def _library_verbosity(verbosity: int) -> None:
    """transformers and datasets keep their own verbosity and progress-bar switches: through their
    functions when imported already, through the environment variables they read at import otherwise
    (so a command that never needs them does not pay for importing them)."""
    level = "info" if verbosity >= 2 else "error"
    bars = verbosity >= 1  # "Generating train split", "Tokenizing": seconds, not news
    os.environ["TRANSFORMERS_VERBOSITY"] = level
    os.environ["DATASETS_VERBOSITY"] = level
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "0" if bars else "1"
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.set_verbosity(getattr(logging, level.upper()))
    if "datasets" in sys.modules:
        datasets = sys.modules["datasets"]
        datasets.logging.set_verbosity(getattr(logging, level.upper()))
        datasets.enable_progress_bars() if bars else datasets.disable_progress_bars()


def command_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``-v/--verbose`` and ``-q/--quiet`` (both repeatable) to a command and set up logging from
    them before it runs."""
    @click.option("-v", "--verbose", count=True, help="More output: -v debug messages and library bars, "
                                                       "-vv also the libraries' own logs.")
    @click.option("-q", "--quiet", count=True, help="Less output: -q warnings only and no progress bars, "
                                                     "-qq errors only.")
    @functools.wraps(function)
    def wrapper(*args: Any, verbose: int, quiet: int, **kwargs: Any) -> Any:
        setup_logging(verbose - quiet)
        return function(*args, **kwargs)

    return wrapper


def config_help(what: str = "Model/training config") -> str:
    return f"{what}: a YAML file or a built-in config name ({', '.join(builtin_configs())})."


set_option = click.option(
    "--set", "overrides", multiple=True, metavar="SECTION.FIELD=VALUE",
    help="Override one config field, e.g. --set training.learning_rate=0.002 or "
         "--set model.generator.options.d_model=64 (value read as YAML); repeatable, applied in order.")


def _check_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The --device value, checked now (form, CUDA present, N in range), so a bad one is a usage error
    before anything loads; passed on as written (``auto`` stays ``auto``)."""
    if value is None:
        return None
    try:
        resolve_device(value, "--device")
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("--device: "), ctx, param) from None
    return check_device_name(value)


def device_option(default_help: str = "the config's device, auto by default") -> Callable[..., Any]:
    """``--device`` for a command that runs the model: auto, cpu, cuda or cuda:N (:mod:`mxt_sdk.devices`)."""
    return click.option("--device", metavar="auto|cpu|cuda|cuda:N", callback=_check_device,
                        help=f"Where to run the model: auto (CUDA when available, else CPU), cpu, cuda or cuda:N "
                             f"(default: {default_help}).")


def model_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--model`` (a model folder or a Hugging Face Hub ID ``org/name``) and ``--revision`` (of a Hub ID),
    passed on as ``model`` and ``revision``; the model is resolved when the command loads it
    (:func:`mxt_sdk.model.hub.resolve_model`), so a missing one fails there with one line."""
    model = click.option("--model", "model", required=True, metavar="FOLDER|ORG/NAME",
                         help="Model folder written by `mxt train` / save_pretrained, or a Hugging Face Hub ID "
                              "(org/name; fetched into the Hub cache, or read from it with HF_HUB_OFFLINE=1).")
    revision = click.option("--revision", metavar="REV", help="Branch, tag or commit of a Hub model (default: main).")
    return model(revision(function))
