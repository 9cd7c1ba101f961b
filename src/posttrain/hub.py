"""`output.push_to_hub`: upload a finished run's model, card and recipe to the Hugging Face Hub.

Checked before any work (offline, not logged in: one line, exit 2), uploaded once the model and
its card are saved. Only what a user of the model needs goes up: weights, config, tokenizer,
card, recipe, summary, plots and a LoRA adapter -- not checkpoints, the warm-started base, cached
teachers, distillation stages, traces or held-out samples.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, constants

from posttrain.errors import ConfigError, PosttrainError

UPLOAD = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.md", "*.yaml", "*.png"]
SKIP = [
    "checkpoints/*",
    "base/*",
    "init-*",
    "teacher/*",
    "build/*",
    "sequence_kd/*",
    "logit_kd/*",
    "*.tmp*",
    ".staging-*",
    "warmstart-tmp/*",
    "topk.safetensors",  # the teacher's stored log-probs: data, not the model
    "*.jsonl",
]


def offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.HF_HUB_OFFLINE or value in {"1", "ON", "YES", "TRUE"}


def check_push(repo_id: str) -> str:
    """Fail now, in one line, if the upload at the end could not happen; returns the Hub user."""
    setting = f"output.push_to_hub={repo_id}"
    if offline():
        raise ConfigError(
            f"{setting}: the Hub is offline here (HF_HUB_OFFLINE is set); unset it, or drop push_to_hub "
            "and upload the run folder later with `hf upload`"
        )
    try:
        who = HfApi().whoami()
    except Exception as e:  # no token, bad token, no network: all mean the upload would fail
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"{setting}: cannot use the Hub ({reason}); log in with `hf auth login` or set HF_TOKEN"
        ) from None
    return who.get("name", "?") if isinstance(who, dict) else "?"


def push(folder: Path, repo_id: str, private: bool, message: str) -> str:
    """Upload the model files of `folder` to `repo_id` (created if missing); returns the commit URL."""
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            commit_message=message,
            allow_patterns=UPLOAD,
            ignore_patterns=SKIP,
        )
    except Exception as e:
        raise PosttrainError(
            f"output.push_to_hub={repo_id}: upload failed ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}); "
            f"the run is saved in {folder}: `hf upload {repo_id} {folder}` retries it"
        ) from None
    return getattr(commit, "commit_url", str(commit))
