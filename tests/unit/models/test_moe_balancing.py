"""Loss-free balancing, selection-only bias, router freezing, routing counts and refusals."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from posttrain.config.schema import MoEConfig
from posttrain.errors import PosttrainError
from posttrain.models.balancing import (
    MoEBalancingCallback,
    aux_loss_coef,
    moe_callbacks,
    telemetry_logs,
    update_bias,
)
from posttrain.models.moe import (
    FAMILIES,
    MoELayer,
    RoutingCounter,
    UnsupportedMoEError,
    count_routing,
    find_moe_layers,
    freeze_router,
    install_selection_bias,
    restore_selection_bias,
)
from posttrain.telemetry.routing_stats import layer_stats, routing_line

# The tiny shapes every test shares (one file: pytest's importlib mode cannot import conftest).
_TINY = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "tiny_models.json").read_text())
TINY = _TINY["tiny_moe"]


@pytest.fixture(scope="module")
def tiny_moe(char_tokenizer):
    from posttrain.models.builders import build_model

    return build_model("tiny-moe", char_tokenizer, seed=0, **TINY)


def skewed_router(num_experts: int = 8, hidden: int = 16):
    """A real DeepSeek-V3 router whose expert 0 wins for most tokens (its weight row points along
    the tokens' common direction), with the tokens it routes."""
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

    config = DeepseekV3Config(
        hidden_size=hidden,
        n_routed_experts=num_experts,
        num_experts_per_tok=2,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=1.0,
    )
    router = DeepseekV3TopkRouter(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        router.weight.normal_(0, 0.3, generator=gen)
        router.weight[0] = 1.0
    tokens = torch.randn(512, hidden, generator=gen) * 0.5 + 0.3
    return (
        router,
        MoELayer(index=0, name="gate", router=router, num_experts=num_experts, top_k=2, kind="native"),
        tokens,
    )


def test_update_bias_follows_the_sign_rule():
    bias = torch.tensor([0.0, 0.5, -0.5, 0.0])
    new = update_bias(bias, torch.tensor([10, 10, 10, 30]), 0.1)  # mean 15: three under, one over
    assert torch.allclose(new, torch.tensor([0.1, 0.6, -0.4, -0.1]))
    balanced = torch.full((2, 4), 7)
    assert torch.equal(update_bias(torch.zeros(2, 4), balanced, 0.1), torch.zeros(2, 4))
    assert torch.equal(update_bias(torch.zeros(4), torch.zeros(4), 0.1), torch.zeros(4))  # an idle step moves nothing


def test_loss_free_update_drives_a_skewed_router_to_balance():
    router, layer, tokens = skewed_router()
    counter = RoutingCounter(router, [layer]).attach()
    vios = []
    for _ in range(150):
        counter.reset()
        router(tokens)
        counts = counter.tensor()[0]
        vios.append(layer_stats(counts.tolist())["max_vio"])
        before = router.e_score_correction_bias.clone()
        router.e_score_correction_bias.copy_(update_bias(before, counts, 0.01))
        step = router.e_score_correction_bias - before
        assert torch.allclose(step, 0.01 * torch.sign(counts.float().mean() - counts.float()))
    assert vios[0] > 1.5  # expert 0 takes nearly every token: MaxVio ~ 8/2 - 1 = 3
    assert max(vios[-20:]) < vios[0] / 4
    assert router.e_score_correction_bias[0] < 0  # the overloaded expert was pushed down


def test_native_bias_changes_selection_not_gate_weights():
    router, _, tokens = skewed_router()
    with torch.no_grad():
        logits, _, plain_idx = router(tokens)
        router.e_score_correction_bias[5] = 10.0  # force expert 5 into every top-k
        _, weights, idx = router(tokens)
    assert (idx == 5).any(dim=-1).all() and not (plain_idx == 5).any(dim=-1).all()
    unbiased = logits.sigmoid().gather(1, idx)
    assert torch.allclose(weights, unbiased / unbiased.sum(-1, keepdim=True))


SOFTMAX_FAMILIES = ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "granitemoe", "gpt_oss", "deepseek_v2"]


def _tiny_family(model_type: str, char_tokenizer):
    from posttrain.models.builders import build_model

    return build_model("tiny-moe", char_tokenizer, seed=0, family=model_type, **TINY)


def _expected_gates(layer, logits, idx):
    """The family's own gate formula, written out independently of the hook."""
    scores = logits.float()
    if layer.kind == "topk_softmax":
        return scores.gather(1, idx).softmax(-1)
    gates = scores.softmax(-1).gather(1, idx)
    if layer.kind == "scaled":
        return gates * layer.router.routed_scaling_factor
    if getattr(layer.router, "norm_topk_prob", True):  # Mixtral always renormalises
        gates = gates / gates.sum(-1, keepdim=True)
    return gates


@pytest.mark.parametrize("model_type", SOFTMAX_FAMILIES)
def test_selection_bias_wrapper_for_routers_without_one(model_type, char_tokenizer, tmp_path):
    model = _tiny_family(model_type, char_tokenizer).eval()
    layers = find_moe_layers(model)
    assert len(layers) == TINY["num_layers"] and layers[0].bias is None
    hidden = TINY["hidden_size"]
    x = torch.randn(6, hidden)
    ids = torch.randint(10, 60, (2, 7))
    with torch.no_grad():
        reference, reference_logits = layers[0].router(x), model(input_ids=ids).logits
        install_selection_bias(layers)
        install_selection_bias(layers)  # idempotent: one hook, one buffer
        same, same_logits = layers[0].router(x), model(input_ids=ids).logits
        layers[0].bias[3] = 50.0
        logits, weights, idx = layers[0].router(x)
    assert all(torch.equal(a, b) for a, b in zip(reference, same))  # zero bias: the model's own routing
    assert torch.equal(reference_logits, same_logits)
    assert (idx == 3).any(dim=-1).all() and not (reference[2] == 3).any(dim=-1).all()
    assert torch.allclose(weights, _expected_gates(layers[0], logits, idx).to(weights.dtype))  # unbiased gates

    model.save_pretrained(tmp_path)
    fresh = _tiny_family(model_type, char_tokenizer)
    fresh_layers = find_moe_layers(fresh)
    install_selection_bias(fresh_layers)
    assert restore_selection_bias(fresh_layers, tmp_path) == TINY["num_layers"]
    assert fresh_layers[0].bias[3] == 50.0


def test_group_limited_deepseek_v2_is_refused_not_mis_balanced(char_tokenizer):
    model = _tiny_family("deepseek_v2", char_tokenizer)
    layers = find_moe_layers(model)
    layers[0].router.topk_method = "group_limited_greedy"
    with pytest.raises(UnsupportedMoEError, match="greedy only"):
        install_selection_bias(layers)


def test_counts_skip_padding_and_cover_generation(tiny_moe):
    ids = torch.randint(5, 30, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :3] = 0  # left padding
    with torch.no_grad(), count_routing(tiny_moe) as routing:
        tiny_moe(input_ids=ids, attention_mask=mask)
    assert set(routing.counts()) == {"layer0", "layer1"}
    assert all(sum(c) == 18 * 2 for c in routing.counts().values())  # 18 real tokens x top-2
    with count_routing(tiny_moe) as routing:
        tiny_moe.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False)
    assert all(sum(c) == (18 + 2 * 3) * 2 for c in routing.counts().values())  # prefill + 2 cached steps
    assert not tiny_moe._forward_pre_hooks  # hooks are gone after the block


def test_training_only_counter_ignores_no_grad_forwards(tiny_moe):
    layers = find_moe_layers(tiny_moe)
    counter = RoutingCounter(tiny_moe, layers, training_only=True).attach()
    ids = torch.randint(5, 30, (2, 5))
    try:
        tiny_moe.train()
        with torch.no_grad():
            tiny_moe(input_ids=ids)
        assert counter.tensor().sum() == 0
        tiny_moe(input_ids=ids).logits.sum().backward()
        assert counter.tensor().sum(dim=1).tolist() == [2 * 5 * 2] * 2
    finally:
        counter.detach()
        tiny_moe.zero_grad()
        tiny_moe.eval()


def test_freeze_router_stops_router_gradients(char_tokenizer):
    from posttrain.models.builders import build_model

    model = build_model("tiny-moe", char_tokenizer, seed=1, **TINY)
    moe_callbacks(MoEConfig(freeze_router=True, telemetry=False), model)
    model(input_ids=torch.randint(5, 30, (2, 5))).logits.sum().backward()
    for layer in find_moe_layers(model):
        assert not layer.router.weight.requires_grad and layer.router.weight.grad is None
    assert model.model.layers[0].mlp.experts.gate_up_proj.grad is not None
    assert freeze_router([]) == 0


def test_callback_updates_bias_after_each_step_and_logs_telemetry(tiny_moe, tmp_path):
    layers = find_moe_layers(tiny_moe)
    callback = MoEBalancingCallback(tiny_moe, layers, gamma=0.05, out_dir=tmp_path)
    state, args = SimpleNamespace(global_step=0, is_world_process_zero=True), SimpleNamespace(output_dir=str(tmp_path))
    callback.on_train_begin(args, state, None)
    tiny_moe.train()
    moved = []
    try:
        for step in (1, 2):
            before = torch.stack([layer.bias.clone() for layer in layers])
            callback.on_step_begin(args, state, None)
            tiny_moe(input_ids=torch.randint(5, 30, (4, 6))).logits.sum().backward()
            state.global_step = step
            callback.on_step_end(args, state, None)
            delta = torch.stack([layer.bias for layer in layers]) - before
            assert set(torch.round(delta.abs() / 0.05).flatten().tolist()) <= {0.0, 1.0}  # +-gamma or still
            moved.append(bool(delta.abs().sum() > 0))
            logs = {"loss": 1.0}
            callback.on_log(args, state, None, logs=logs)
    finally:
        tiny_moe.eval()
        tiny_moe.zero_grad()
        for layer in layers:
            layer.bias.zero_()
    assert all(moved)
    assert {
        "moe/max_vio_mean",
        "moe/max_vio_max",
        "moe/entropy_mean",
        "moe/dead_experts",
        "moe/bias_absmax",
        "moe/layer0/max_vio",
        "moe/layer1/load",
    } <= set(logs)
    assert len(logs["moe/layer1/load"]) == 4 and sum(logs["moe/layer1/load"]) == pytest.approx(1, abs=1e-3)
    callback.on_train_end(args, state, None)
    assert (tmp_path / "expert_load.png").stat().st_size > 1000
    assert not tiny_moe._forward_pre_hooks


def test_telemetry_keys_and_progress_line():
    logs = telemetry_logs({"layer0": [10, 10, 10, 30], "layer2": [0, 0, 5, 5]})
    assert logs["moe/max_vio_mean"] == pytest.approx((1.0 + 1.0) / 2)
    assert logs["moe/dead_experts"] == 2 and logs["moe/layer2/load"] == [0, 0, 0.5, 0.5]
    assert routing_line(logs) == "MaxVio 1.00 dead 2"
    assert routing_line({"loss": 1}) == ""
    replayed = {**logs, "routing/flip_rate": 0.0, "routing/router_flip_rate": 0.031, "mismatch/logp_abs_mean": 2.1e-3}
    assert routing_line(replayed) == "MaxVio 1.00 dead 2  flip 0.0% (router 3.1%) |dlogp| 2.1e-03"
    unreplayed = {"routing/flip_rate": 0.05, "routing/router_flip_rate": 0.05}
    assert routing_line(unreplayed) == "flip 5.0%"


def test_heatmap_from_metrics_rows(tmp_path):
    from posttrain.telemetry.heatmap import load_matrix, plot_expert_load

    rows = [{"step": s, "moe/layer0/load": [0.7, 0.1, 0.1, 0.1], "moe/layer0/max_vio": 1.8} for s in (1, 2, 3)]
    steps, layers, matrix = load_matrix(rows + [{"step": 4, "loss": 1.0}])
    assert steps == [1, 2, 3] and layers == [0] and matrix[0] == pytest.approx([2.8] * 3)
    assert plot_expert_load(rows, tmp_path / "expert_load.png").stat().st_size > 1000
    assert plot_expert_load([{"step": 1}], tmp_path / "none.png") is None
    assert not list(tmp_path.glob(".*tmp*"))


def test_factory_choices(tiny_moe, char_tokenizer):
    from posttrain.models.builders import build_model

    assert moe_callbacks(MoEConfig(balancing="none", telemetry=False), tiny_moe) == []
    (telemetry,) = moe_callbacks(MoEConfig(balancing="none"), tiny_moe)
    assert telemetry.gamma is None
    dense = build_model(
        "tiny-dense", char_tokenizer, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=16
    )
    assert moe_callbacks(MoEConfig(telemetry=True), dense) == []  # telemetry on a dense model: nothing to do
    assert aux_loss_coef(MoEConfig(balancing="loss_free", aux_loss_coef=0.5)) == 0.0
    assert aux_loss_coef(MoEConfig(balancing="aux_loss", aux_loss_coef=0.5)) == 0.5


def test_refusals_name_the_fix(tiny_moe, char_tokenizer):
    from posttrain.models.builders import build_model

    dense = build_model(
        "tiny-dense", char_tokenizer, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=16
    )
    with pytest.raises(PosttrainError, match="moe.balancing=loss_free: .* has no MoE layers"):
        moe_callbacks(MoEConfig(balancing="loss_free"), dense)
    with pytest.raises(PosttrainError, match="moe.freeze_router=true"):
        moe_callbacks(MoEConfig(freeze_router=True), dense)
    with pytest.raises(PosttrainError, match="aux_loss: DeepseekV3ForCausalLM returns no auxiliary.*loss_free"):
        moe_callbacks(MoEConfig(balancing="aux_loss"), tiny_moe)

    unknown = torch.nn.Linear(2, 2)
    unknown.config = SimpleNamespace(model_type="jamba", num_experts=16)
    with pytest.raises(UnsupportedMoEError, match="'jamba'.*supported: " + ", ".join(FAMILIES)):
        moe_callbacks(MoEConfig(balancing="loss_free"), unknown)
    assert moe_callbacks(MoEConfig(balancing="none"), unknown) == []  # telemetry alone only warns


def test_bias_sidecar_saved_with_checkpoint_and_restored_on_resume(tiny_moe, tmp_path):
    layers = find_moe_layers(tiny_moe)
    args = SimpleNamespace(output_dir=str(tmp_path))
    saving = MoEBalancingCallback(tiny_moe, layers, gamma=0.1)
    (tmp_path / "checkpoint-2").mkdir()
    try:
        layers[1].bias[2] = 0.3
        saving.on_save(args, SimpleNamespace(global_step=2, is_world_process_zero=True), None)
        layers[1].bias.zero_()
        resuming = MoEBalancingCallback(tiny_moe, layers, gamma=0.1)
        # At train begin, not at the first step: a resume from the last checkpoint runs no step.
        resuming.on_train_begin(args, SimpleNamespace(global_step=2), None)
        assert layers[1].bias[2] == pytest.approx(0.3)
        resuming.on_train_end(args, SimpleNamespace(global_step=2, is_world_process_zero=True), None)
    finally:
        for layer in layers:
            layer.bias.zero_()


def test_gradient_checkpoint_recomputation_is_not_counted_twice(tiny_moe):
    tiny_moe.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    tiny_moe.train()
    counter = RoutingCounter(tiny_moe, find_moe_layers(tiny_moe), training_only=True).attach()
    try:
        tiny_moe(input_ids=torch.randint(5, 30, (2, 5))).logits.sum().backward()
        assert counter.tensor().sum(dim=1).tolist() == [2 * 5 * 2] * 2
    finally:
        counter.detach()
        tiny_moe.gradient_checkpointing_disable()
        tiny_moe.zero_grad()
        tiny_moe.eval()


def test_count_routing_tolerates_dense_and_unknown_models(char_tokenizer):
    from posttrain.models.builders import build_model

    dense = build_model(
        "tiny-dense", char_tokenizer, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=16
    )
    with count_routing(dense) as routing:
        dense(input_ids=torch.randint(5, 30, (1, 4)))
    assert routing.counts() == {}
    unknown = torch.nn.Linear(2, 2)
    unknown.config = SimpleNamespace(model_type="jamba", num_experts=16)
    with count_routing(unknown) as routing:
        pass
    assert routing.counts() == {}
    with pytest.raises(UnsupportedMoEError), count_routing(unknown, strict=True):
        pass
