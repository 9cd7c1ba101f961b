"""Checkpoints appear whole or not at all; rotation and leftovers never leave a half checkpoint-N."""

from posttrain.checkpoints import checkpoint_step, checkpoints, latest_checkpoint, publish, remove_leftovers, rotate


def _checkpoint(folder, step):
    d = folder / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"x" * 10)
    return d


def test_publish_renames_staged_folder_into_place(tmp_path):
    staged = _checkpoint(tmp_path / ".staging-3", 3)
    publish(staged, tmp_path / "checkpoint-3")
    assert latest_checkpoint(tmp_path).name == "checkpoint-3"
    assert not staged.exists() and (tmp_path / "checkpoint-3" / "model.safetensors").read_bytes() == b"x" * 10


def test_publish_replaces_a_checkpoint_saved_twice_at_one_step(tmp_path):
    _checkpoint(tmp_path, 5)
    staged = _checkpoint(tmp_path / ".staging-5", 5)
    (staged / "new").write_text("1")
    publish(staged, tmp_path / "checkpoint-5")
    assert (tmp_path / "checkpoint-5" / "new").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging-5", "checkpoint-5"]


def test_rotate_keeps_newest_by_step_not_by_name(tmp_path):
    for step in (2, 10, 4, 8):
        _checkpoint(tmp_path, step)
    rotate(tmp_path, 2)
    assert [s for s, _ in checkpoints(tmp_path)] == [8, 10]
    assert not any(p.name.startswith(".trash-") for p in tmp_path.iterdir())


def test_leftovers_of_a_killed_save_are_removed_and_never_resumed(tmp_path):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path / ".staging-4", 4)
    (tmp_path / ".trash-checkpoint-1").mkdir()
    assert latest_checkpoint(tmp_path).name == "checkpoint-2"
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert checkpoint_step(tmp_path / "checkpoint-2") == 2
