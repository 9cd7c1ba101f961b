"""--push-to-hub: refused in one line before any work when the Hub is out of reach; otherwise the
model, its card and recipe go up (huggingface_hub mocked at its boundary), checkpoints do not."""

from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.utils import filter_repo_objects
from typer.testing import CliRunner

from posttrain.cli.app import app
from posttrain.hub import SKIP, UPLOAD

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/tiny-math.yaml")
runner = CliRunner()


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def test_offline_push_fails_in_one_line_before_any_work(quick_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["grpo", RECIPE, *_sets(quick_overrides), "--push-to-hub", "me/tiny-grpo"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "output.push_to_hub=me/tiny-grpo" in result.output
    assert "offline" in result.output
    assert not (tmp_path / "run").exists()  # nothing built, nothing trained


def test_push_without_a_login_or_network_fails_before_any_work(quick_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def no_network(self, *args, **kwargs):
        raise OSError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", no_network)
    result = runner.invoke(app, ["grpo", RECIPE, *_sets(quick_overrides), "--push-to-hub", "me/tiny-grpo"])
    assert result.exit_code == 2 and "Failed to resolve 'huggingface.co'" in result.output
    assert "hf auth login" in result.output and not (tmp_path / "run").exists()


def test_bad_repo_id_is_a_recipe_error(quick_overrides):
    result = runner.invoke(app, ["grpo", RECIPE, *_sets(quick_overrides), "--push-to-hub", "no slash", "--dry-run"])
    assert result.exit_code == 2 and "output.push_to_hub" in result.output


@pytest.mark.slow
def test_push_uploads_the_model_card_and_recipe_but_not_checkpoints(quick_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    calls = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", lambda self, *a, **k: {"name": "me"})
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw))
    )

    def upload_folder(self, **kwargs):
        calls["upload"] = kwargs
        return huggingface_hub.CommitInfo(
            commit_url="https://huggingface.co/me/tiny-grpo/commit/abc",
            commit_message=kwargs["commit_message"],
            commit_description="",
            oid="abc",
        )

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    sets = [*_sets(quick_overrides), "--set", "output.save_steps=1", "--push-to-hub", "me/tiny-grpo"]
    result = runner.invoke(app, ["grpo", RECIPE, *sets])
    assert result.exit_code == 0, result.output
    assert "uploaded to the Hub: https://huggingface.co/me/tiny-grpo/commit/abc" in result.output
    assert calls["create"] == ("me/tiny-grpo", {"private": True, "exist_ok": True, "repo_type": "model"})

    upload = calls["upload"]
    out = Path(upload["folder_path"])
    assert out == tmp_path / "run" and upload["repo_id"] == "me/tiny-grpo"
    assert upload["commit_message"].startswith("posttrain GRPO, 2 steps: held-out pass@1 ")
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    sent = set(
        filter_repo_objects(files, allow_patterns=upload["allow_patterns"], ignore_patterns=upload["ignore_patterns"])
    )
    assert upload["allow_patterns"] == UPLOAD and upload["ignore_patterns"] == SKIP
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "recipe.yaml", "summary.json"} <= sent
    assert any(f.startswith("checkpoints/") for f in files) and any(f.startswith("base/") for f in files)
    assert not any(f.startswith(("checkpoints/", "base/", "init-")) or f.endswith(".jsonl") for f in sent), sent
