"""The GRPO time split: stage seconds from wrapped methods, optimisation as the remainder, per log."""

from types import SimpleNamespace

import pytest

from posttrain.telemetry.step_split import StepSplit, attach, split_line


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeTrainer:
    """Stands in for GRPOTrainer: each call advances the fake clock by a fixed time."""

    def __init__(self, clock, generate=3.0, reward=0.5):
        self.clock, self.generate_s, self.reward_s = clock, generate, reward

    def _generate(self, prompts):
        self.clock.now += self.generate_s
        return [p + "!" for p in prompts]

    def _calculate_rewards(self, inputs, prompts, completions, ids):
        self.clock.now += self.reward_s
        return [1.0] * len(completions)


def _step(split, trainer, clock, optimise=1.5, generate=True):
    split.on_step_begin(None, None, None)
    if generate:
        completions = trainer._generate(["a", "b"])
        assert completions == ["a!", "b!"]  # the wrapped method still returns its result
        trainer._calculate_rewards(None, None, completions, None)
    clock.now += optimise
    split.on_step_end(None, None, None)


def test_split_is_mean_per_step_since_last_log_and_sums_to_step_time():
    clock = FakeClock()
    split, trainer = StepSplit(clock), FakeTrainer(clock)
    split.watch(trainer)
    _step(split, trainer, clock)  # 3 + 0.5 + 1.5 = 5 s
    _step(split, trainer, clock, generate=False)  # steps_per_generation > 1: no rollout, 1.5 s
    logs = {"loss": 0.1}
    split.on_log(None, None, None, logs=logs)
    assert logs["time/generation_s"] == pytest.approx(1.5)
    assert logs["time/reward_s"] == pytest.approx(0.25)
    assert logs["time/optimisation_s"] == pytest.approx(1.5)
    assert logs["time/generation_frac"] + logs["time/reward_frac"] + logs["time/optimisation_frac"] == pytest.approx(
        1.0
    )
    assert logs["time/generation_frac"] == pytest.approx(1.5 / 3.25)

    _step(split, trainer, clock, optimise=0.5)  # the next interval starts from zero
    logs = {}
    split.on_log(None, None, None, logs=logs)
    assert (logs["time/generation_s"], logs["time/optimisation_s"]) == pytest.approx((3.0, 0.5))


def test_time_outside_steps_and_end_summary_are_ignored():
    clock = FakeClock()
    split, trainer = StepSplit(clock), FakeTrainer(clock)
    split.watch(trainer)
    trainer._generate(["x"])  # an evaluation between steps: not a training step's time
    _step(split, trainer, clock)
    summary = {"train_runtime": 9.0}
    split.on_log(None, None, None, logs=summary)
    assert summary == {"train_runtime": 9.0}
    logs = {}
    split.on_log(None, None, None, logs=logs)
    assert logs["time/generation_s"] == pytest.approx(3.0)
    again = {}
    split.on_log(None, None, None, logs=again)  # nothing since: no keys rather than zeros
    assert again == {}


def test_watch_wraps_only_that_instance_and_attach_finds_the_callback():
    clock = FakeClock()
    split, watched, other = StepSplit(clock), FakeTrainer(clock), FakeTrainer(clock)
    watched.callback_handler = SimpleNamespace(callbacks=[object(), split])
    attach(watched)
    split.on_step_begin(None, None, None)
    other._generate(["a"])  # another trainer in the process (the benchmark's plain TRL run)
    watched._calculate_rewards(None, None, ["a"], None)
    split.on_step_end(None, None, None)
    logs = {}
    split.on_log(None, None, None, logs=logs)
    assert logs["time/generation_s"] == 0.0 and logs["time/reward_s"] == pytest.approx(0.5)
    assert "_generate" not in vars(other)


def test_missing_method_warns_and_counts_as_optimisation(caplog):
    split = StepSplit(FakeClock())
    split.watch(SimpleNamespace(_generate=lambda prompts: prompts))
    assert "_calculate_rewards" in caplog.text


def test_split_line():
    assert split_line({}) == ""
    line = split_line({"time/generation_frac": 0.5, "time/reward_frac": 0.1, "time/optimisation_frac": 0.4})
    assert line == "gen 50% rew 10% opt 40%"
