"""Models by Hugging Face Hub ID: ``org/name`` resolves to a local folder through ``huggingface_hub``.

:func:`resolve_model` is what every loader calls with the name a user gave. A name that is an
existing folder is used as it is (nothing is downloaded). Otherwise a name of the form ``org/name`` is
a Hub model repository: :func:`huggingface_hub.snapshot_download` fetches the files of a model folder
(and nothing else: no pickled weights, only safetensors) into the standard cache (``HF_HOME`` /
``HF_HUB_CACHE``, or ``cache_dir``), or finds them there when offline (``HF_HUB_OFFLINE=1`` or
``local_files_only=True``), and their SHA-256 are checked against the folder's ``checksums.json``
(:mod:`mxt_sdk.model.checksums`).

:func:`push_folder` uploads a saved model folder to a Hub repository.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mxt_sdk.errors import ConfigError
from mxt_sdk.model.checksums import CHECKSUMS_FILE, UNCOVERED, verify_checksums

log = logging.getLogger(__name__)

#: weight formats that can run code when loaded; never downloaded (model folders use safetensors)
UNSAFE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.h5", "*.msgpack", "*.joblib"]


@dataclass(frozen=True)
class ModelSource:
    """Where a model was loaded from: ``folder`` on disk, and the Hub ``repo_id`` / ``revision`` /
    resolved ``commit`` when it came from the Hub (``None`` for a local folder)."""

    folder: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None

    @property
    def is_hub(self) -> bool:
        return self.repo_id is not None


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub model ID, ``org/name`` (letters, digits, ``-_.``)."""
    from huggingface_hub.utils import validate_repo_id
    from huggingface_hub.errors import HFValidationError

    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _model_entries() -> list[str]:
    """Top-level entries of a model folder (files and folders a save may write, and the card)."""
    from mxt_sdk.model.folder import MODEL_FILES

    return sorted(MODEL_FILES | UNCOVERED)


def _allow_patterns() -> list[str]:
    return [pattern for entry in _model_entries() for pattern in (entry, f"{entry}/*")]


def resolve_model(name: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                  local_files_only: bool | None = None, token: str | bool | None = None) -> ModelSource:
    """The folder of the model ``name``: a local folder, or a Hub ID fetched (or found in the cache).

    ``revision`` (a branch, tag or commit; default ``main``), ``cache_dir``, ``local_files_only`` and
    ``token`` are those of :func:`huggingface_hub.snapshot_download` and apply to Hub IDs only.
    ``local_files_only=None`` follows ``HF_HUB_OFFLINE``. Raises :class:`~mxt_sdk.errors.ConfigError`
    in one line when the model cannot be found or fetched, or when a fetched file fails its checksum.
    """
    text = str(name)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{text!r} is a file; a model is a folder (written by save_pretrained / mxt train) "
                              "or a Hub ID such as 'org/name'.")
        if revision is not None:
            raise ConfigError(f"revision={revision!r} applies to Hub IDs; {text!r} is a local folder.")
        return ModelSource(path)
    if not looks_like_hub_id(text):
        raise ConfigError(f"No model folder {text!r} (and it is not a Hub ID of the form 'org/name').")
    folder, commit = _download(text, revision, cache_dir, local_files_only, token)
    verify_checksums(folder, _model_entries(), f"Hub model {text!r} (revision {revision or 'main'})")
    return ModelSource(folder, text, revision, commit)


def _download(repo_id: str, revision: str | None, cache_dir: str | Path | None, local_files_only: bool | None,
              token: str | bool | None) -> tuple[Path, str | None]:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub import errors as hub_errors

    offline = constants.HF_HUB_OFFLINE if local_files_only is None else local_files_only
    where = f"Hub model {repo_id!r} (revision {revision or 'main'}; no local folder has that name)"
    try:
        folder = snapshot_download(repo_id, repo_type="model", revision=revision, cache_dir=cache_dir,
                                   local_files_only=offline, token=token, allow_patterns=_allow_patterns(),
                                   ignore_patterns=UNSAFE_PATTERNS, library_name="mxt-sdk")
    except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled) as exc:
        cache = cache_dir or constants.HF_HUB_CACHE
        reason = ("offline (HF_HUB_OFFLINE=1 or local_files_only)" if offline else
                  "the Hub could not be reached")
        raise ConfigError(f"{where} could not be fetched: {reason}, and it is not in the cache {cache}. "
                          f"Download it once with network access, or name a local folder. ({type(exc).__name__})"
                          ) from None
    except hub_errors.RepositoryNotFoundError:
        raise ConfigError(f"{where} could not be fetched: no such repository, or it is private and no token "
                          "grants access (log in with `hf auth login` or pass token=...).") from None
    except hub_errors.RevisionNotFoundError:
        raise ConfigError(f"{where} could not be fetched: the repository has no revision "
                          f"{revision or 'main'!r}.") from None
    except hub_errors.HfHubHTTPError as exc:
        raise ConfigError(f"{where} could not be fetched: {exc}".splitlines()[0]) from None
    folder = Path(folder)
    commit = folder.name if folder.parent.name == "snapshots" else None
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{where} is not an mxt_sdk model: the repository has no config.json.")
    log.info("Loaded %s from %s", where, folder)
    return folder, commit


def push_folder(folder: Path, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                commit_message: str | None = None, token: str | bool | None = None) -> str:
    """Upload the saved model ``folder`` to the Hub model repository ``repo_id`` (created if missing;
    ``private`` applies on creation), on branch ``revision`` (created from ``main`` if missing), replacing
    every file of an earlier push. Returns the commit's URL."""
    from huggingface_hub import HfApi

    if not looks_like_hub_id(repo_id):
        raise ConfigError(f"{repo_id!r} is not a Hub ID of the form 'org/name'.")
    if not (Path(folder) / CHECKSUMS_FILE).is_file():
        raise ConfigError(f"{folder} has no {CHECKSUMS_FILE}: save the model with this mxt_sdk before pushing it.")
    api = HfApi(token=token, library_name="mxt-sdk")
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                             commit_message=commit_message or "Upload mxt_sdk model", delete_patterns="*",
                             allow_patterns=_allow_patterns())
    return str(info.commit_url)
