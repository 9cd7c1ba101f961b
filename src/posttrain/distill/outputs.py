"""What a finished distillation leaves for people: report.html (teacher and student side by side on the
held-out problems) and the model cards."""

from __future__ import annotations

from pathlib import Path

from posttrain.config.distill_schema import DistillRecipe
from posttrain.data.load import source_kind
from posttrain.evaluate.browse import write_heldout_html
from posttrain.models.loading import hub_model_id
from posttrain.telemetry.model_card import distill_card, write_cards


def write_html(recipe: DistillRecipe, summary: dict, out: Path, command: str, correctness) -> None:
    """report.html: the held-out problems, teacher and student (before and after) side by side."""
    pct = lambda value: "n/a" if value is None else f"{100 * value:.1f}%"  # noqa: E731
    facts = [
        ("command", command),
        ("teacher", recipe.teacher.name_or_path),
        ("student", recipe.student.name_or_path),
        ("data", f"{recipe.data.source}: {summary['eval']['num_problems']} held-out problems"),
        (
            "sampling",
            f"{recipe.eval.num_samples} samples per problem at temperature {recipe.eval.temperature}, and greedy",
        ),
        (
            "pass@1",
            f"teacher {pct(summary['teacher']['accuracy'])}; student {pct(summary['student_before_accuracy'])} -> "
            f"{pct(summary['student']['accuracy'])}",
        ),
    ]
    figures = {"expert load over both KD stages (MoE routing)": out / "expert_load.png"}
    labels = ["teacher", "student_before", "student"]
    title = f"posttrain distill: {out.name}"
    write_heldout_html(out, title, labels, facts, correctness, recipe.eval.num_samples, figures)


def write_cards_for(recipe: DistillRecipe, summary: dict, out: Path, command: str) -> None:
    """README.md model cards for the student (the run folder) and, with LoRA, its adapter."""
    kwargs = dict(
        command=command,
        base_model=hub_model_id(recipe.student),
        datasets=[recipe.data.source] if source_kind(recipe.data.source) == "hub" else [],
    )
    as_run = recipe.model_dump(mode="json")
    write_cards(out, lambda adapter: distill_card(as_run, summary, adapter=adapter, **kwargs))
