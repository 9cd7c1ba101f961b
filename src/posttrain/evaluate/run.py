"""`posttrain eval`: sample (or read) completions, score them, summarise, report, gate.

load rows -> rewards -> (model: sample in resumable chunks | file: join completions) ->
score -> summarize -> report.json / report.md / samples.jsonl -> --min gates, --min-gain against --baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from posttrain.data.load import load_rows, source_kind, to_prompt
from posttrain.data.splits import EVAL_SEED_OFFSET
from posttrain.errors import PosttrainError
from posttrain.evaluate.baseline import compare, load_baseline
from posttrain.evaluate.completions import join_completions
from posttrain.evaluate.metrics import summarize
from posttrain.evaluate.report import (
    Report,
    Sampling,
    check_gates,
    gate_names,
    gate_values,
    parse_gates,
    render_table,
    write_report,
    write_samples,
)
from posttrain.evaluate.sampling import SamplingSettings, generate_batches
from posttrain.evaluate.scoring import answers_of, build_rewards, reward_errors, reward_name, score_rows
from posttrain.io import append_jsonl, read_jsonl, repair_torn_tail
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.models.moe import UnsupportedMoEError, count_routing, is_moe
from posttrain.models.replay import DecodeMismatch
from posttrain.telemetry import report_html
from posttrain.telemetry.heatmap import plot_routing_load
from posttrain.telemetry.plots import pass_at_k_curve, plot_pass_at_k
from posttrain.telemetry.progress import progress_task, quiet_libraries
from posttrain.telemetry.routing_stats import routing_summary


@dataclass
class EvalRequest:
    data: str
    rows: list[dict] | None = None  # the problems, already chosen (a recipe's held-out split); else from `data`
    model: str | None = None
    completions: str | None = None
    split: str = "test"
    config_name: str | None = None
    num_problems: int | None = None
    task_args: dict = field(default_factory=dict)
    problem_seed: int = 7  # a GRPO recipe's eval.seed: built-in tasks then draw its held-out problems
    system_prompt: str | None = None
    rewards: list = field(default_factory=lambda: [{"name": "accuracy"}, {"name": "format"}])
    correctness_reward: str = "accuracy"
    strict_rewards: bool = False  # a recipe's rewards.strict: a failing reward stops the eval
    ks: list[int] = field(default_factory=lambda: [1])
    gates: list[str] = field(default_factory=list)
    baseline: str | None = None  # report.json of the model to beat (evaluate.baseline)
    gains: list[str] = field(default_factory=list)  # --min-gain METRIC=DELTA, against `baseline`
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    output_dir: str = "outputs/eval"
    resume: bool = False


@dataclass
class EvalResult:
    report: Report
    failures: list[str]


def run(req: EvalRequest, console: Console, base_dir: Path | None = None) -> EvalResult:

    started = time.time()
    quiet_libraries()
    if bool(req.model) == bool(req.completions):
        raise PosttrainError("give exactly one of --model (sample completions) or --completions FILE.jsonl")
    rewards, correctness = build_rewards(req.rewards, req.correctness_reward, base_dir, strict=req.strict_rewards)
    known = gate_names(req.ks, [reward_name(f) for f in rewards])
    gates = parse_gates(req.gates, known=known)
    bars = parse_gates(req.gains, known=known, flag="--min-gain")
    s = req.sampling
    sampling = Sampling(
        n=None if req.completions else s.n,
        temperature=None if req.completions else s.temperature,
        top_p=None if req.completions else s.top_p,
        max_new_tokens=None if req.completions else s.max_new_tokens,
        seed=None if req.completions else s.seed,
    )
    if bars and not req.baseline:
        raise PosttrainError("--min-gain needs --baseline REPORT.json: the eval of the model to beat")
    # Before any sampling: a baseline evaluated differently is refused now, not after the work.
    baseline = load_baseline(req.baseline, req.data, sampling) if req.baseline else None
    rows = _rows(req)
    out = Path(req.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if req.completions:
        records, routing = _score_file(req, rows, rewards, correctness), None
    else:
        records, routing = _sample_model(req, rows, rewards, correctness, out, console)
    metrics = summarize(records, req.ks, answers_of(correctness).equivalent)
    errors = {name: count for name, count in reward_errors(rewards, correctness).items() if count}
    if errors:  # rows this eval scored None because the reward failed (chunks resumed from disk excluded)
        metrics["reward_errors"] = errors
    report = Report(
        model=req.model or f"completions: {req.completions}",
        data=req.data,
        sampling=sampling,
        metrics=metrics,
        routing=routing,
        wall_seconds=round(time.time() - started, 2),
    )
    failures = []
    if baseline is not None:
        report.baseline, failures = compare(metrics, baseline, req.baseline, bars)
    if req.completions:
        write_samples(records, out)
    write_report(report, out)
    _write_html(report, records, req.baseline, out)
    render_table(report, console)
    return EvalResult(report=report, failures=check_gates(report.metrics, gates) + failures)


def _write_html(report: Report, records: list[dict], baseline: str | None, out: Path) -> None:
    """report.html: the problems to browse, beside the baseline's answers when its samples.jsonl is there."""
    runs = {"model": records}
    theirs = Path(baseline).parent / "samples.jsonl" if baseline else None
    if theirs is not None and theirs.is_file():
        runs = {"baseline": read_jsonl(theirs), "model": records}
    curves = {"model": pass_at_k_curve(report.metrics)}
    if report.baseline:
        curves = {"baseline": pass_at_k_curve(report.baseline["metrics"]), **curves}
    figures = {
        "pass@k on these problems": plot_pass_at_k(curves, out / "pass_at_k.png", title="eval"),
        "expert load by layer (MoE routing)": plot_routing_load(report.routing, out / "expert_load.png"),
    }
    s = report.sampling
    facts = [
        ("model", report.model),
        ("data", report.data),
        (
            "sampling",
            f"{s.n} samples per problem, temperature {s.temperature}, top_p {s.top_p}, max_new_tokens {s.max_new_tokens}"
            if s.n
            else "scored from a completions file",
        ),
        ("metrics", ", ".join(f"{k} {v:.3f}" for k, v in gate_values(report.metrics).items() if v is not None)),
        ("made", report.created_at),
    ]
    report_html.write(
        out / "report.html", f"posttrain eval: {report.model}", facts, runs, {k: v for k, v in figures.items() if v}
    )


def _rows(req: EvalRequest) -> list[dict]:
    if req.rows is not None:
        return req.rows[: req.num_problems] if req.num_problems else req.rows
    if source_kind(req.data) == "task":
        # The same seed as a GRPO run's held-out split, so `eval` reproduces its figures.
        seed = req.problem_seed + EVAL_SEED_OFFSET
        return load_rows(req.data, n=req.num_problems or 200, seed=seed, task_args=req.task_args)
    return load_rows(req.data, split=req.split, config_name=req.config_name, n=req.num_problems)


def _score_file(req: EvalRequest, rows, rewards, correctness) -> list[dict]:

    matched, samples = join_completions(req.completions, rows)
    return score_rows(matched, samples, rewards, correctness, answers_of(correctness).extract)


def _sample_model(req: EvalRequest, rows, rewards, correctness, out: Path, console: Console):

    samples_path = out / "samples.jsonl"
    done = _already_done(samples_path, req.resume)
    tokenizer = load_tokenizer(req.model)
    model = load_model(req.model)
    chat = tokenizer.chat_template is not None
    prompts = [to_prompt(r["question"], req.system_prompt, chat) for r in rows]
    if done:
        console.print(f"resuming: {len(done)} problems already in {samples_path}, {len(rows) - len(done)} to go")

    def finished(indices: list[int]) -> bool:
        return all(str(rows[i]["id"]) in done for i in indices)

    # Batches are planned from all the prompts and seeded by their place in the plan, so a resumed
    # eval samples the unfinished ones exactly as the interrupted run would have (and as a GRPO run's
    # held-out evaluation does), appending one batch at a time: a crash loses at most one batch.
    probe = _mismatch_probe(model, req.sampling.temperature)
    with count_routing(model) as routing, progress_task(console, "eval: sampling", total=len(rows)) as advance:
        advance(sum(str(r["id"]) in done for r in rows))
        for idx, samples in generate_batches(model, tokenizer, prompts, req.sampling, skip=finished, probe=probe):
            batch_rows, batch_prompts = [rows[i] for i in idx], [prompts[i] for i in idx]
            for record in score_rows(
                batch_rows, samples, rewards, correctness, answers_of(correctness).extract, prompts=batch_prompts
            ):
                if str(record["id"]) not in done:
                    append_jsonl(samples_path, record)
            advance(len(idx))
    by_id = {str(r["id"]): r for r in read_jsonl(samples_path)}
    records = [by_id[str(r["id"])] for r in rows if str(r["id"]) in by_id]
    report = _routing_report(routing.counts())
    mismatch = probe.summary() if probe is not None else None
    if report is not None and mismatch is not None:
        report["decode_mismatch"] = mismatch
    return records, report


def _mismatch_probe(model, temperature: float) -> DecodeMismatch | None:
    """An MoE of a family posttrain routes: measure decoding against a full forward (one extra forward
    per batch); otherwise None."""
    if not is_moe(model):
        return None
    try:
        return DecodeMismatch(model, temperature)
    except UnsupportedMoEError:
        return None  # count_routing already warned


def _already_done(path: Path, resume: bool) -> set[str]:
    if not path.exists():
        return set()
    if not resume:
        path.unlink()  # a fresh eval replaces the previous samples
        return set()
    repair_torn_tail(path)
    return {str(r["id"]) for r in read_jsonl(path)}


def _routing_report(counts: dict) -> dict | None:
    """Expert load of this eval's sampling (resumed chunks excluded); None for dense models."""
    if not counts or not any(sum(row) for row in counts.values()):
        return None

    return routing_summary(counts)
