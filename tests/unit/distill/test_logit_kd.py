"""Logit-KD batches and checks: labels on the completion, targets aligned, one tokenizer."""

import pytest
import torch

from posttrain.distill.logit_kd import TokenizerMismatch, check_shared_tokenizer, check_targets, encode_rows
from posttrain.distill.topk import TopKTargets
from posttrain.errors import PosttrainError

TRACES = [
    {"prompt": [{"role": "user", "content": "1+2"}], "completion": "<answer>3</answer>"},
    {
        "prompt": [{"role": "user", "content": "10+20+30"}],
        "completion": "<think>10+20=30 30+30=60</think><answer>60</answer>",
    },
]


def _targets(rows, k=2):
    counts = [r["completion_len"] for r in rows]
    total = sum(counts)
    ids = torch.arange(total * k).reshape(total, k) % 50
    return TopKTargets(ids, torch.full((total, k), -0.5), torch.tensor([0, *counts]).cumsum(0))


def test_collator_pads_labels_prompts_and_aligns_targets(char_tokenizer):
    from posttrain.distill.kd_trainers import TraceCollator

    rows = encode_rows(char_tokenizer, TRACES, max_length=512)
    targets = _targets(rows)
    batch = TraceCollator(char_tokenizer.pad_token_id, targets)(rows)
    width = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == (2, width) and batch["target_ids"].shape == (2, width, 2)
    for i, row in enumerate(rows):
        n, start = len(row["input_ids"]), row["prompt_len"]
        assert batch["labels"][i, :start].eq(-100).all() and batch["labels"][i, n:].eq(-100).all()
        assert batch["labels"][i, start:n].tolist() == row["input_ids"][start:]
        assert batch["attention_mask"][i].sum() == n
        # left-padded prompts for on-policy sampling end where generation starts
        assert batch["prompts"][i, -start:].tolist() == row["input_ids"][:start]
        # position p holds the target for token p + 1: the first completion token is predicted at start - 1
        assert torch.equal(batch["target_ids"][i, start - 1 : n - 1], targets.rows(i)[0])
    shifted = batch["labels"][:, 1:] != -100
    assert (batch["target_logprobs"][:, :-1][shifted] == -0.5).all()


def test_offline_loss_runs_on_a_batch(char_tokenizer):
    from posttrain.distill.kd_trainers import TraceCollator
    from posttrain.distill.topk import topk_divergence

    rows = encode_rows(char_tokenizer, TRACES, max_length=512)
    batch = TraceCollator(char_tokenizer.pad_token_id, _targets(rows))(rows)
    logits = torch.randn(*batch["input_ids"].shape, len(char_tokenizer), requires_grad=True)
    loss = topk_divergence(
        logits[:, :-1], batch["target_ids"][:, :-1], batch["target_logprobs"][:, :-1], batch["labels"][:, 1:], 0.0
    )
    loss.backward()
    assert torch.isfinite(loss) and logits.grad.abs().sum() > 0


def test_long_traces_are_cut_and_stored_targets_must_match(char_tokenizer, tmp_path):
    rows = encode_rows(char_tokenizer, TRACES, max_length=20)
    assert all(len(r["input_ids"]) <= 20 for r in rows)
    check_targets(rows, TRACES, _targets(rows), tmp_path / "topk.safetensors")
    wrong = _targets(rows)
    wrong.offsets = wrong.offsets.clone()
    wrong.offsets[1:] += 1
    with pytest.raises(PosttrainError, match="tokenizer changed"):
        check_targets(rows, TRACES, wrong, tmp_path / "topk.safetensors")


def test_different_tokenizers_are_refused_with_the_way_out(char_tokenizer):
    from posttrain.models.tokenizer import build_char_tokenizer

    other = build_char_tokenizer()
    other.add_tokens(["<extra>"])
    check_shared_tokenizer(char_tokenizer, build_char_tokenizer(), "teacher T", "student S")
    with pytest.raises(TokenizerMismatch) as err:
        check_shared_tokenizer(char_tokenizer, other, "teacher T", "student S")
    msg = str(err.value)
    assert "teacher T has 106 tokens and student S has 107" in msg and "distill.logit_kd.enabled=false" in msg


@pytest.mark.parametrize("teacher", ["offline", "online"])
def test_moe_aux_loss_is_added_to_the_kd_loss(char_tokenizer, tmp_path, teacher):
    """moe.balancing=aux_loss: the KD losses replace SFTTrainer's NLL, which is where TRL adds the router
    loss, so both logit-KD trainers add it themselves (a Qwen3-MoE student: its forward computes one)."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    from posttrain.config.distill_schema import LogitKDConfig
    from posttrain.distill.kd_trainers import TraceCollator
    from posttrain.distill.logit_kd import build_trainer, kd_args

    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=len(char_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        moe_intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        num_experts=4,
        num_experts_per_tok=2,
        pad_token_id=char_tokenizer.pad_token_id,
    )
    student = Qwen3MoeForCausalLM(config).train()
    teacher_model = Qwen3MoeForCausalLM(config) if teacher == "online" else None
    rows = encode_rows(char_tokenizer, TRACES, max_length=512)
    targets = _targets(rows) if teacher == "offline" else None
    cfg = LogitKDConfig(teacher=teacher, max_steps=1, per_device_train_batch_size=2)
    batch = TraceCollator(char_tokenizer.pad_token_id, targets)(rows)

    def kd_loss(coef):
        args = kd_args(
            cfg,
            tmp_path,
            max_new_tokens=8,
            max_length=512,
            precision="fp32",
            seed=0,
            logging_steps=1,
            save_steps=0,
            save_total_limit=1,
            aux_loss_coef=coef,
        )
        trainer = build_trainer(student, char_tokenizer, rows, cfg, args, targets=targets, teacher=teacher_model)
        return trainer.compute_loss(student, dict(batch)).item(), trainer._metrics["train"]["aux_loss"]

    plain, none_logged = kd_loss(0.0)
    weighted, (aux,) = kd_loss(0.5)
    assert not none_logged and aux > 0
    assert weighted == pytest.approx(plain + 0.5 * aux, rel=1e-5)
