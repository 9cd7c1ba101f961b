"""train.precision: the mapping onto Trainer arguments and the hardware checks (torch.cuda faked)."""

import pytest
import torch

from posttrain.errors import PosttrainError
from posttrain.models import precision as precision_module
from posttrain.models import warmstart
from posttrain.models.precision import check_hardware, resolve, trainer_kwargs


def _gpu(monkeypatch, *, cuda=True, bf16=True, capability=(9, 0), name="NVIDIA H100"):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)


@pytest.mark.parametrize(
    ("dtype", "expected"), [("bfloat16", "bf16"), ("float16", "fp16"), ("float32", "fp32"), ("auto", "fp32")]
)
def test_auto_follows_model_dtype(dtype, expected):
    assert resolve("auto", dtype) == expected
    assert resolve("fp32", "bfloat16") == "fp32"  # an explicit choice wins


def test_trainer_kwargs(monkeypatch):
    assert trainer_kwargs("fp32") == {"bf16": False, "fp16": False}
    monkeypatch.setattr(precision_module, "is_torch_bf16_gpu_available", lambda: False)
    assert trainer_kwargs("bf16") == {"bf16": True, "fp16": False, "use_cpu": True}  # CPU autocast
    monkeypatch.setattr(precision_module, "is_torch_bf16_gpu_available", lambda: True)
    assert trainer_kwargs("bf16") == {"bf16": True, "fp16": False}
    assert trainer_kwargs("fp16") == {"bf16": False, "fp16": True}
    with pytest.raises(ValueError, match="resolve 'auto'"):
        trainer_kwargs("auto")


def test_fp8_selects_accelerates_torchao_backend(monkeypatch):
    # setenv first, so teardown restores both to what they were (unset) after trainer_kwargs sets them.
    for name in ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_FP8_BACKEND"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert trainer_kwargs("fp8") == {"bf16": False, "fp16": False}
    import os

    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "fp8" and os.environ["ACCELERATE_FP8_BACKEND"] == "AO"
    from transformers import TrainingArguments

    assert TrainingArguments(output_dir="/tmp/unused", report_to=[]).mixed_precision == "fp8"


def test_cpu_allows_fp32_and_bf16_but_not_fp16_or_fp8(monkeypatch):
    _gpu(monkeypatch, cuda=False)
    check_hardware("fp32")
    check_hardware("bf16")  # CPU autocast
    with pytest.raises(PosttrainError, match="fp16 needs a CUDA GPU"):
        check_hardware("fp16")
    with pytest.raises(PosttrainError) as e:
        check_hardware("fp8")
    assert str(e.value) == (
        "train.precision: fp8 needs an NVIDIA GPU with compute capability 8.9+ (Hopper/Ada) and torchao; "
        "this machine has no CUDA device"
    )


def test_bf16_needs_gpu_support(monkeypatch):
    _gpu(monkeypatch, bf16=False, name="Tesla V100")
    check_hardware("fp16")
    with pytest.raises(PosttrainError, match="Tesla V100 has none"):
        check_hardware("bf16")


def test_fp8_needs_ada_or_hopper_and_torchao(monkeypatch):
    import importlib.util

    _gpu(monkeypatch, capability=(8, 0), name="NVIDIA A100")
    with pytest.raises(PosttrainError, match=r"has NVIDIA A100 \(compute capability 8.0\)"):
        check_hardware("fp8")
    _gpu(monkeypatch, capability=(9, 0))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(PosttrainError, match="torchao is not installed"):
        check_hardware("fp8")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torchao" else real(name, *a))
    check_hardware("fp8")


@pytest.mark.parametrize("precision, bf16", [("fp32", False), ("bf16", True)])
def test_warmstart_trains_in_the_recipes_precision(monkeypatch, tmp_path, precision, bf16):
    from posttrain.config.schema import WarmstartConfig

    seen = {}

    class Captured(Exception):
        pass

    def capture(*args, **kwargs):
        seen["args"] = kwargs["args"]
        raise Captured

    monkeypatch.setattr(warmstart, "SFTTrainer", capture)
    rows = [{"id": "a", "question": "1+1", "solution": "<think>1+1=2</think><answer>2</answer>"}]
    with pytest.raises(Captured):
        warmstart.run_warmstart(None, None, rows, ["1+1"], WarmstartConfig(steps=1), tmp_path, precision=precision)
    assert seen["args"].bf16 is bf16 and seen["args"].fp16 is False
