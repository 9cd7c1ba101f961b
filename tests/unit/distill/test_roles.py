"""Teacher and student sources: builders use the teacher's tokenizer; stages save and reload."""

from pathlib import Path

from posttrain.config.schema import LoraConfig, ModelConfig
from posttrain.distill import roles

DENSE = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32}


def test_only_build_teachers_warm_start():
    assert roles.needs_warmstart(ModelConfig(name_or_path="build:tiny-moe", warmstart={"steps": 5}))
    assert not roles.needs_warmstart(ModelConfig(name_or_path="outputs/tiny-math", warmstart={"steps": 5}))
    assert not roles.needs_warmstart(ModelConfig(name_or_path="build:tiny-moe"))


def test_built_student_shares_the_teachers_tokenizer(tmp_path: Path):
    from transformers import AutoTokenizer

    from posttrain.models.tokenizer import build_char_tokenizer

    teacher_tok = build_char_tokenizer()
    teacher_tok.add_tokens(["<step>"])
    path = roles.student_source(
        ModelConfig(name_or_path="build:tiny-dense", builder_args=DENSE), tmp_path, teacher_tok, seed=0
    )
    assert AutoTokenizer.from_pretrained(path).get_vocab() == teacher_tok.get_vocab()
    model = roles.load(ModelConfig(name_or_path=path), path)
    assert model.config.vocab_size == len(teacher_tok)
    assert (
        roles.student_source(ModelConfig(name_or_path="Qwen/Qwen3-0.6B"), tmp_path, teacher_tok, seed=0)
        == "Qwen/Qwen3-0.6B"
    )


def test_lora_stage_saves_the_adapter_and_reloads_it_trainable(tmp_path: Path, char_tokenizer):
    from peft import get_peft_model

    from posttrain.models.lora import peft_config

    base = roles.student_source(
        ModelConfig(name_or_path="build:tiny-dense", builder_args=DENSE), tmp_path, char_tokenizer, seed=0
    )
    cfg = ModelConfig(name_or_path=base)
    lora = LoraConfig(enabled=True, r=2)
    model = get_peft_model(roles.load(cfg, base), peft_config(lora))
    roles.save_stage(model, char_tokenizer, tmp_path / "sequence_kd")
    assert roles.stage_done(tmp_path / "sequence_kd")
    assert (tmp_path / "sequence_kd" / "model" / "adapter_config.json").is_file()
    again = roles.load_stage(cfg, base, tmp_path / "sequence_kd")
    assert any(p.requires_grad for n, p in again.named_parameters() if "lora_" in n)
    merged = roles.export_student(again, char_tokenizer, tmp_path / "out", ModelConfig(name_or_path=base, lora=lora))
    assert not hasattr(merged, "peft_config")
    assert (tmp_path / "out" / "config.json").is_file() and (
        tmp_path / "out" / "adapter" / "adapter_config.json"
    ).is_file()
