"""`posttrain distill [RECIPE.yaml] [--teacher T --student S --data D]`: validate, then distil.

Flags fill or override recipe fields: --teacher -> teacher.name_or_path, --student ->
student.name_or_path, --data -> data.source, --output-dir -> output.dir; --set reaches any key.
Without a recipe the defaults apply (rewards accuracy + format, sequence-level KD only); without
--data either, the teacher's own training data when it is a posttrain run (its recipe.yaml),
else GSM8K's training split from the Hub.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer

from posttrain.cli.common import SET_HELP, check_rewards, console, run_or_exit, show_resolved, show_reward_errors

DISTILL_SET_HELP = SET_HELP.replace("grpo.learning_rate", "distill.max_steps=200 or distill.learning_rate")


def distill(
    recipe: Path = typer.Argument(None, help="YAML recipe (see recipes/tiny-distill.yaml).", dir_okay=False),
    recipe_opt: Path = typer.Option(
        None, "--recipe", help="The recipe, as an option instead of the argument.", dir_okay=False
    ),
    teacher: str = typer.Option(None, "--teacher", help="Teacher: checkpoint, Hub name, or build:tiny-moe."),
    student: str = typer.Option(
        None,
        "--student",
        help="Student: checkpoint, Hub name, or a fresh model, build:tiny-dense (arguments inline: build:tiny-dense?hidden_size=64&num_layers=2).",
    ),
    data: str = typer.Option(
        None, "--data", help="Built-in task (arithmetic, countdown), JSONL/JSON/Parquet file, or Hub dataset."
    ),
    output_dir: str = typer.Option(None, "--output-dir", help="Where the run writes (output.dir)."),
    set_: list[str] = typer.Option(None, "--set", help=DISTILL_SET_HELP),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in the output folder; finished stages are reused."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in the output folder."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate the recipe, print it resolved, and exit."),
    push_to_hub: str = typer.Option(
        None, "--push-to-hub", help="Upload the student, its card and recipe to this Hub repo (output.push_to_hub)."
    ),
    report_to: str = typer.Option(
        None,
        "--report-to",
        help="Experiment trackers, comma-separated: tensorboard, wandb, trackio, mlflow, or none (output.report_to).",
    ),
) -> None:
    """Distil a teacher's reasoning into a smaller student: traces filtered by rewards, sequence KD, logit KD."""
    out = console()
    path = recipe or recipe_opt
    set_ = [*(set_ or []), *([f"output.push_to_hub={push_to_hub}"] if push_to_hub else [])]
    set_ += [f"output.report_to={report_to}"] if report_to else []
    cfg = run_or_exit(lambda: load(path, recipe_opt if recipe else None, teacher, student, data, output_dir, set_))
    run_or_exit(lambda: check_rewards(cfg.rewards.functions))
    if dry_run:
        show_resolved(out, cfg, str(path or "flags"))
        return
    from posttrain.distill.run import run

    flags = {"--recipe": recipe_opt, "--teacher": teacher, "--student": student, "--data": data}
    flags["--output-dir"] = output_dir
    words = ["posttrain", "distill", *([str(recipe)] if recipe else [])]
    words += [w for flag, value in flags.items() if value for w in (flag, str(value))]
    words += [w for s in set_ or [] for w in ("--set", s)]
    summary = run_or_exit(
        lambda: run(cfg, out, resume=resume, overwrite=overwrite, base_dir=Path.cwd(), command=shlex.join(words))
    )
    _print_result(out, summary, cfg.output.dir)
    show_reward_errors(out, summary)


def load(path: Path | None, second: Path | None, teacher, student, data, output_dir, sets: list[str]):
    """The validated recipe: the file (if any), then the flags, then --set, all checked together."""
    from posttrain.config.distill_schema import DistillRecipe
    from posttrain.config.loader import load_recipe, read_yaml
    from posttrain.config.schema import BUILD_PREFIX
    from posttrain.errors import ConfigError

    if second is not None:
        raise ConfigError("give the recipe once: as the argument or as --recipe, not both")
    base = read_yaml(path)[0] if path is not None else {}
    for role, name in (("teacher", teacher), ("student", student)):
        # A checkpoint or Hub name given as a flag replaces the recipe's model, and with it the
        # builder_args that only described the recipe's `build:` model.
        section = base.get(role)
        if name is not None and not name.startswith(BUILD_PREFIX) and isinstance(section, dict):
            base[role] = {k: v for k, v in section.items() if k != "builder_args"}
    flags = {
        "teacher.name_or_path": teacher,
        "student.name_or_path": student,
        "data.source": data,
        "output.dir": output_dir,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    missing = [
        f"--{key.split('.')[0]}"
        for key in ("teacher.name_or_path", "student.name_or_path")
        if key not in given and key.split(".")[0] not in base
    ]
    if missing:
        raise ConfigError(f"no {', '.join(missing)}: pass {' and '.join(missing)}, or a recipe that sets them")
    if "data.source" not in given and "data" not in base:
        base["data"] = default_data(teacher)
    # Flags are overrides like --set (the same validation), applied before --set; quoted, so a name
    # such as "null" or "1e3" stays a string.
    overrides = [f"{key}={json.dumps(value)}" for key, value in given.items()] + sets
    return load_recipe(path, DistillRecipe, overrides, data=base)


def default_data(teacher: str | None) -> dict:
    """Without --data or a recipe: the problems a posttrain-trained teacher learned on (its run's
    recipe.yaml), else GSM8K's training split from the Hub."""
    from posttrain.config.loader import read_yaml

    run_recipe = Path(teacher).expanduser() / "recipe.yaml" if teacher else None
    if run_recipe is not None and run_recipe.is_file():
        data = read_yaml(run_recipe)[0].get("data")
        if isinstance(data, dict) and data.get("source"):
            return data
    return {"source": "openai/gsm8k", "config_name": "main", "split": "train"}


def _print_result(out, summary: dict, out_dir: str) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    t, s, tr = summary["teacher"], summary["student"], summary["traces"]
    out.print(
        f"[bold green]done[/bold green] in {summary['wall_seconds']:.0f}s. held-out pass@1: teacher {pct(t['accuracy'])} "
        f"({t['params_total']:,} params), student {pct(summary['student_before_accuracy'])} -> {pct(s['accuracy'])} "
        f"({s['params_total']:,} params); traces kept {tr['kept']} of {tr['samples']} (acceptance {pct(tr['acceptance_rate'])})"
    )
    out.print(f"outputs in {out_dir}: student (from_pretrained), traces.jsonl, metrics.jsonl, summary.json")
