"""`posttrain eval`: score a model, or completions made elsewhere, with the recipe's rewards."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from posttrain.cli.common import SET_HELP, console, run_or_exit


def eval_command(
    model: str = typer.Option(None, "--model", help="Checkpoint or Hub name to sample from."),
    data: str = typer.Option(
        None, "--data", help="Built-in task, local JSONL/Parquet file, or Hub dataset (default: the recipe's)."
    ),
    completions: Path = typer.Option(
        None, "--completions", help="Score these completions (JSONL) instead of sampling a model.", dir_okay=False
    ),
    recipe: Path = typer.Option(
        None,
        "--recipe",
        help="Take rewards, task arguments, system prompt and sampling from this recipe.",
        dir_okay=False,
    ),
    reward: list[str] = typer.Option(
        None, "--reward", help="Reward to score with (repeatable); default: accuracy and format."
    ),
    n: int = typer.Option(
        None, "--n", min=1, help="Samples per problem (default 8, or the recipe's eval.num_samples)."
    ),
    k: str = typer.Option("1", "--k", help="Comma-separated k for pass@k and maj@k, each <= n (e.g. 1,4,8)."),
    temperature: float = typer.Option(None, "--temperature", min=0.0, help="Sampling temperature; 0 is greedy."),
    top_p: float = typer.Option(None, "--top-p", min=0.0, max=1.0, help="Nucleus sampling."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1, help="Generation budget per completion."),
    num_problems: int = typer.Option(None, "--num-problems", min=1, help="Evaluate at most this many problems."),
    split: str = typer.Option(
        None, "--split", help="Split of a Hub dataset (default test, or the recipe's eval.split)."
    ),
    config_name: str = typer.Option(None, "--config-name", help="Hub dataset configuration (gsm8k: main)."),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help="Sequences generated together (default 256, or the recipe's eval.batch_size)."
    ),
    seed: int = typer.Option(None, "--seed", help="Sampling seed (default 0, or the recipe's eval.seed)."),
    output_dir: Path = typer.Option(
        Path("outputs/eval"), "--output-dir", help="Where report.json, report.md and samples.jsonl go."
    ),
    min_: list[str] = typer.Option(
        None, "--min", help="Gate: METRIC=VALUE; exit 1 when the metric falls short (repeatable)."
    ),
    baseline: Path = typer.Option(
        None,
        "--baseline",
        help="report.json of the model to beat, evaluated on the same data with the same sampling.",
        dir_okay=False,
    ),
    min_gain: list[str] = typer.Option(
        None,
        "--min-gain",
        help="Gate: METRIC=DELTA; exit 1 unless the metric beats --baseline's by DELTA (repeatable).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Keep problems already in samples.jsonl and sample the rest."),
    set_: list[str] = typer.Option(None, "--set", help=SET_HELP + " Applies to --recipe."),
) -> None:
    """Score a model or pre-generated completions: pass@k, maj@k, format rate, rewards, lengths."""
    from posttrain.evaluate.run import EvalRequest, run

    out = console()

    def build_request() -> EvalRequest:
        from posttrain.errors import PosttrainError

        req = _from_recipe(recipe, set_, data) if recipe else EvalRequest(data=data or "")
        if not req.data:
            raise PosttrainError(
                "--data is required (a built-in task, a JSONL/Parquet file or a Hub dataset) unless --recipe gives one"
            )
        req.model = model
        req.split, req.config_name = split or req.split, config_name or req.config_name
        req.completions = str(completions) if completions else None
        req.ks = _parse_ks(k)
        req.gates = list(min_ or [])
        req.baseline, req.gains = (str(baseline) if baseline else None), list(min_gain or [])
        req.output_dir, req.resume = str(output_dir), resume
        req.num_problems = num_problems or req.num_problems
        if reward:
            req.rewards = [{"name": r} for r in reward]
        s = req.sampling
        req.sampling = replace(
            s,
            n=n or (s.n if recipe else 8),
            temperature=s.temperature if temperature is None else temperature,
            top_p=s.top_p if top_p is None else top_p,
            max_new_tokens=max_new_tokens or s.max_new_tokens,
            batch_size=batch_size or s.batch_size,
            seed=s.seed if seed is None else seed,
        )
        return req

    request = run_or_exit(build_request)
    result = run_or_exit(lambda: run(request, out, base_dir=Path.cwd()))
    out.print(f"report: {output_dir}/report.json, {output_dir}/report.md, {output_dir}/samples.jsonl")
    if result.failures:
        for failure in result.failures:
            typer.echo(f"gate failed: {failure}", err=True)
        raise typer.Exit(1)


def _parse_ks(text: str) -> list[int]:
    from posttrain.errors import PosttrainError

    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise PosttrainError(f"--k {text!r}: expected comma-separated integers, e.g. 1,4,8") from None
    if not ks or ks[0] < 1:
        raise PosttrainError(f"--k {text!r}: every k must be at least 1")
    return ks


def _from_recipe(path: Path, overrides, data: str | None):
    """A GRPO recipe's held-out problems (the rows its run evaluated, chosen by the same split),
    prompts, rewards and eval sampling; `--data` replaces the problems with another source's."""
    from posttrain.config import GRPORecipe, load_recipe
    from posttrain.data.splits import make_splits
    from posttrain.evaluate.heldout import eval_sampling
    from posttrain.evaluate.run import EvalRequest

    cfg = load_recipe(path, GRPORecipe, overrides)
    e = cfg.eval
    rows = None if data else make_splits(cfg.data, e.model_copy(update={"enabled": True})).heldout
    return EvalRequest(
        data=data or e.source or cfg.data.source,
        rows=rows,
        split=e.split,
        config_name=cfg.data.config_name,
        task_args=dict(cfg.data.task_args),
        system_prompt=cfg.data.system_prompt,
        rewards=[r.model_dump() for r in cfg.rewards.functions],
        strict_rewards=cfg.rewards.strict,
        correctness_reward=e.correctness_reward,
        problem_seed=e.seed,
        num_problems=e.num_problems,
        sampling=eval_sampling(
            e,
            cache=cfg.generation.cache,
            template_kwargs=cfg.data.chat_template_kwargs,
            sampler=cfg.generation.sampler,
        ),
    )
