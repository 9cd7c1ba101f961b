"""Routing replay (posttrain.models.replay) on every router family: recording during cached generation,
alignment to the trainer's layout, replay that leaves the gate weights (and their gradient) live,
gradient-checkpoint recomputation, loud misalignment, and the eval probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posttrain.config.builders import MOE_FAMILIES
from posttrain.evaluate.sampling import SamplingSettings, generate_batches
from posttrain.models.builders import build_model
from posttrain.models.moe import RoutingCounter, find_moe_layers, gate_weights, install_selection_bias
from posttrain.models.replay import DecodeMismatch, RoutingMismatchError, RoutingReplay

TINY = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "tiny_models.json").read_text())["tiny_moe"]
PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]  # unequal lengths: left padding in generation


def family_model(family: str, char_tokenizer):
    return build_model("tiny-moe", char_tokenizer, seed=0, family=family, **TINY).eval()


def rollout_batch(model, replay: RoutingReplay, pad: int, cut: int = 3):
    """Generate 6 tokens for PROMPTS under recording; the second completion stops early (an EOS at
    `cut`). Returns (rollout, input_ids, attention_mask, completion width) in TRL's training layout."""
    width = max(map(len, PROMPTS))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in PROMPTS])
    mask = (ids != pad).long()
    torch.manual_seed(0)
    with torch.no_grad(), replay.recording() as record:
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=6, pad_token_id=pad, eos_token_id=None
        )
    completions = [out[i, width:].tolist() for i in range(len(PROMPTS))]
    completions[1] = completions[1][:cut]
    rollout = replay.rollout(record, PROMPTS, completions)
    length = max(map(len, completions))
    full = torch.tensor(
        [[pad] * (width - len(p)) + p + c + [pad] * (length - len(c)) for p, c in zip(PROMPTS, completions)]
    )
    attention = torch.tensor(
        [
            [0] * (width - len(p)) + [1] * (len(p) + len(c)) + [0] * (length - len(c))
            for p, c in zip(PROMPTS, completions)
        ]
    )
    return rollout, full, attention, length


def drift(model, scale: float = 0.5) -> None:
    """Move every router, as a policy update (or another precision) would: some top-k choices flip."""
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in find_moe_layers(model):
            layer.router.weight.add_(scale * torch.randn_like(layer.router.weight))


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_replay_forces_recorded_experts_with_live_gates(family, char_tokenizer):
    model = family_model(family, char_tokenizer)
    replay = RoutingReplay(model)
    rollout, ids, attention, length = rollout_batch(model, replay, char_tokenizer.pad_token_id)
    recorded = rollout.aligned(ids, length)
    assert recorded.shape == (3, ids.shape[1], len(replay.layers), TINY["num_experts_per_tok"])
    assert (recorded[attention == 0] == -1).all()  # padding has no recorded experts
    routed = (recorded[..., 0, 0] >= 0).sum(dim=1)  # every prompt token and every fed completion token
    assert routed.tolist() == [len(p) + min(n, 5) for p, n in zip(PROMPTS, [6, 3, 6])]

    # The rollout's log-probs are the trainer's (fp32, same weights): cached decoding == full forward here.
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=ids, attention_mask=attention).logits.float(), -1)
    width = ids.shape[1] - length
    for i, logps in enumerate(rollout.logps):
        positions = torch.arange(width - 1, width - 1 + len(logps))
        want = full[i, positions].gather(-1, ids[i, positions + 1, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(logps), want, atol=1e-4)

    drift(model)
    with torch.no_grad():
        live = model(input_ids=ids, attention_mask=attention).logits
    replay.target(recorded, replay=True, reference=recorded)
    seen = []
    hook = replay.layers[0].router.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        with torch.no_grad():
            replayed = model(input_ids=ids, attention_mask=attention).logits
        stats = replay.take_stats()
    finally:
        hook.remove()
        replay.clear()
    assert stats.flip_rate == 0.0 and stats.token_flip_rate == 0.0  # the trainer used the rollout's experts
    assert stats.router_flip_rate > 0  # ... where the drifted router alone would have picked others
    assert not torch.allclose(replayed, live)
    logits, weights, indices = seen[0]
    known = recorded[:, :, 0].reshape(-1, recorded.shape[-1]) >= 0
    forced = recorded[:, :, 0].reshape(-1, recorded.shape[-1]).long()
    assert torch.equal(indices[known[:, 0]], forced[known[:, 0]])
    gates = gate_weights(replay.layers[0].kind, replay.layers[0].router, logits, indices)
    assert torch.allclose(weights.float(), gates.float(), atol=1e-6)  # the gates come from the live logits


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_replaying_the_models_own_choice_changes_nothing(family, char_tokenizer):
    model = family_model(family, char_tokenizer)
    replay = RoutingReplay(model)
    ids = torch.randint(5, 60, (2, 9))
    attention = torch.ones_like(ids)
    attention[0, :3] = 0
    with torch.no_grad(), replay.recording() as record:
        normal = model(input_ids=ids, attention_mask=attention).logits
    own = replay.captured(record)
    assert (own[0, :3] == -1).all() and (own[attention.bool()] >= 0).all()
    replay.target(own, replay=True, reference=own)
    with torch.no_grad():
        again = model(input_ids=ids, attention_mask=attention).logits
    stats = replay.take_stats()
    replay.clear()
    assert torch.equal(again[attention.bool()], normal[attention.bool()])
    assert stats.flip_rate == stats.router_flip_rate == 0.0 and stats.tokens == int(attention.sum())


def test_router_gets_gradient_and_checkpointing_recomputes_the_replayed_experts(char_tokenizer):
    model = family_model("deepseek_v3", char_tokenizer).train()
    replay = RoutingReplay(model)
    rollout, ids, attention, length = rollout_batch(model.eval(), replay, char_tokenizer.pad_token_id)
    recorded = rollout.aligned(ids, length)
    drift(model)
    model.train()

    def grads(checkpointing: bool):
        model.zero_grad()
        if checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        replay.target(recorded, replay=True, reference=recorded)
        try:
            loss = model(input_ids=ids, attention_mask=attention, labels=ids).loss
            loss.backward()  # recomputation inside backward must route as the forward did
        finally:
            replay.clear()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    router = [n for n in plain if "gate.weight" in n]
    assert router and all(plain[n].abs().sum() > 0 for n in router)  # the router is still trained
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[n], checkpointed[n], atol=1e-6) for n in plain)

    # Cleared before backward, the recomputed layers route live: torch's checkpoint sees other
    # tensors (or the gradients differ) -- why the trainer keeps the target set through backward.
    model.zero_grad()
    model.gradient_checkpointing_enable({"use_reentrant": False})
    replay.target(recorded, replay=True, reference=recorded)
    loss = model(input_ids=ids, attention_mask=attention, labels=ids).loss
    replay.clear()
    try:
        loss.backward()
        wrong = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        diverged = not all(torch.allclose(plain[n], wrong[n], atol=1e-6) for n in plain)
    except torch.utils.checkpoint.CheckpointError:
        diverged = True
    assert diverged


def test_balancing_counts_the_replayed_selection(char_tokenizer):
    model = family_model("qwen3_moe", char_tokenizer)
    layers = find_moe_layers(model)
    install_selection_bias(layers)
    replay = RoutingReplay(model, layers=layers)
    counter = RoutingCounter(model, layers).attach()
    ids = torch.randint(5, 60, (2, 6))
    forced = torch.zeros(2, 6, len(layers), TINY["num_experts_per_tok"], dtype=torch.int16)
    forced[..., 1] = 1  # every token to experts 0 and 1
    replay.target(forced, replay=True)
    with torch.no_grad():
        model(input_ids=ids)
    replay.clear()
    counts = counter.tensor()
    counter.detach()
    assert counts[:, :2].sum() == counts.sum() == 2 * 6 * 2 * len(layers)


def test_misalignment_is_refused_loudly(char_tokenizer):
    model = family_model("mixtral", char_tokenizer)
    replay = RoutingReplay(model)
    pad = char_tokenizer.pad_token_id
    rollout, ids, attention, length = rollout_batch(model, replay, pad)
    shifted = ids.clone()
    shifted[1] = torch.roll(shifted[1], 1)
    with pytest.raises(RoutingMismatchError, match="sequence 1 of the batch is not the one the rollout routed"):
        rollout.aligned(shifted, length)
    with pytest.raises(RoutingMismatchError, match="the batch has 2 sequences, the rollout recorded 3"):
        rollout.aligned(ids[:2], length)
    with pytest.raises(RoutingMismatchError, match="sequence 0"):
        rollout.aligned(ids, length + 1)  # the prompt/completion boundary in the wrong place
    replay.target(rollout.aligned(ids, length), replay=True)
    with pytest.raises(RoutingMismatchError, match="routed 16 tokens, the recorded batch has"):
        with torch.no_grad():
            model(input_ids=ids[:2, :8])
    replay.clear()
    with pytest.raises(RoutingMismatchError, match="generation ran 3 sequences"):
        with torch.no_grad(), replay.recording() as record:
            model(input_ids=ids)
        replay.rollout(record, PROMPTS[:2], [[1], [2]])


def test_eval_probe_measures_decoding_without_changing_samples(char_tokenizer):
    model = family_model("deepseek_v3", char_tokenizer)
    prompts = ["12+3=", "4+56+7=", "8="]
    settings = SamplingSettings(n=2, max_new_tokens=8, seed=3)
    plain = list(generate_batches(model, char_tokenizer, prompts, settings))
    probe = DecodeMismatch(model, settings.temperature)
    probed = list(generate_batches(model, char_tokenizer, prompts, settings, probe=probe))
    assert plain == probed
    summary = probe.summary()
    assert summary["tokens"] > 6 * 8 and summary["flip_rate"] < 0.02  # fp32: decoding routes (nearly) as a full forward
    assert summary["logp_abs_mean"] < 1e-4 and summary["logp_abs_p99"] < 1e-3

    # A rollout in bf16 against the fp32 forward: the probe sees the gap.
    def bf16_generate(generate):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return generate()

    probe_bf16 = DecodeMismatch(model, settings.temperature)
    original = probe_bf16.observe
    probe_bf16.observe = lambda decode, *a: original(lambda record: bf16_generate(lambda: decode(record)), *a)
    list(generate_batches(model, char_tokenizer, prompts, settings, probe=probe_bf16))
    assert probe_bf16.summary()["logp_abs_mean"] > 100 * summary["logp_abs_mean"]
