"""The Hugging Face Hub: fetch a repo's files by model id (cached, offline once cached), upload a folder.

It knows repos, not checkpoints: ad.checkpoint says which files a checkpoint has.
"""

import re
from pathlib import Path

from ad.errors import InputError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_repo_id(repo_id):
    if not REPO_ID.match(repo_id):
        raise InputError(f"'{repo_id}': not a checkpoint folder here, nor a Hub model id of the "
                         "form USER/NAME")


def download(repo_id, revision=None, files=None):
    """The local folder holding `files` of `repo_id` (downloaded once, then read from the cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    check_repo_id(repo_id)
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=files))
    except RepositoryNotFoundError:
        raise InputError(f"{repo_id}: no such model on the Hub (or it is private and no token "
                         "was given)") from None
    except RevisionNotFoundError:
        raise InputError(f"{repo_id}: no revision '{revision}' on the Hub") from None
    except LocalEntryNotFoundError:
        raise InputError(f"{repo_id}: not in the local cache and the Hub cannot be reached "
                         "(offline?)") from None
    except (HfHubHTTPError, OSError) as e:
        raise InputError(f"{repo_id}: download failed ({_first_line(e)})") from None


def upload(folder, repo_id, files, private=False, revision=None, token=None):
    """Upload `files` of a local folder; the folder is only read, whatever happens."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    check_repo_id(repo_id)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                   allow_patterns=files, commit_message=f"Upload {Path(folder).name}")
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise InputError(f"push to {repo_id} failed ({_first_line(e)}); the local checkpoint "
                         f"{folder} is unchanged") from None
    return commit.commit_url if hasattr(commit, "commit_url") else str(commit)


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
