"""``mxt push``: upload a saved model folder to a Hugging Face Hub model repository."""
from __future__ import annotations

import click

from mxt_sdk.cli.common import command_options
from mxt_sdk.extractor import Extractor


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder written by `mxt train` / save_pretrained.")
@click.option("--repo", "repo_id", required=True, metavar="ORG/NAME", help="Hub model repository (created if missing).")
@click.option("--revision", metavar="BRANCH", help="Branch to push to (default: main; created if missing).")
@click.option("--private", is_flag=True, default=None, help="Create the repository private.")
@click.option("--message", help="Commit message.")
@command_options
def push(model_dir, repo_id, revision, private, message) -> None:
    """Upload the model in MODEL to the Hub repository REPO (needs network access and a write token:
    `hf auth login` or HF_TOKEN). The model is loaded and saved again first, so the upload holds exactly
    the files a model folder needs, its checksums.json and its model card; load it back with
    `--model ORG/NAME` on any command or Extractor.from_pretrained("ORG/NAME")."""
    url = Extractor.from_pretrained(model_dir, device="cpu").push_to_hub(
        repo_id, private=private, revision=revision, commit_message=message)
    click.echo(f"Pushed {model_dir} to {repo_id}: {url}")
