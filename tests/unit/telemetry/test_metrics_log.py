"""A resumed stage drops its rows past the checkpoint, keeps other stages' rows, and logs each step once."""

import json
from types import SimpleNamespace

from posttrain.telemetry.metrics_log import MetricsLogger, StepTimer, truncate_stage


def _write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def _steps(path, stage):
    return [r["step"] for r in map(json.loads, path.read_text().splitlines()) if r["stage"] == stage]


def test_truncate_keeps_other_stages_and_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(
        path,
        [{"step": s, "stage": "sequence_kd"} for s in (10, 20)]
        + [{"step": s, "stage": "logit_kd"} for s in (5, 10, 15)],
    )
    kept = truncate_stage(path, "logit_kd", 10)
    assert [r["step"] for r in kept] == [5, 10]
    assert _steps(path, "sequence_kd") == [10, 20] and _steps(path, "logit_kd") == [5, 10]


def test_resumed_logger_writes_each_step_exactly_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    # a killed run logged steps 1..6 but checkpointed at 4, and tore its last line
    _write(path, [{"step": s, "stage": "grpo", "loss": 0.0} for s in range(1, 7)], tail='{"step": 7, "sta')
    logger = MetricsLogger(path, StepTimer(), stage="grpo", start_step=4)
    state = SimpleNamespace(is_world_process_zero=True, global_step=4)
    logger.on_train_begin(None, state, None)
    assert [r["step"] for r in logger.rows] == [1, 2, 3, 4]
    for step in (5, 6, 7):
        state.global_step = step
        logger.on_log(None, state, None, logs={"loss": 1.0})
    assert _steps(path, "grpo") == [1, 2, 3, 4, 5, 6, 7]
    assert [r["loss"] for r in map(json.loads, path.read_text().splitlines())][4:] == [1.0, 1.0, 1.0]


def test_rows_are_fsynced_before_each_checkpoint_and_at_the_end_only(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr("os.fsync", lambda fd: synced.append(fd))
    logger = MetricsLogger(tmp_path / "metrics.jsonl", StepTimer(), stage="grpo")
    state = SimpleNamespace(is_world_process_zero=True, global_step=0)
    logger.on_train_begin(None, state, None)
    for step in range(1, 7):  # a checkpoint every 3 steps, a log every step
        state.global_step = step
        control = SimpleNamespace(should_save=step % 3 == 0)
        logger.on_step_end(None, state, control)
        logger.on_log(None, state, control, logs={"loss": 1.0})
    assert len(synced) == 4  # steps 3 and 6: the rows before the step's log, then its log row
    logger.on_train_end(None, state, None)
    assert len(synced) == 5
    assert _steps(tmp_path / "metrics.jsonl", "grpo") == [1, 2, 3, 4, 5, 6]
