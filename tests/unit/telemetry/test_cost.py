import pytest

from posttrain.telemetry.cost import HARDWARE_PEAK, Stage, estimate, implied_utilisation, price

# DeepSeek-V3 technical report, table 1: H800 GPU-hours per stage at $2 per GPU-hour.
DSV3_HOURS = {"pre-training": 2664e3, "context extension": 119e3, "post-training": 5e3}
DSV3_ACTIVE = 37e9
DSV3_TOKENS = 14.8e12


def test_deepseek_v3_dollars_per_stage():
    seconds = {k: v * 3600 for k, v in DSV3_HOURS.items()}  # one "device" for the whole cluster's hours
    report = price(seconds, num_devices=1, usd_per_device_hour=2.0)
    assert report["stages"]["pre-training"]["usd"] == pytest.approx(5.328e6)
    assert report["stages"]["context extension"]["usd"] == pytest.approx(0.238e6)
    assert report["stages"]["post-training"]["usd"] == pytest.approx(0.01e6)
    assert report["device_hours"] == pytest.approx(2.788e6)
    assert report["usd"] == pytest.approx(5.576e6)


def test_deepseek_v3_pretraining_flops_round_trip():
    # 6 * 37e9 * 14.8e12 = 3.2856e24 FLOPs; over 2.664M H800-hours that is ~17% of the FP8 peak.
    mfu = implied_utilisation(DSV3_ACTIVE, DSV3_TOKENS, DSV3_HOURS["pre-training"], HARDWARE_PEAK["h800"]["fp8"])
    assert mfu == pytest.approx(3.2856e24 / (2.664e6 * 3600 * 1979e12))
    assert 0.15 < mfu < 0.20
    # ...and estimating at that utilisation gives the reported hours back.
    (cost,) = estimate(
        DSV3_ACTIVE, [Stage("pre-training", train_tokens=DSV3_TOKENS)], HARDWARE_PEAK["h800"]["fp8"], utilisation=mfu
    )
    assert cost.device_hours == pytest.approx(2.664e6)
    assert cost.usd == pytest.approx(5.328e6)


def test_generation_costs_more_per_token_than_its_flops_suggest():
    (train,) = estimate(1e9, [Stage("t", train_tokens=1e9)], 1e15, utilisation=0.4, generation_utilisation=0.1)
    (gen,) = estimate(1e9, [Stage("g", generated_tokens=3e9)], 1e15, utilisation=0.4, generation_utilisation=0.1)
    assert gen.flops == train.flops  # 2·N·3D == 6·N·D
    assert gen.device_hours == pytest.approx(4 * train.device_hours)


def test_bad_utilisation():
    with pytest.raises(ValueError):
        estimate(1, [Stage("x", 1)], 1e12, utilisation=0)


def test_cost_cli_table_and_errors():
    from typer.testing import CliRunner

    from posttrain.cli.app import app

    runner = CliRunner()
    ok = runner.invoke(app, ["cost", "--active-params", "3e9", "--stage", "grpo:1e9:3e9", "--hardware", "h100"])
    assert ok.exit_code == 0 and "grpo" in ok.output and "total" in ok.output
    bad = runner.invoke(app, ["cost", "--active-params", "3e9", "--stage", "grpo"])
    assert bad.exit_code == 2 and "NAME:TRAIN_TOKENS" in bad.output
    bad = runner.invoke(app, ["cost", "--active-params", "3e9", "--stage", "a:1", "--hardware", "tpu"])
    assert bad.exit_code == 2 and "h100" in bad.output
