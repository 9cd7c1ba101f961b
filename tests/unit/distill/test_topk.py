"""Top-k teacher targets: tokenisation alignment, storage, the coarsened divergence and its gap."""

import math

import pytest
import torch

from posttrain.distill.topk import TopKTargets, _GapAccumulator, capture, coarsen, encode_trace, topk_divergence


def test_encoded_trace_is_prompt_then_completion_then_end(char_tokenizer):
    prompt = [{"role": "user", "content": "1+2"}]
    ids, start = encode_trace(char_tokenizer, prompt, "<think>1+2=3</think><answer>3</answer>")
    assert char_tokenizer.decode(ids[:start]) == "<|user|>1+2<|end|><|assistant|>"
    assert char_tokenizer.decode(ids[start:]).startswith("<think>1+2=3</think>")
    assert ids[-1] == char_tokenizer.eos_token_id  # the student learns to stop
    ids, start = encode_trace(char_tokenizer, "1+2", "3")
    assert ids[start:] == [char_tokenizer.convert_tokens_to_ids("3"), char_tokenizer.eos_token_id]


def test_coarsened_distribution_sums_to_one():
    logp = torch.log_softmax(torch.randn(3, 20), -1)
    top = logp.topk(5, -1).values
    assert torch.allclose(coarsen(top).exp().sum(-1), torch.ones(3), atol=1e-5)
    near_all = torch.log(torch.tensor([[0.5, 0.5 - 1e-12]]))
    assert torch.isfinite(coarsen(near_all)).all()  # no log(0) when the top-k hold all the mass


def _logits(seed, shape=(2, 4, 12), scale=3.0):
    torch.manual_seed(seed)
    return torch.randn(*shape) * scale


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_full_vocab_targets_reproduce_trl_loss(beta):
    from posttrain.distill.topk import gkd_trainer_class

    student, teacher = _logits(0), _logits(1)
    labels = torch.zeros(2, 4, dtype=torch.long)
    labels[0, 0] = -100
    full = torch.log_softmax(teacher, -1).topk(12, -1)
    ours = topk_divergence(student, full.indices, full.values, labels, beta)
    trl = gkd_trainer_class().generalized_jsd_loss(student, teacher, labels=labels, beta=beta)
    assert float(ours) == pytest.approx(float(trl), rel=1e-4, abs=1e-5)


def test_topk_forward_kl_is_a_lower_bound_and_gap_is_exact_for_uniform_rest():
    k, vocab = 4, 12
    t_logp = torch.log_softmax(_logits(2, (1, 6, vocab)), -1)
    top = t_logp.topk(k, -1)
    labels = torch.zeros(1, 6, dtype=torch.long)
    student = _logits(3, (1, 6, vocab))
    full = float(topk_divergence(student, t_logp.topk(vocab, -1).indices, t_logp.topk(vocab, -1).values, labels, 0.0))
    assert float(topk_divergence(student, top.indices, top.values, labels, 0.0)) <= full + 1e-6

    # A student equal to the teacher on the top-k and flat elsewhere: full KL - top-k KL = the gap.
    rest = 1 - top.values.exp().sum(-1, keepdim=True)
    s_prob = torch.full_like(t_logp, 0.0) + rest / (vocab - k)
    s_prob.scatter_(-1, top.indices, top.values.exp())
    s_logits = s_prob.log()
    gap_full = float(
        topk_divergence(s_logits, t_logp.topk(vocab, -1).indices, t_logp.topk(vocab, -1).values, labels, 0.0)
    )
    gap_topk = float(topk_divergence(s_logits, top.indices, top.values, labels, 0.0))
    acc = _GapAccumulator(k)
    acc.add(t_logp[0], t_logp[0].topk(vocab, -1).values)
    summary = acc.summary()
    assert summary["k"] == k and summary["tokens"] == 6
    assert summary["kl_gap_nats"] == pytest.approx(gap_full - gap_topk, abs=1e-4)
    assert summary["teacher_mass"] == pytest.approx(float(top.values.exp().sum(-1).mean()), abs=1e-5)
    assert (
        summary["by_k"][1]["teacher_mass"] <= summary["by_k"][4]["teacher_mass"] <= summary["by_k"][8]["teacher_mass"]
    )


def test_targets_round_trip(tmp_path):
    targets = TopKTargets(
        torch.tensor([[1, 2], [3, 4], [5, 6]]),
        torch.log(torch.tensor([[0.5, 0.25], [0.9, 0.05], [0.6, 0.3]])),
        torch.tensor([0, 1, 3]),
    )
    targets.save(tmp_path / "t.safetensors")
    back = TopKTargets.load(tmp_path / "t.safetensors")
    assert back.k == 2 and back.rows(1)[0].tolist() == [[3, 4], [5, 6]]
    assert torch.allclose(back.logprobs, targets.logprobs)


def test_capture_reads_the_positions_that_predict_completion_tokens(char_tokenizer, tiny_moe_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)
    encoded = [
        encode_trace(char_tokenizer, [{"role": "user", "content": q}], c)
        for q, c in [("1+2", "3"), ("10+20+3", "<answer>33</answer>")]
    ]
    targets, gap = capture(model, encoded, k=3, pad_id=char_tokenizer.pad_token_id, batch_size=2)
    ids, start = encoded[1]
    assert len(targets.offsets) == 3 and targets.rows(1)[0].shape == (len(ids) - start, 3)
    with torch.inference_mode():
        ref = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
    expected = ref[start - 1 : len(ids) - 1].topk(3, -1)
    assert torch.equal(targets.rows(1)[0], expected.indices)
    assert torch.allclose(targets.rows(1)[1], expected.values, atol=1e-4)
    assert gap["tokens"] == sum(len(i) - s for i, s in encoded) and 0 < gap["teacher_mass"] < 1
    assert not math.isnan(gap["kl_gap_nats"])
