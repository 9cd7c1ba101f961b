"""Load a policy and tokenizer from a recipe: Hub name, local checkpoint, or a tiny builder.

The same function takes `Qwen/Qwen3-30B-A3B` on a user's machine and `build:tiny-moe` here;
a built model is saved and reloaded through `from_pretrained` so both paths are the same
from then on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from huggingface_hub import snapshot_download
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.checkpoints import publish
from posttrain.config.schema import ModelConfig
from posttrain.errors import PosttrainError
from posttrain.io import atomic_write_json
from posttrain.models.builders import build_model
from posttrain.models.moe import reattach_selection_bias
from posttrain.models.quantization import device_map, keep_trainable_layout
from posttrain.models.tokenizer import build_tokenizer

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


def check_local(name_or_path: str) -> None:
    """Fail fast on a path that is clearly local but missing, instead of asking the Hub for it."""
    path = Path(name_or_path).expanduser()
    # "org/name" is a Hub id, unless "org" is a folder here (outputs/run): then it is a path.
    first = Path(name_or_path.split("/", 1)[0])
    looks_local = (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or ("/" in name_or_path and first.is_dir())
    )
    if looks_local and not path.exists():
        raise PosttrainError(f"{name_or_path}: no such model directory")
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise PosttrainError(
            f"{name_or_path}: not a model checkpoint (no config.json); expected a save_pretrained folder"
        )


def load_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False):

    check_local(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise PosttrainError(f"could not load tokenizer {name_or_path!r}: {_first_line(e)}") from None
    if tokenizer.pad_token is None:
        # Batched generation and GRPO padding need a pad token; EOS is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str,
    dtype: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    quantization=None,
):
    """`quantization`: a transformers BitsAndBytesConfig (QLoRA, `posttrain.models.quantization`) or None."""

    check_local(name_or_path)
    extra = {}
    if quantization is not None:
        extra = {"quantization_config": quantization, "device_map": device_map()}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=DTYPES[dtype], revision=revision, trust_remote_code=trust_remote_code, **extra
        )
    except (OSError, ValueError) as e:
        raise PosttrainError(
            f"could not load model {name_or_path!r}: {_first_line(e)} "
            "(a Hub name needs network access; a local path needs config.json and weights)"
        ) from None
    if quantization is not None:
        keep_trainable_layout(model)
    folder = _weights_folder(name_or_path, revision)
    if folder is not None:
        reattach_selection_bias(model, folder)
    return model


def _weights_folder(name_or_path: str, revision: str | None) -> Path | None:
    """Where the weights just loaded lie: the folder itself, or the Hub cache's snapshot (no download)."""
    if Path(name_or_path).expanduser().is_dir():
        return Path(name_or_path).expanduser()
    try:
        return Path(
            snapshot_download(name_or_path, revision=revision, allow_patterns="*.safetensors", local_files_only=True)
        )
    except (OSError, ValueError):  # not a cached Hub snapshot: nothing of ours to restore
        return None


def build_and_save(kind: str, builder_args: dict, out_dir: Path, seed: int) -> Path:
    """Random-init a tiny model + its tokenizer (`builder_args.tokenizer`, char by default) and save both
    as a normal checkpoint."""

    tokenizer = build_tokenizer(builder_args.get("tokenizer"))
    model = build_model(kind, tokenizer, seed=seed, **builder_args)
    save_pretrained(model, tokenizer, out_dir)
    return out_dir


def save_pretrained(model, tokenizer, out_dir: Path, state_dict: dict | None = None) -> None:
    """Save to a temporary sibling, fsync, then rename, so a crash never leaves half a checkpoint.

    `state_dict`: the weights to write instead of the model's own (gathered from ZeRO-3 / FSDP shards).
    """

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    publish(tmp, out_dir)


BUILDER_RECORD = "posttrain_builder.json"  # in init-<builder>/: what built it


def resolve_model_path(cfg: ModelConfig, work_dir: Path, seed: int = 0) -> str:
    """A path or Hub name `from_pretrained` can take; builders are materialised under `work_dir`, once
    per (builder, builder_args, seed): a folder built with other arguments is rebuilt, never reused."""
    if not cfg.builder:
        return cfg.name_or_path
    target = work_dir / f"init-{cfg.builder}"
    made_by = {"builder": cfg.builder, "builder_args": dict(cfg.builder_args), "seed": seed}
    record = target / BUILDER_RECORD
    if (target / "config.json").is_file() and record.is_file() and json.loads(record.read_text()) == made_by:
        return str(target)
    shutil.rmtree(target, ignore_errors=True)
    build_and_save(cfg.builder, cfg.builder_args, target, seed)
    atomic_write_json(record, made_by)  # written last: a folder without it is rebuilt
    return str(target)


def hub_model_id(cfg: ModelConfig) -> str | None:
    """`cfg.name_or_path` when it names a Hub model (a model card's `base_model`), else None."""
    name = cfg.name_or_path
    if cfg.builder or Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        return None
    return name


def count_parameters(model) -> dict[str, int]:
    """Total parameters, and those active per token (MoE: shared + top-k routed experts)."""
    total = sum(p.numel() for p in model.parameters())
    config = model.config
    n_routed = (
        getattr(config, "n_routed_experts", None)
        or getattr(config, "num_experts", None)
        or getattr(config, "num_local_experts", None)
    )
    top_k = getattr(config, "num_experts_per_tok", None)
    if not n_routed or not top_k:
        return {"total": total, "active": total}
    routed = 0
    for name, p in model.named_parameters():
        if ".experts." in name or name.endswith((".experts.gate_up_proj", ".experts.down_proj")):
            routed += p.numel()
    inactive = routed * (1 - top_k / n_routed)
    return {"total": total, "active": int(total - inactive)}


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
