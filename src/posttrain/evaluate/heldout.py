"""Held-out evaluation of an in-memory policy: sample, score, summarise.

GRPO and distillation call this for their before/after figures; `posttrain eval --recipe` samples
the same problems in the same batches (`evaluate.sampling`'s plan) from a saved policy, so all three
report the same numbers for the same model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rich.console import Console

from posttrain import distributed
from posttrain.data.load import to_prompt
from posttrain.evaluate.metrics import summarize
from posttrain.evaluate.sampling import SamplingSettings, generate
from posttrain.evaluate.scoring import answers_of, score_rows
from posttrain.telemetry.progress import progress_task


def eval_sampling(cfg, cache: str = "dynamic", template_kwargs=None, sampler: str = "posttrain") -> SamplingSettings:
    """A recipe's `eval` section (and `generation.cache` / `.sampler`, `data.chat_template_kwargs`) as sampling
    settings."""
    return SamplingSettings(
        n=cfg.num_samples,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        cache=cache,
        sampler=sampler,
        template_kwargs=dict(template_kwargs or {}),
    )


def sample_and_score(
    model, tokenizer, rows, prompts, settings: SamplingSettings, reward_funcs, correctness, console: Console, label: str
) -> list[dict]:
    """One scored record per row, in order. Under `accelerate launch` each process samples a block of
    the rows (seeded from the block's first index) and every process gets all the records back."""

    mine = distributed.share(len(prompts))
    my_rows, my_prompts = [rows[i] for i in mine], [prompts[i] for i in mine]
    settings = replace(settings, seed=settings.seed + (mine[0] if mine else 0))
    with progress_task(console, label, total=len(mine)) as advance:
        samples = generate(model, tokenizer, my_prompts, settings, on_batch=advance)
    records = score_rows(
        my_rows, samples, reward_funcs, correctness, answers_of(correctness).extract, prompts=my_prompts
    )
    return distributed.gather_shares(mine, records)


@dataclass(frozen=True)
class HeldOut:
    """A run's held-out problems and how it samples and scores them: what its before/after
    evaluations (base and trained policy; teacher, student before and after) share."""

    rows: Sequence[dict]
    system_prompt: str | None
    settings: SamplingSettings
    rewards: Sequence
    correctness: Callable
    console: Console

    def prompts(self, tokenizer) -> list:
        """The rows as prompts for this tokenizer: through its chat template when it has one."""
        chat = tokenizer.chat_template is not None
        return [to_prompt(row["question"], self.system_prompt, chat) for row in self.rows]


def heldout_accuracy(model, tokenizer, heldout: HeldOut, label: str) -> dict:
    """pass@1 (mean over `settings.n` samples) and greedy accuracy on the held-out rows."""
    equivalent = answers_of(heldout.correctness).equivalent
    prompts, settings = heldout.prompts(tokenizer), heldout.settings
    scoring = (heldout.rewards, heldout.correctness, heldout.console)
    sampled = sample_and_score(model, tokenizer, heldout.rows, prompts, settings, *scoring, f"{label}: sampling")
    greedy_settings = replace(settings, temperature=0.0)
    greedy = sample_and_score(model, tokenizer, heldout.rows, prompts, greedy_settings, *scoring, f"{label}: greedy")
    metrics = summarize(sampled, [1], equivalent)
    greedy_metrics = summarize(greedy, [1], equivalent)
    return {
        "accuracy": metrics["pass@1"],
        "accuracy_ci95": metrics["pass@1_ci95"],
        "greedy_accuracy": greedy_metrics["pass@1"],
        "format_rate": metrics.get("format_rate"),
        "mean_length": metrics["length"]["mean"],
        "truncation_rate": metrics["truncation_rate"],
        "num_problems": metrics["n_problems"],
        "num_samples": settings.n,
        "records": sampled,
    }


def greedy_accuracy(model, tokenizer, heldout: HeldOut, label: str) -> float:
    """Greedy accuracy alone on `heldout.rows` (a warm-start's check: one decode per problem)."""
    settings = replace(heldout.settings, temperature=0.0)
    scoring = (heldout.rewards, heldout.correctness, heldout.console)
    records = sample_and_score(model, tokenizer, heldout.rows, heldout.prompts(tokenizer), settings, *scoring, label)
    return summarize(records, [1], answers_of(heldout.correctness).equivalent)["pass@1"]


def result_line(result: dict, settings: SamplingSettings, label: str) -> str:
    """The console line of one held-out evaluation."""
    return (
        f"held-out ({label}): pass@1 {result['accuracy']:.3f} (n={settings.n}, T={settings.temperature}), "
        f"greedy {result['greedy_accuracy']:.3f}, format {result['format_rate'] or 0:.3f}"
    )
