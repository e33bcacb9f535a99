"""Exit statuses of every ``mxt`` command (docs/cli.md#exit-statuses), the same on each of them."""
from __future__ import annotations

import click

OK = 0             #: finished, nothing failed
INTERNAL = 1       #: an unexpected error (a bug): Python's traceback is shown
USAGE = 2          #: a usage error: bad option, config, --set path, data file or model folder; nothing ran
NOTHING_RAN = 3    #: the job ran but nothing could be done: every row (or variant) failed
PARTIAL = 4        #: finished, but some rows (or variants) failed; the output says which

STATUSES = {OK: "finished, nothing failed",
            INTERNAL: "unexpected error (a bug; a traceback is shown)",
            USAGE: "usage error (bad option, config, --set, data file or model folder); nothing ran",
            NOTHING_RAN: "nothing could be done: every row or variant failed",
            PARTIAL: "finished, but some rows or variants failed (see the output)"}


def finish(failed: int, total: int, what: str = "rows") -> None:
    """Exit with :data:`NOTHING_RAN` when all ``total`` failed, :data:`PARTIAL` when some did; return otherwise."""
    if total and failed == total:
        click.echo(f"Nothing could be done: all {total} {what} failed; see their errors.", err=True)
        raise SystemExit(NOTHING_RAN)
    if failed:
        click.echo(f"Finished with {failed} of {total} {what} failed; see their errors.", err=True)
        raise SystemExit(PARTIAL)
