"""`--report-to tensorboard` for real: the event files are read back and checked against metrics.jsonl."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from posttrain.cli.app import app
from posttrain.errors import ConfigError
from posttrain.telemetry import tracking
from posttrain.telemetry.metrics_log import RENAMES

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
NOT_FROM_LOGS = {"step", "stage", "time"}  # metrics.jsonl's own bookkeeping
TRL_NAME = {ours: theirs for theirs, ours in RENAMES.items()}


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def _scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of every event file in `folder`."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def _assert_rows_match(rows: list[dict], scalars: dict[str, dict[int, float]]) -> int:
    """Every number of every metrics.jsonl row is the TensorBoard scalar of the same name at the same step."""
    checked = 0
    for row in rows:
        for key, value in row.items():
            if key in NOT_FROM_LOGS or not isinstance(value, int | float):
                continue
            tag = f"train/{TRL_NAME.get(key, key)}"
            assert tag in scalars, f"{key} is in metrics.jsonl but not in TensorBoard"
            assert scalars[tag][row["step"]] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, row["step"])
            checked += 1
    return checked


@pytest.mark.slow
def test_grpo_run_reports_to_tensorboard_what_metrics_jsonl_holds(quick_overrides, tmp_path):
    recipe = str(REPO / "recipes/tiny-math.yaml")
    result = runner.invoke(app, ["grpo", recipe, *_sets(quick_overrides), "--report-to", "tensorboard"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(out / "runs" / "grpo")
    assert _assert_rows_match(rows, scalars) > 20
    # our callbacks' keys reach the tracker, not only TRL's
    assert {"train/moe/max_vio_mean", "train/time/generation_s", "train/step_seconds"} <= set(scalars)

    warm = _scalars(out / "runs" / "warmstart")  # the warm-start SFT is a stage of its own
    assert sorted(warm["train/loss"]) == [1, 2, 3]

    summary = json.loads((out / "summary.json").read_text())
    figures = _scalars(out / "runs" / "summary")
    assert figures["train/final_accuracy"] == {2: pytest.approx(summary["final_accuracy"])}
    assert figures["train/base_greedy_accuracy"][2] == pytest.approx(summary["base_greedy_accuracy"])
    assert figures["train/stage_seconds/grpo"][2] == pytest.approx(summary["stage_seconds"]["grpo"], rel=1e-5)
    assert figures["train/cost/usd"][2] == pytest.approx(summary["cost"]["usd"], rel=1e-5, abs=1e-9)


@pytest.mark.slow
def test_distill_stages_report_to_tensorboard(distill_overrides, tmp_path):
    recipe = str(REPO / "recipes/tiny-distill.yaml")
    result = runner.invoke(app, ["distill", recipe, *_sets(distill_overrides), "--report-to", "tensorboard"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for stage in ("sequence_kd", "logit_kd"):
        mine = [r for r in rows if r["stage"] == stage]
        assert mine and _assert_rows_match(mine, _scalars(out / "runs" / stage)) >= 2 * len(mine)
    assert sorted(_scalars(out / "runs" / "teacher_warmstart")["train/loss"]) == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    figures = _scalars(out / "runs" / "summary")
    assert figures["train/student/accuracy"][0] == pytest.approx(summary["student"]["accuracy"])


def test_a_tracker_that_is_not_installed_is_refused_before_any_work(quick_overrides, tmp_path, monkeypatch):
    real = tracking.find_spec
    monkeypatch.setattr(tracking, "find_spec", lambda name: None if name == "mlflow" else real(name))
    recipe = str(REPO / "recipes/tiny-math.yaml")
    result = runner.invoke(app, ["grpo", recipe, *_sets(quick_overrides), "--report-to", "tensorboard,mlflow"])
    assert result.exit_code == 2
    assert "output.report_to: mlflow is not installed (pip install mlflow)" in result.output
    assert not (tmp_path / "run").exists()  # nothing was started


def test_wandb_without_a_login_is_refused_unless_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(tracking, "find_spec", lambda name: object())  # as if installed
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="wandb has no login here"):
        tracking.check_trackers(["wandb"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracking.check_trackers(["wandb"])


@pytest.mark.parametrize(
    ("given", "expected"),
    [("none", []), ("tensorboard", ["tensorboard"]), ("tensorboard, wandb", ["tensorboard", "wandb"])],
)
def test_report_to_takes_a_list_a_comma_string_or_none(given, expected):
    from posttrain.config.schema import OutputConfig

    assert OutputConfig(report_to=given).report_to == expected


def test_an_unknown_tracker_is_refused_by_the_recipe(tmp_path):
    result = runner.invoke(app, ["grpo", str(REPO / "recipes/tiny-math.yaml"), "--report-to", "comet", "--dry-run"])
    assert result.exit_code == 2 and "report_to" in result.output
