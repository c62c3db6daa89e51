"""``hisyngen push``: upload a Hugging Face export folder to a dataset repository on the Hub.

The folder already is what the Hub serves (parquet shards of each subset, card, label files), so pushing is:
create the repository (and branch), upload the folder in one commit (the client first has the Hub
validate the card's YAML).
Every failure a user can fix becomes a one-line :class:`~hisyngen.errors.HisynError`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hisyngen.errors import HisynError
from hisyngen.export.hf import SUBSET_FOLDERS
from hisyngen.export.hf_card import LICENSE_FILE, LICENSE_FILE_MARKER
from hisyngen.safety import OWN_FILES

REPO_TYPE = "dataset"


def check_hf_export(folder: Path) -> None:
    """Refuse anything but a folder written by ``hisyngen export --format hf``."""
    if not folder.is_dir():
        raise HisynError(f"{folder} is not a folder")
    if (folder / "metainfo.json").is_file():
        raise HisynError(f"{folder} is an MMSeg export; push needs `hisyngen export --format hf`")
    missing = [name for name in ("README.md", "id2label.json") if not (folder / name).is_file()]
    if not any(any((folder / sub).glob("*.parquet")) for sub in SUBSET_FOLDERS.values()):
        missing.append(" or ".join(f"{sub}/*.parquet" for sub in SUBSET_FOLDERS.values()))
    if missing:
        raise HisynError(f"{folder} is not a Hugging Face export (no {', '.join(missing)}); "
                         "make one with `hisyngen export ... --format hf`")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of whichever HTTP client huggingface_hub uses (httpx2, httpx or requests)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _remote_license_is_ours(api, repo_id: str, revision: str | None) -> bool:
    """Whether the repo's LICENSE.md is one hisyngen wrote (a user's own file is never deleted)."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        path = api.hf_hub_download(repo_id, LICENSE_FILE, repo_type=REPO_TYPE, revision=revision)
    except EntryNotFoundError:
        return False
    except HfHubHTTPError as exc:  # a 404 without the Hub's error code is a missing file too
        if exc.response is not None and exc.response.status_code == 404:
            return False
        raise
    return LICENSE_FILE_MARKER in Path(path).read_text(encoding="utf-8", errors="replace")


def push_export(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                revision: str | None = None) -> str:
    """Upload the HF export ``folder`` to the dataset repo ``repo_id``; returns its URL.

    The token is ``token`` or the usual lookup (``HF_TOKEN``, ``hf auth login``). An existing repo
    of yours is updated (one new commit that also removes shards the folder no longer has);
    ``revision`` names a branch, created when missing.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, OfflineModeIsEnabled
    from huggingface_hub.utils import validate_repo_id

    folder = Path(folder)
    check_hf_export(folder)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise HisynError(f"--repo-id {repo_id!r} is not a valid repository name: {exc}") from None
    if "/" not in repo_id:
        raise HisynError(f"--repo-id must be NAMESPACE/NAME (your user or organisation), got {repo_id!r}")
    token = token or get_token()
    if not token:
        raise HisynError("no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login`")
    api = HfApi(token=token)
    where = f"{REPO_TYPE} {repo_id}"
    try:
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        # create_repo(exist_ok=True) leaves an existing repo's visibility as it is: --private must
        # never upload into a public repository.
        if private and api.repo_info(repo_id, repo_type=REPO_TYPE).private is False:
            raise HisynError(f"{where} already exists and is public; --private would publish the data there. "
                             "Make it private on the Hub first, or push without --private")
        if revision and revision != "main":
            api.create_branch(repo_id, repo_type=REPO_TYPE, branch=revision, exist_ok=True)
        # delete_patterns: shards of an earlier push that this export does not have would still
        # match the card's `<subset folder>/<split>-*` globs and be loaded as duplicate rows; and a
        # LICENSE.md that hisyngen wrote for `license: other` would outlive a later real license.
        stale = [f"{sub}/*" for sub in SUBSET_FOLDERS.values()]
        if not (folder / LICENSE_FILE).is_file() and _remote_license_is_ours(api, repo_id, revision):
            stale.append(LICENSE_FILE)
        try:
            api.upload_folder(repo_id=repo_id, repo_type=REPO_TYPE, folder_path=folder, revision=revision,
                              delete_patterns=stale,
                              ignore_patterns=sorted(OWN_FILES),  # local bookkeeping
                              commit_message=f"Upload {folder.name} with hisyngen")
        except HfHubHTTPError:
            raise  # some are ValueErrors too (400); handled below
        except ValueError as exc:  # the client has the Hub validate the card's YAML first; its reasons follow
            raise HisynError(f"the Hub rejects {folder / 'README.md'}: {' '.join(str(exc).split())}") from None
    except OfflineModeIsEnabled:
        raise HisynError("HF_HUB_OFFLINE is set: unset it to push to the Hub") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise HisynError(f"the Hub at {api.endpoint} rejected the token (401): check --token or HF_TOKEN") from None
        if status in (403, 409):
            raise HisynError(f"cannot write to {where} ({status}): the name is taken by someone else "
                             "or your token has no write access to that namespace; choose another --repo-id") from None
        raise HisynError(f"the Hub refused the push to {where}: {str(exc).splitlines()[0]}") from None
    except _transport_errors() as exc:
        raise HisynError(f"cannot reach the Hugging Face Hub at {api.endpoint} ({exc}); "
                         "check the network or HF_ENDPOINT") from None
    url = f"{api.endpoint}/datasets/{repo_id}"
    return url if not revision or revision == "main" else f"{url}/tree/{revision}"
