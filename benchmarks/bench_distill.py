"""Side by side: logit-KD student training with offline top-k teacher targets vs an online teacher.

    python benchmarks/bench_distill.py [--teacher outputs/tiny-distill/teacher] [--steps 30] [--topk 8]

One process, the same student start, the same traces and batches: the offline trainer reads the
teacher's stored top-k log-probs (posttrain's TopKDistillTrainer), the online one runs the teacher
forward every step (TRL's GKDTrainer, lambda = 0 so no sampling muddies the comparison). Prints
student-training tokens/s for both and their ratio, the one-off cost of storing the targets, and the
KL gap between top-k and full-vocabulary targets: teacher-only (what `posttrain distill` reports) and
measured against the trained student, for several k.

Without --teacher it uses outputs/tiny-distill/teacher when present (the tiny recipe's cached
teacher), else builds the tiny MoE and warm-starts it briefly: the gap needs a teacher that has
learned something, a random one spreads its mass over the whole vocabulary.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHED_TEACHER = REPO / "outputs" / "tiny-distill" / "teacher"
TEACHER_SPEC = {"hidden_size": 128, "num_layers": 3, "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2}


def make_teacher(path: str | None, warm_steps: int, work: Path):
    from posttrain.config.schema import WarmstartConfig
    from posttrain.data.load import generate_task, to_prompt
    from posttrain.models.builders import build_model
    from posttrain.models.loading import load_model, load_tokenizer
    from posttrain.models.tokenizer import build_char_tokenizer
    from posttrain.models.warmstart import run_warmstart

    path = path or (str(CACHED_TEACHER) if (CACHED_TEACHER / "config.json").is_file() else None)
    if path:
        return load_model(path, "float32"), load_tokenizer(path), path
    tokenizer = build_char_tokenizer()
    model = build_model("tiny-moe", tokenizer, seed=0, **TEACHER_SPEC)
    rows = generate_task("arithmetic", 64 * warm_steps, seed=99, task_args={"num_terms": 3})
    cfg = WarmstartConfig(steps=warm_steps, batch_size=64, learning_rate=2e-3, warmup_steps=10)
    run_warmstart(model, tokenizer, rows, [to_prompt(r["question"], None, True) for r in rows], cfg, work / "warm")
    return model, tokenizer, f"tiny MoE warm-started {warm_steps} steps"


def make_rows(tokenizer, n: int, max_length: int):
    from posttrain.data.load import generate_task, to_prompt
    from posttrain.distill.logit_kd import encode_rows

    rows = generate_task("arithmetic", n, seed=7, task_args={"num_terms": 3})
    traces = [{"prompt": to_prompt(r["question"], None, True), "completion": r["solution"]} for r in rows]
    return encode_rows(tokenizer, traces, max_length)


def train(mode: str, student, tokenizer, rows, teacher, targets, steps: int, batch: int, work: Path) -> dict:
    from posttrain.config.distill_schema import LogitKDConfig
    from posttrain.distill.logit_kd import build_trainer, kd_args

    cfg = LogitKDConfig(enabled=True, teacher=mode, max_steps=steps, per_device_train_batch_size=batch, learning_rate=3e-4, topk=targets.k)
    args = kd_args(cfg, work / mode, max_new_tokens=40, max_length=512, bf16=False, seed=0, logging_steps=steps,
                   save_steps=10**9, save_total_limit=1)
    args.save_strategy = "no"
    trainer = build_trainer(student, tokenizer, rows, cfg, args, teacher=teacher if mode == "online" else None,
                            targets=targets if mode == "offline" else None)  # the online trainer never sees the targets
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"tokens": trainer._total_train_tokens, "seconds": seconds, "tokens_per_s": trainer._total_train_tokens / seconds}


def measured_gap(teacher, student, tokenizer, rows, ks) -> dict:
    """Forward KL(teacher || student) per completion token with full-vocabulary vs top-k targets."""
    import torch

    from posttrain.distill.kd_trainers import TraceCollator
    from posttrain.distill.topk import topk_divergence

    batch = TraceCollator(tokenizer.pad_token_id)(rows)
    with torch.inference_mode():
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    t_logp = torch.log_softmax(t, -1)
    full_top = t_logp.topk(t_logp.shape[-1], -1)
    full = float(topk_divergence(s, full_top.indices, full_top.values, labels, 0.0))
    out = {"full": full}
    for k in ks:
        top = t_logp.topk(k, -1)
        out[k] = full - float(topk_divergence(s, top.indices, top.values, labels, 0.0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="Teacher checkpoint (default: the tiny recipe's cached teacher, else a quick warm-start).")
    parser.add_argument("--warm-steps", type=int, default=150, help="Warm-start steps when building a teacher here.")
    parser.add_argument("--steps", type=int, default=40, help="Training steps per mode and repeat.")
    parser.add_argument("--repeats", type=int, default=2, help="Interleaved runs per mode; the best is reported.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--topk", type=int, default=8)
    parser.add_argument("--traces", type=int, default=1024, help="Worked-solution traces to train on.")
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from posttrain.distill.topk import capture
    from posttrain.models.builders import build_model
    from posttrain.models.loading import count_parameters

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teacher, tokenizer, teacher_name = make_teacher(opts.teacher, opts.warm_steps, work)
        teacher.eval()
        student = build_model("tiny-dense", tokenizer, seed=0)
        rows = make_rows(tokenizer, opts.traces, 512)
        started = time.perf_counter()
        targets, gap = capture(teacher, [(r["input_ids"], r["prompt_len"]) for r in rows], opts.topk, tokenizer.pad_token_id)
        capture_s = time.perf_counter() - started

        # Interleaved repeats, best of each: on a shared machine the slowest run measures the neighbours.
        runs: dict[str, list[dict]] = {"offline": [], "online": []}
        for _ in range(opts.repeats):
            for mode in runs:
                trained = copy.deepcopy(student)
                torch.manual_seed(0)
                runs[mode].append(train(mode, trained, tokenizer, rows, teacher, targets, opts.steps, opts.batch_size, work))
                if mode == "offline":
                    offline_student = trained
        offline, online = (max(runs[m], key=lambda r: r["tokens_per_s"]) for m in ("offline", "online"))
        ks = sorted({1, 4, opts.topk, 16, 32})
        held = rows[:64]
        trained_gap = measured_gap(teacher, offline_student.eval(), tokenizer, held, ks)

    t_params, s_params = count_parameters(teacher), count_parameters(student)
    print(f"teacher: {teacher_name} ({t_params['total']:,} params, {t_params['active']:,} active); "
          f"student: tiny-dense ({s_params['total']:,} params)")
    print(f"{len(rows)} traces, {opts.steps} steps x batch {opts.batch_size}, best of {opts.repeats}, torch threads {torch.get_num_threads()}")
    print(f"{'mode':<28}{'tokens/s':>12}{'seconds':>10}")
    for label, best, mode in ((f"offline top-{opts.topk} targets", offline, "offline"), ("online teacher (GKD, λ=0)", online, "online")):
        every = ", ".join(f"{r['tokens_per_s']:,.0f}" for r in runs[mode])
        print(f"{label:<28}{best['tokens_per_s']:>12,.0f}{best['seconds']:>10.1f}   (runs: {every})")
    print(f"ratio offline / online: {offline['tokens_per_s'] / online['tokens_per_s']:.2f}x "
          f"(storing the targets: one teacher pass, {capture_s:.1f} s, {targets.ids.numel() * 8 / 1e6:.1f} MB as int32+fp32)")
    print(f"top-{opts.topk} KL gap, teacher-only: {gap['kl_gap_nats']:.5f} nats/token "
          f"(top-{opts.topk} hold {gap['teacher_mass']:.4f} of the teacher's mass, {gap['tokens']} tokens)")
    print(f"forward KL(teacher || offline-trained student), full vocabulary: {trained_gap['full']:.4f} nats/token")
    for k in ks:
        teacher_only = gap["by_k"].get(k, {}).get("kl_gap_nats")
        extra = f", teacher-only {teacher_only:.5f}" if teacher_only is not None else ""
        print(f"  k={k:<3} full - top-k = {trained_gap[k]:.5f} nats/token{extra}")


if __name__ == "__main__":
    main()
