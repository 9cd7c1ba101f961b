"""Teacher and student: where each comes from, what is built or warm-started once and cached in the
run folder, and how a trained student is saved and reloaded between stages.

A `build:` student is built with the *teacher's* tokenizer, so logit-level KD (which compares the
two next-token distributions id by id) works without further setup. Under `accelerate launch` the
main process builds and saves; the others wait and load what it saved.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from peft import PeftModel
from rich.console import Console

from posttrain.config.schema import ModelConfig
from posttrain.distributed import on_main
from posttrain.models.builders import build_model
from posttrain.models.loading import load_model, load_tokenizer, resolve_model_path, save_pretrained
from posttrain.models.lora import merge_saved_adapter
from posttrain.models.precision import resolve
from posttrain.models.quantization import bnb_config
from posttrain.models.tokenizer import build_tokenizer
from posttrain.models.warmstart import warmstart_until
from posttrain.telemetry.trainer_progress import RichProgressCallback

TEACHER_DIR = "teacher"  # the warm-started teacher, reused by later runs with --resume
STUDENT_INIT_DIR = "build/student"


def teacher_source(cfg: ModelConfig, out: Path, seed: int) -> str:
    """A path or Hub name for the teacher; a builder is materialised (random init) under out/build."""
    return on_main(lambda: resolve_model_path(cfg, out / "build" / "teacher", seed=seed))


def warm_teacher(
    cfg: ModelConfig,
    source: str,
    tokenizer,
    warm_rows: list[dict],
    prompts: list,
    out: Path,
    console: Console,
    check: Callable[[object], float] | None = None,
    report_to: Sequence[str] = (),
    template_kwargs=None,
):
    """(path, in-memory model or None): a `build:` teacher warm-started on worked solutions, once.

    A random `build:` teacher knows nothing to distil; its warm-start is the same SFT GRPO uses
    (`posttrain.models.warmstart`), cached in out/teacher so a resumed run does not repeat it. A
    checkpoint teacher is used as it is, so `--teacher outputs/tiny-math` works with a recipe whose
    teacher section warm-starts a builder. `check`: greedy accuracy of a model, for `until_greedy`.
    """
    target = out / TEACHER_DIR
    if not needs_warmstart(cfg):
        if cfg.warmstart.steps:
            console.print(
                f"teacher: {cfg.name_or_path} is used as it is (teacher.warmstart applies to build: teachers)"
            )
        return source, None
    if (target / "config.json").is_file():
        console.print(f"teacher: reusing the warm-started teacher in {target}")
        return str(target), None

    model = load_model(source, cfg.dtype, cfg.revision, cfg.trust_remote_code)
    console.print(f"teacher: warm-start, {cfg.warmstart.steps} SFT steps on {len(warm_rows)} worked examples")
    model, _ = warmstart_until(
        model,
        tokenizer,
        warm_rows,
        prompts,
        cfg.warmstart,
        out / "build" / "warmstart-tmp",
        check=check,
        say=console.print,
        callbacks=[RichProgressCallback(console, "teacher warm-start", accuracy_reward=None)],
        report_to=report_to,
        stage="teacher_warmstart",
        runs_dir=out / "runs",
        precision=resolve("auto", cfg.dtype),  # train.precision is the student's
        template_kwargs=template_kwargs,
        fresh=lambda attempt: load_model(source, cfg.dtype, cfg.revision, cfg.trust_remote_code),
    )

    def save() -> None:
        save_pretrained(model, tokenizer, target)
        shutil.rmtree(out / "build" / "warmstart-tmp", ignore_errors=True)  # SFTTrainer's scratch folder

    on_main(save)
    return str(target), model


def needs_warmstart(cfg: ModelConfig) -> bool:
    return bool(cfg.builder and cfg.warmstart.steps)


def student_source(cfg: ModelConfig, out: Path, teacher_tokenizer, seed: int) -> str:
    """A path or Hub name for the student; a builder is built once with the teacher's tokenizer."""
    if not cfg.builder:
        return cfg.name_or_path
    target = (out / STUDENT_INIT_DIR).resolve()

    def build() -> None:
        if (target / "config.json").is_file():
            return

        if cfg.tokenizer:
            tokenizer = load_tokenizer(cfg.tokenizer)
        elif cfg.builder_args.get("tokenizer"):  # a student of another vocabulary: cross-tokenizer
            tokenizer = build_tokenizer(cfg.builder_args["tokenizer"])
        else:
            tokenizer = teacher_tokenizer
        save_pretrained(build_model(cfg.builder, tokenizer, seed=seed, **cfg.builder_args), tokenizer, target)

    on_main(build)
    return str(target)


def load(cfg: ModelConfig, path: str):

    return load_model(path, cfg.dtype, cfg.revision, cfg.trust_remote_code, quantization=bnb_config(cfg))


def save_stage(model, tokenizer, stage_dir: Path, state_dict: dict | None = None) -> None:
    """What the stage trained -- full weights, or only the LoRA adapter -- under stage_dir/model.

    `state_dict`: the weights gathered from ZeRO-3 / FSDP shards (`distributed.gathered_state_dict`)."""
    on_main(lambda: save_pretrained(model, tokenizer, stage_dir / "model", state_dict=state_dict))


def stage_done(stage_dir: Path) -> bool:
    return (stage_dir / "model").is_dir()  # save_pretrained renames into place: present means complete


def load_stage(cfg: ModelConfig, base_path: str, stage_dir: Path):
    """The student a finished stage left: full weights, or the base with its adapter (trainable)."""
    saved = stage_dir / "model"
    if not (saved / "adapter_config.json").is_file():
        return load(cfg, str(saved))

    return PeftModel.from_pretrained(load(cfg, base_path), str(saved), is_trainable=True)


def export_student(model, tokenizer, out: Path, cfg: ModelConfig):
    """The student at the top of the run folder (`from_pretrained(out)`), plus out/adapter with LoRA.

    Returns the model to evaluate (merged when LoRA is merged on save; every process merges, the
    main process saves). A 4-bit student's adapter is merged onto its base reloaded in full
    precision: merging into the 4-bit weights would re-quantize them.
    """
    lora = cfg.lora
    if lora.enabled and hasattr(model, "merge_and_unload"):
        on_main(lambda: save_pretrained(model, tokenizer, out / "adapter"))
        if not lora.merge_on_save:
            return model
        if cfg.load_in_4bit:
            model = merge_saved_adapter(out / "adapter", cfg.dtype)
        else:
            model = model.merge_and_unload()
    on_main(lambda: _publish(model, tokenizer, out))
    return model


def _publish(model, tokenizer, out: Path) -> None:
    staging = out / "student.tmp-final"
    save_pretrained(model, tokenizer, staging)
    for child in staging.iterdir():
        child.replace(out / child.name)
    staging.rmdir()
