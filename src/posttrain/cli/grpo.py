"""`posttrain grpo RECIPE.yaml`: validate the recipe, then run GRPO."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from posttrain.cli.common import SET_HELP, check_rewards, console, run_or_exit, show_resolved, show_reward_errors


def grpo(
    recipe: Path = typer.Argument(..., help="YAML recipe (see recipes/tiny-math.yaml).", dir_okay=False),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output.dir from its newest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in output.dir."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate the recipe, print it resolved, and exit."),
    push_to_hub: str = typer.Option(
        None, "--push-to-hub", help="Upload the policy, its card and recipe to this Hub repo (output.push_to_hub)."
    ),
    report_to: str = typer.Option(
        None,
        "--report-to",
        help="Experiment trackers, comma-separated: tensorboard, wandb, trackio, mlflow, or none (output.report_to).",
    ),
) -> None:
    """Run GRPO on a (MoE) model with rule-based rewards, as a recipe describes."""
    from posttrain.config import GRPORecipe, load_recipe

    out = console()
    set_ = [*(set_ or []), *([f"output.push_to_hub={push_to_hub}"] if push_to_hub else [])]
    set_ += [f"output.report_to={report_to}"] if report_to else []
    cfg = run_or_exit(lambda: load_recipe(recipe, GRPORecipe, set_))
    run_or_exit(lambda: check_rewards(cfg.rewards.functions))
    if dry_run:
        show_resolved(out, cfg, str(recipe))
        return
    from posttrain.grpo.run import run

    command = shlex.join(["posttrain", "grpo", str(recipe), *[a for s in set_ or [] for a in ("--set", s)]])
    summary = run_or_exit(
        lambda: run(cfg, out, resume=resume, overwrite=overwrite, base_dir=Path.cwd(), command=command)
    )
    _print_result(out, summary, cfg.output.dir, cfg.output.plots)
    show_reward_errors(out, summary)


def _print_result(out, summary: dict, out_dir: str, plots: bool) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    out.print(
        f"[bold green]done[/bold green] in {summary['wall_seconds']:.0f}s, {summary['steps']} steps. "
        f"held-out pass@1 {pct(summary['base_accuracy'])} -> {pct(summary['final_accuracy'])}, "
        f"greedy {pct(summary['base_greedy_accuracy'])} -> {pct(summary['final_greedy_accuracy'])}"
    )
    out.print(
        f"outputs in {out_dir}: policy (from_pretrained), metrics.jsonl, summary.json"
        + (", reward.png" if plots else "")
    )
