"""The model card (`README.md`) of every model a run saves, in the Hub's format, built from the run.

YAML metadata the Hub indexes (base model, library, datasets, tags, pipeline), then what a reader
needs to trust the model or reproduce it: the command, the recipe as run, the data, the rewards,
held-out figures before and after with their n and temperature, MoE routing health, time and cost,
and the posttrain version. Pure functions of the run's recipe and summary, so a card says only
what the run measured.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from posttrain import __version__
from posttrain.io import atomic_write_text

TAGS = ["posttrain", "trl", "reasoning"]


def metadata(*, base_model: str | None, datasets: list[str], tags: list[str], library: str = "transformers") -> dict:
    """The card's YAML header. `base_model` and `datasets` are Hub ids or omitted (local paths
    and built-in tasks mean nothing on the Hub)."""
    meta: dict = {"library_name": library, "pipeline_tag": "text-generation", "tags": [*TAGS, *tags]}
    if base_model:
        meta["base_model"] = base_model
    if datasets:
        meta["datasets"] = datasets
    return meta


def render(meta: dict, title: str, sections: list[tuple[str, str]]) -> str:
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    body = "\n\n".join(f"## {name}\n\n{text.strip()}" for name, text in sections if text and text.strip())
    return f"---\n{header}---\n\n# {title}\n\n{body}\n"


def points(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def heldout_table(rows: list[tuple[str, dict | None]], ev: dict) -> str:
    """Held-out pass@1 and greedy accuracy of each (label, result), with what they were measured on."""
    lines = ["| model | pass@1 | greedy | format |", "|---|---|---|---|"]
    for label, result in rows:
        if result is not None:
            lines.append(
                f"| {label} | {points(result.get('accuracy'))} | {points(result.get('greedy_accuracy'))} | "
                f"{points(result.get('format_rate'))} |"
            )
    if len(lines) == 2:
        return "No held-out evaluation (`eval.enabled: false`)."
    n, samples, temperature = ev.get("num_problems"), ev.get("num_samples"), ev.get("temperature")
    return "\n".join(lines) + (
        f"\n\n{n} held-out problems never seen in training; pass@1 is the mean over {samples} samples "
        f"per problem at temperature {temperature}; greedy decodes once at temperature 0."
    )


def routing_section(routing: dict | None) -> str:
    if not routing:
        return ""
    return (
        f"At step {routing['step']}: MaxVio {routing['max_vio_mean']:.3f} (mean over MoE layers; 0 is perfectly "
        f"balanced), normalised routing entropy {routing['entropy_mean']:.3f} (1 is uniform), "
        f"{routing['dead_experts']} dead experts. Per-step values: `metrics.jsonl` (`moe/*`)."
    )


def routing_from_metrics(rows: list[dict]) -> dict | None:
    """The last logged MoE routing figures of a run's metrics rows, if it logged any."""
    for row in reversed(rows):
        if "moe/max_vio_mean" in row:
            return {
                "step": row.get("step"),
                "max_vio_mean": row["moe/max_vio_mean"],
                "entropy_mean": row.get("moe/entropy_mean", float("nan")),
                "dead_experts": row.get("moe/dead_experts", 0),
            }
    return None


def cost_line(summary: dict) -> str:
    cost = summary.get("cost") or {}
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in (summary.get("stage_seconds") or {}).items())
    text = f"Wall time {summary.get('wall_seconds', 0):.0f} s ({stages})."
    if cost.get("device"):
        text += f" Device: {cost['device']}."
    if cost.get("usd") is not None:
        text += f" Estimated cost ${cost['usd']:.2f}."
    return text


def reproduce(command: str, recipe: dict) -> str:
    recipe_yaml = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)
    return (
        f"```bash\n{command}\n```\n\n`recipe.yaml` beside this card is the recipe as run, every override applied:\n\n"
        f"<details><summary>recipe.yaml</summary>\n\n```yaml\n{recipe_yaml}```\n\n</details>"
    )


def rewards_text(recipe: dict) -> str:
    functions = (recipe.get("rewards") or {}).get("functions") or []
    if not functions:
        return ""
    return "\n".join(f"- `{f.get('name')}`, weight {f.get('weight', 1.0)}" for f in functions)


def grpo_card(
    recipe: dict,
    summary: dict,
    *,
    command: str,
    base_model: str | None,
    datasets: list[str],
    routing: dict | None = None,
    adapter: bool = False,
) -> str:
    model = recipe["model"]
    data = recipe["data"]
    ev = summary.get("eval") or {}
    meta = metadata(
        base_model=base_model, datasets=datasets, tags=["grpo", "moe"], library="peft" if adapter else "transformers"
    )
    what = "A LoRA adapter" if adapter else "A policy"
    steps = summary.get("steps")
    intro = (
        f"{what} trained with GRPO (rule-based rewards) by posttrain {__version__} from "
        f"`{model['name_or_path']}` ({summary.get('params_total', 0):,} parameters, "
        f"{summary.get('params_active', 0):,} active per token), {steps} steps."
    )
    warm_steps = (summary.get("warmstart") or {}).get("steps") or model.get("warmstart", {}).get("steps")
    if warm_steps:  # summary's count: until_greedy may have added rounds to the recipe's steps
        intro += f" The base was first warm-started with {warm_steps} SFT steps on worked solutions."
    data_text = f"Source `{data['source']}`" + (
        f", task arguments `{data['task_args']}`" if data.get("task_args") else ""
    )
    data_text += f"; {data.get('num_train') or 'all'} training problems."
    return render(
        meta,
        f"GRPO {'LoRA adapter' if adapter else 'policy'} from {model['name_or_path']}",
        [
            ("Model", intro),
            ("Held-out results", heldout_table([("base", ev.get("base")), ("after GRPO", ev.get("final"))], ev)),
            ("Rewards", rewards_text(recipe)),
            ("Data", data_text),
            ("MoE routing", routing_section(routing)),
            ("Time and cost", cost_line(summary)),
            ("Reproduce", reproduce(command, recipe)),
        ],
    )


def distill_card(
    recipe: dict, summary: dict, *, command: str, base_model: str | None, datasets: list[str], adapter: bool = False
) -> str:
    teacher, student = summary["teacher"], summary["student"]
    ev = summary.get("eval") or {}
    meta = metadata(
        base_model=base_model,
        datasets=datasets,
        tags=["distillation", "knowledge-distillation"],
        library="peft" if adapter else "transformers",
    )
    traces = summary.get("traces") or {}
    kd = summary.get("logit_kd") or {}
    intro = (
        f"A student distilled by posttrain {__version__}: `{student['name_or_path']}` "
        f"({student['params_total']:,} parameters) from the teacher `{teacher['name_or_path']}` "
        f"({teacher['params_total']:,} parameters), by sequence-level KD on teacher traces kept by the rewards"
        + (f", then logit KD ({kd.get('divergence')}, teacher {kd.get('teacher')})." if kd.get("enabled") else ".")
    )
    if traces:
        intro += f" Traces: {traces.get('kept', '?')} kept of {traces.get('samples', '?')} sampled."
    return render(
        meta,
        f"Student distilled from {teacher['name_or_path']}",
        [
            ("Model", intro),
            (
                "Held-out results",
                heldout_table(
                    [
                        ("teacher", ev.get("teacher")),
                        ("student before", ev.get("student_before")),
                        ("student after", ev.get("student")),
                    ],
                    ev,
                ),
            ),
            ("Rewards", rewards_text(recipe)),
            ("Data", f"Source `{recipe['data']['source']}`."),
            ("Time and cost", cost_line(summary)),
            ("Reproduce", reproduce(command, recipe)),
        ],
    )


def write_card(folder: Path, text: str) -> None:
    atomic_write_text(Path(folder) / "README.md", text)


def write_cards(out: Path, card) -> None:
    """The model's card in `out`, and the adapter's in `out/adapter` when a LoRA adapter was saved.

    `card(adapter: bool) -> str` renders either one."""
    write_card(out, card(False))
    if (Path(out) / "adapter" / "adapter_config.json").is_file():
        write_card(Path(out) / "adapter", card(True))
