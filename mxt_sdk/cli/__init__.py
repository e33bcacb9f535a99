"""The ``mxt`` command. One module per sub-command; each adds itself to :data:`main`. The exit statuses
are in :mod:`mxt_sdk.cli.exits`, the options every command shares in :mod:`mxt_sdk.cli.common`."""
from __future__ import annotations

import click

from mxt_sdk import __version__
from mxt_sdk.cli.exits import USAGE
from mxt_sdk.errors import MXTError


class _UsageFailure(click.ClickException):
    exit_code = USAGE


class _Group(click.Group):
    """Shows MXTError messages (bad config, data file, model folder, ...) as clean one-line errors with
    the usage-error status 2, as click does for a bad option, instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MXTError as exc:
            raise _UsageFailure(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mxt")
def main() -> None:
    """Multimodal product attribute-value extraction (MXT).

    \b
    mxt demo        train and evaluate on a built-in synthetic catalog (start here)
    mxt plugins     list installed components and the plugins providing them
    mxt train       fine-tune on catalog data (resumes when re-run)
    mxt pretrain    pretrain the generator on unlabeled catalog text (resumes when re-run)
    mxt extract     predict attribute values for a product file (JSONL out)
    mxt evaluate    score a model on labelled data (recall@P, F1, slices)
    mxt calibrate   set per-pair confidence thresholds for a target precision
    mxt ablate      train model variants on the same data and budget, compare them
    mxt serve       answer extraction requests over HTTP, batching concurrent ones
    mxt push        upload a model folder to the Hugging Face Hub (load it back by its ID)

    \b
    Every command takes -v / -q (more / less output). Exit statuses, the same on every command:
      0 finished   2 usage error (nothing ran)   3 nothing could be done (every row failed)
      4 finished with failed rows or variants    1 unexpected error (a bug)
    Shell completion and more: docs/cli.md.
    """


from mxt_sdk.cli import ablate as _ablate  # noqa: E402
from mxt_sdk.cli import plugins as _plugins  # noqa: E402
from mxt_sdk.cli import pretrain as _pretrain  # noqa: E402
from mxt_sdk.cli import push as _push  # noqa: E402
from mxt_sdk.cli import serve as _serve  # noqa: E402
from mxt_sdk.cli import demo as _demo  # noqa: E402
from mxt_sdk.cli import evaluate as _evaluate  # noqa: E402
from mxt_sdk.cli import extract as _extract  # noqa: E402
from mxt_sdk.cli import train as _train  # noqa: E402

main.add_command(_demo.demo)
main.add_command(_plugins.plugins)
main.add_command(_train.train)
main.add_command(_pretrain.pretrain)
main.add_command(_evaluate.evaluate)
main.add_command(_extract.extract)
main.add_command(_evaluate.calibrate)
main.add_command(_ablate.ablate)
main.add_command(_serve.serve)
main.add_command(_push.push)
