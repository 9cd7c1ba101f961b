import json

import pytest

from posttrain.checkpoints import latest_checkpoint
from posttrain.errors import DataError, PosttrainError
from posttrain.io import append_jsonl, atomic_write_json, read_jsonl
from posttrain.outputs import prepare_output_dir


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_torn_last_line_is_ignored_but_middle_is_an_error(tmp_path):
    p = tmp_path / "m.jsonl"
    append_jsonl(p, {"step": 1})
    with open(p, "a") as f:
        f.write('{"step": 2, "lo')
    assert read_jsonl(p) == [{"step": 1}]
    with open(p, "a") as f:
        f.write('\n{"step": 3}\n')
    with pytest.raises(DataError, match=":2: malformed"):
        read_jsonl(p)


def test_output_dir_refuses_existing_run(tmp_path):
    out = prepare_output_dir(tmp_path / "run", resume=False, overwrite=False)
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(PosttrainError, match="--resume"):
        prepare_output_dir(out, resume=False, overwrite=False)
    assert prepare_output_dir(out, resume=True, overwrite=False) == out
    prepare_output_dir(out, resume=False, overwrite=True)
    assert not (out / "metrics.jsonl").exists()


def test_latest_checkpoint_skips_partial(tmp_path):
    for step, complete in [(2, True), (4, True), (6, False)]:
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if complete:
            (d / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert latest_checkpoint(tmp_path / "none") is None
