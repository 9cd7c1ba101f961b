"""TRL's and transformers' private trainer API is touched in trl_adapter.py only, and each method it
relies on still has the shape it relies on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import trl

from posttrain import trl_adapter
from posttrain.trl_adapter import (
    PRIVATE_ATTRIBUTES,
    PRIVATE_METHODS,
    TrainerAPIChanged,
    atomic,
    check_attributes,
    check_private_api,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "posttrain"


@pytest.mark.parametrize("key", list(PRIVATE_METHODS), ids=lambda k: ".".join(k))
def test_each_private_method_still_has_the_shape_posttrain_relies_on(key):
    check_private_api(*key)


def test_a_changed_method_fails_naming_the_versions(monkeypatch):
    def _generate(self, prompts, images):  # as if TRL had added a parameter
        return None

    monkeypatch.setattr(trl.GRPOTrainer, "_generate", _generate)
    with pytest.raises(TrainerAPIChanged) as err:
        check_private_api("trl", "GRPOTrainer", "_generate")
    message = str(err.value)
    assert f"trl {trl.__version__}" in message and "(self, prompts)" in message and "(self, prompts, images)" in message
    with pytest.raises(TrainerAPIChanged):
        atomic(trl.GRPOTrainer)  # a trainer class is checked when posttrain builds it
    monkeypatch.delattr(trl.GRPOTrainer, "_calculate_rewards")
    with pytest.raises(TrainerAPIChanged, match="_calculate_rewards no longer exists"):
        check_private_api("trl", "GRPOTrainer", "_calculate_rewards")


def test_an_sft_trainer_has_the_attributes_the_kd_trainers_write(char_tokenizer, tmp_path):
    from datasets import Dataset

    from posttrain.models.builders import build_model

    model = build_model("tiny-dense", char_tokenizer, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1)
    args = trl.SFTConfig(output_dir=str(tmp_path), report_to=[], bf16=False, max_steps=1)
    rows = Dataset.from_list([{"prompt": "1+1=", "completion": "2"}])
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=char_tokenizer)
    check_attributes(trainer)
    del trainer._total_train_tokens
    with pytest.raises(TrainerAPIChanged, match="has no _total_train_tokens"):
        check_attributes(trainer)


def _private_contacts(path: Path) -> list[str]:
    names = {method for _, _, method in PRIVATE_METHODS if method.startswith("_")} | set(PRIVATE_ATTRIBUTES)
    return [
        f"{path.relative_to(SRC)}:{node.lineno} .{node.attr}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in names
    ]


def test_no_other_module_touches_the_private_api():
    outside = [
        hit for path in sorted(SRC.rglob("*.py")) if path.name != "trl_adapter.py" for hit in _private_contacts(path)
    ]
    assert not outside, outside
    assert _private_contacts(Path(trl_adapter.__file__))  # the reader does see them where they are
