"""recipes/accelerate/*.yaml: accelerate's own loader reads them, and they set only options `accelerate launch` has."""

from pathlib import Path

import pytest

DIR = Path(__file__).resolve().parents[3] / "recipes" / "accelerate"
# file -> (distributed_type, ZeRO stage or FSDP version)
CONFIGS = {
    "ddp.yaml": ("MULTI_GPU", None),
    "zero2.yaml": ("DEEPSPEED", 2),
    "zero3.yaml": ("DEEPSPEED", 3),
    "fsdp2.yaml": ("FSDP", 2),
}


def test_the_four_engines_have_a_config():
    assert sorted(p.name for p in DIR.glob("*.yaml")) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_loads_with_accelerate_and_opens_with_its_command(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    path = DIR / name
    assert (
        path.read_text().splitlines()[0]
        == f"# accelerate launch --config_file recipes/accelerate/{name} -m posttrain grpo recipes/math.yaml"
    )
    cfg = load_config_from_file(str(path))  # a misspelt top-level key raises here
    assert isinstance(cfg, ClusterConfig)
    kind, level = CONFIGS[name]
    assert cfg.distributed_type.value == kind
    assert cfg.deepspeed_config.get("zero_stage") == (level if kind == "DEEPSPEED" else None)
    assert cfg.fsdp_config.get("fsdp_version") == (level if kind == "FSDP" else None)
    assert (cfg.num_processes, cfg.num_machines, cfg.machine_rank, cfg.mixed_precision) == (8, 1, 0, "bf16")
    assert not cfg.use_cpu and cfg.main_process_port == 29500

    # The launcher copies nested keys onto its own options and ignores unknown ones silently.
    options = {action.dest for action in launch_command_parser()._actions}
    for key in [*cfg.deepspeed_config, *cfg.fsdp_config]:
        assert key in options, f"{name}: {key} is not an `accelerate launch` option"
    launch_command_parser().parse_args(
        ["--config_file", str(path), "--machine_rank", "1", "-m", "posttrain", "grpo", "recipes/math.yaml"]
    )
