"""grpo.dynamic_sampling: filter -- rows without learning signal leave the batch before any gradient step."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from posttrain.trl_adapter import FilterNoSignal


class _Generated:
    """Stands in for TRL's `_generate_and_score_completions`: returns a prepared batch."""

    def _generate_and_score_completions(self, inputs):
        return dict(self.batch)


class _Trainer(FilterNoSignal, _Generated):
    def __init__(self, batch, steps_per_generation=1, training=True):
        self.batch = batch
        self.dynamic_sampling = "filter"
        self.args = SimpleNamespace(steps_per_generation=steps_per_generation)
        self.model = SimpleNamespace(training=training)
        self._metrics = {"train": defaultdict(list)}
        self.accelerator = SimpleNamespace(gather=lambda t: t.reshape(1))


def batch(advantages):
    rows = len(advantages)
    mask = torch.ones(rows, 5, dtype=torch.long)
    mask[:, 4] = 0  # 4 completion tokens per row
    return {
        "prompt_ids": torch.arange(rows * 2).reshape(rows, 2),
        "completion_ids": torch.arange(rows * 5).reshape(rows, 5),
        "completion_mask": mask,
        "advantages": torch.tensor(advantages, dtype=torch.float),
        "rollout_experts": torch.zeros(rows, 7, 2, 2),
        "num_items_in_batch": mask.sum(),
    }


def test_zero_advantage_rows_are_dropped_and_tokens_recounted():
    # two groups of 4: the first all-equal rewards (advantage 0), the second with signal
    trainer = _Trainer(batch([0, 0, 0, 0, 1.5, -0.5, -0.5, -0.5]))
    out = trainer._generate_and_score_completions(None)
    assert out["advantages"].tolist() == [1.5, -0.5, -0.5, -0.5]
    assert out["completion_ids"][:, 0].tolist() == [20, 25, 30, 35]  # rows 4..7, in order
    assert out["rollout_experts"].shape[0] == out["prompt_ids"].shape[0] == 4
    assert int(out["num_items_in_batch"]) == 4 * 4  # the kept rows' completion tokens
    assert trainer._metrics["train"]["dynamic_sampling/kept_frac"] == [0.5]


def test_kept_rows_split_evenly_over_steps_per_generation():
    out = _Trainer(batch([0, 0, 0, 0, 0, 1, -1, 0.5]), steps_per_generation=2)._generate_and_score_completions(None)
    assert len(out["advantages"]) == 4 and (out["advantages"] != 0).sum() == 3  # one zero row fills the split


@pytest.mark.parametrize("advantages", [[0.0] * 8, [1, -1, 1, -1]])
def test_no_signal_or_all_signal_leaves_the_batch_whole(advantages):
    original = batch(advantages)
    trainer = _Trainer(original)
    out = trainer._generate_and_score_completions(None)
    assert all(out[k] is original[k] for k in original)
    assert trainer._metrics["train"]["dynamic_sampling/kept_frac"] == [1.0]


def test_per_token_advantages_and_evaluation():
    per_token = torch.zeros(4, 5)
    per_token[2, 1] = 0.3
    b = batch([0, 0, 0, 0])
    b["advantages"] = per_token
    assert _Trainer(b)._generate_and_score_completions(None)["advantages"].shape == (1, 5)
    assert len(_Trainer(batch([0, 0, 1, -1]), training=False)._generate_and_score_completions(None)["advantages"]) == 4
