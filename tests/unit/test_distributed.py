"""posttrain.distributed in one process (every helper is a plain call), and how ranks are read."""

import pytest
import typer

from posttrain import distributed
from posttrain.errors import ConfigError, PosttrainError

LAUNCH_VARS = (
    "RANK",
    "PMI_RANK",
    "OMPI_COMM_WORLD_RANK",
    "MV2_COMM_WORLD_RANK",
    "ACCELERATE_USE_FSDP",
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_DEEPSPEED_ZERO_STAGE",
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_one_process_is_main_and_helpers_are_plain_calls():
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.on_main(lambda: 41 + 1) == 42

    def bad():
        raise ConfigError("bad")

    with pytest.raises(ConfigError, match="bad"):  # the error itself, not a copy
        distributed.on_main(bad)
    assert distributed.share(5) == [0, 1, 2, 3, 4] and distributed.share(0) == []
    assert distributed.gather_shares([0, 1], ["a", "b"]) == ["a", "b"]
    assert distributed.sum_counts({"accuracy": 2}) == {"accuracy": 2}
    distributed.barrier()


def test_launch_rank_reads_the_launchers_variables(clean_env):
    assert distributed.launch_rank() == 0
    clean_env.setenv("PMI_RANK", "3")
    assert distributed.launch_rank() == 3
    clean_env.setenv("RANK", "1")
    assert distributed.launch_rank() == 1


@pytest.mark.parametrize(
    "env, sharded",
    [
        ({}, False),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, False),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, True),
        ({"ACCELERATE_USE_FSDP": "true"}, True),
    ],
)
def test_shards_weights_and_warmstart_refusal(clean_env, env, sharded):
    from posttrain.models.warmstart import refuse_sharded_engine

    for name, value in env.items():
        clean_env.setenv(name, value)
    assert distributed.shards_weights() is sharded
    if sharded:
        with pytest.raises(
            ConfigError, match=r"model.warmstart: .*recipes/accelerate/ddp.yaml.*model.warmstart.steps=0"
        ):
            refuse_sharded_engine("model.warmstart")
    else:
        refuse_sharded_engine("model.warmstart")


def test_errors_print_once_per_launch(clean_env, capsys):
    from posttrain.cli.common import run_or_exit

    def fail(shown_by_main):
        error = PosttrainError("output.dir already holds a run")
        if shown_by_main:
            error.shown_by_main = True
        raise error

    clean_env.setenv("RANK", "1")
    with pytest.raises(typer.Exit):
        run_or_exit(lambda: fail(shown_by_main=True))  # the main process printed it
    assert capsys.readouterr().err == ""
    with pytest.raises(typer.Exit):
        run_or_exit(lambda: fail(shown_by_main=False))  # this process's own problem
    assert capsys.readouterr().err == "error (rank 1): output.dir already holds a run\n"
    clean_env.setenv("RANK", "0")
    with pytest.raises(typer.Exit):
        run_or_exit(lambda: fail(shown_by_main=False))
    assert capsys.readouterr().err == "error: output.dir already holds a run\n"


def test_console_is_quiet_off_the_main_process(clean_env):
    from posttrain.cli.common import console

    assert not console().quiet
    clean_env.setenv("RANK", "2")
    assert console().quiet
