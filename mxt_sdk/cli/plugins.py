"""``mxt plugins``: what is installed, by kind, and which plugin provides each component."""
from __future__ import annotations

import json

import click

from mxt_sdk.cli.common import command_options
from mxt_sdk.plugins import manager


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {kind: [{name, plugin, ...}]}.")
@command_options
def plugins(as_json: bool) -> None:
    """List registered image encoders, fusions, generators, normalizers, canonicalizers, readers."""
    table = {kind: [info.as_dict() for info in infos] for kind, infos in manager.all_components().items()}
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    rows = [(kind, item["name"], item["plugin"], ", ".join(item["aliases"]))
            for kind, items in table.items() for item in items]
    header = ("kind", "name", "plugin", "aliases")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    empty = [kind for kind, items in table.items() if not items]
    if empty:
        click.echo(f"\n(no components installed for: {', '.join(empty)})")
