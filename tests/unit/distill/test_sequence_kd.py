"""Sequence-level KD settings decided from the model rather than configured."""

from types import SimpleNamespace

from posttrain.distill.sequence_kd import use_packing


def test_packing_is_on_only_where_it_pays():
    def model(impl):
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation=impl))

    assert not use_packing("auto", model("sdpa")) and use_packing("auto", model("flash_attention_2"))
    assert use_packing("on", model("sdpa")) and not use_packing("off", model("flash_attention_2"))
