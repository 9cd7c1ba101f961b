"""Side by side: logit-KD student training from stored top-k teacher targets vs an online teacher.

    python benchmarks/bench_distill.py [--quick] [--pairs large,matched,large-bpe] [--traces 1024]
        [--batch-size 32] [--epochs 3,5] [--json PATH]

One process, the same student start, the same traces, batches and training settings (checked field
by field; any difference exits 3): the offline trainer reads the teacher's stored top-k log-probs
(posttrain's TopKDistillTrainer), the online one runs the teacher forward every step (TRL's
GKDTrainer, lambda = 0 so no sampling muddies the comparison). Each repeat, alternating, times:
the teacher pass that stores the targets, one offline epoch, and one online epoch over the traces.

What offline targets save is the teacher's forward on every step of every epoch, so the ratio
depends on how much larger the teacher is than the student; each pair is measured on its own:
- `large` (the headline rows): a tiny MoE teacher with ~9x the dense student's active parameters,
  as in real reasoning distillation (DeepSeek-R1, 37B active, into R1-Distill-Qwen-7B is ~5x, into
  -1.5B ~25x);
- `matched`: the quickstart-sized teacher, about the student's size -- the worst case for stored
  targets, where the teacher forward is cheaper than the student's training step;
- `large-bpe`: the large pair on the byte-level BPE tokenizer of the real-model lane (a 2k-piece
  vocabulary rather than 106 characters): storage per token and the top-k gap there.

Rows, per pair, from the medians over repeats:
- one epoch: online seconds / (teacher top-k pass + offline seconds);
- a multi-epoch run (each of --epochs; open-r1's OpenR1-Distill-7B trains 5 epochs): online seconds
  x E / (top-k pass + offline seconds x E), the pass stored once and read every epoch, as
  `posttrain distill` does. Also printed: the epochs at which offline breaks even and reaches 2x.
Also printed: the stored bytes per token (the safetensors file written), and the KL gap between
top-k and full-vocabulary targets, teacher-only and against the trained student. The teachers are
warm-started here (seeded; --teacher takes a checkpoint for the large pair instead): the gap needs
a teacher that has learned something.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, parser, require_identical, start

TEACHER_SPEC = {  # the quickstart's model
    "hidden_size": 128,
    "num_layers": 3,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
}
LARGE_TEACHER_SPEC = {**TEACHER_SPEC, "hidden_size": 512, "num_layers": 6}
# pair -> (teacher spec, tokenizer kind, what it stands for)
PAIRS = {
    "large": (LARGE_TEACHER_SPEC, "char", "teacher ~9x the student's active parameters"),
    "matched": (TEACHER_SPEC, "char", "teacher about the student's size"),
    "large-bpe": (LARGE_TEACHER_SPEC, "bpe-qwen3", "the large pair on the byte-level BPE stand-in"),
}
ROW_PREFIX = {"large": "distill_offline", "matched": "distill_offline_matched", "large-bpe": "distill_offline_bpe"}
# GKDConfig fields that name a run rather than set it.
NOT_SETTINGS = {"output_dir", "logging_dir", "run_name"}


def make_teacher(path: str | None, warm_steps: int, seed: int, work: Path, spec: dict, tokenizer_kind: str):
    from posttrain.config.schema import WarmstartConfig
    from posttrain.data.load import generate_task, to_prompt
    from posttrain.models.builders import build_model
    from posttrain.models.loading import load_model, load_tokenizer
    from posttrain.models.tokenizer import build_tokenizer
    from posttrain.models.warmstart import run_warmstart

    if path:
        return load_model(path, "float32"), load_tokenizer(path), path
    tokenizer = build_tokenizer(tokenizer_kind)
    model = build_model("tiny-moe", tokenizer, seed=seed, **spec)
    rows = generate_task("arithmetic", 64 * warm_steps, seed=99, task_args={"num_terms": 3})
    cfg = WarmstartConfig(steps=warm_steps, batch_size=64, learning_rate=2e-3, warmup_steps=10, seed=seed)
    run_warmstart(model, tokenizer, rows, [to_prompt(r["question"], None, True) for r in rows], cfg, work / "warm")
    return (
        model,
        tokenizer,
        f"tiny MoE (hidden {spec['hidden_size']}, {spec['num_layers']} layers) warm-started {warm_steps} steps (seed {seed})",
    )


def make_rows(tokenizer, n: int, max_length: int):
    from posttrain.data.load import generate_task, to_prompt
    from posttrain.distill.logit_kd import encode_rows

    rows = generate_task("arithmetic", n, seed=7, task_args={"num_terms": 3})
    traces = [{"prompt": to_prompt(r["question"], None, True), "completion": r["solution"]} for r in rows]
    return encode_rows(tokenizer, traces, max_length)


def kd_settings(mode: str, steps: int, batch: int, topk: int, seed: int, work: Path):
    from posttrain.config.distill_schema import LogitKDConfig
    from posttrain.distill.logit_kd import kd_args

    cfg = LogitKDConfig(
        enabled=True, teacher=mode, max_steps=steps, per_device_train_batch_size=batch, learning_rate=3e-4, topk=topk
    )
    args = kd_args(
        cfg,
        work / mode,
        max_new_tokens=40,
        max_length=512,
        precision="fp32",
        seed=seed,
        logging_steps=steps,
        save_steps=10**9,
        save_total_limit=1,
    )
    args.save_strategy = "no"
    return cfg, args


def check_identical(steps: int, batch: int, topk: int, seed: int, work: Path) -> None:
    import dataclasses

    sides = {mode: kd_settings(mode, steps, batch, topk, seed, work) for mode in ("offline", "online")}
    (cfg_off, args_off), (cfg_on, args_on) = sides["offline"], sides["online"]
    fields = [f.name for f in dataclasses.fields(args_off) if f.name not in NOT_SETTINGS]
    require_identical(
        {k: getattr(args_off, k) for k in fields}, {k: getattr(args_on, k) for k in fields}, "the two GKDConfigs"
    )
    # The recipe sections differ only in where the teacher's distribution comes from.
    require_identical(
        cfg_off.model_dump(exclude={"teacher"}), cfg_on.model_dump(exclude={"teacher"}), "the two logit_kd sections"
    )


def train(mode: str, student, tokenizer, rows, teacher, targets, steps: int, batch: int, seed: int, work: Path) -> dict:
    from posttrain.distill.logit_kd import build_trainer

    cfg, args = kd_settings(mode, steps, batch, targets.k, seed, work)
    trainer = build_trainer(
        student,
        tokenizer,
        rows,
        cfg,
        args,
        teacher=teacher if mode == "online" else None,
        targets=targets if mode == "offline" else None,
    )  # the online trainer never sees the targets
    begin = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - begin
    return {"tokens": trainer._total_train_tokens, "seconds": seconds}


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


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--pairs", default=",".join(PAIRS), help=f"teacher/student pairs, of {', '.join(PAIRS)}")
    p.add_argument("--teacher", help="teacher checkpoint for the large pair (default: warm-started here)")
    p.add_argument("--warm-steps", type=int, help="warm-start steps of the teachers built here (150; quick 10)")
    p.add_argument("--traces", type=int, help="worked-solution traces: one epoch (1024; quick 64)")
    p.add_argument("--batch-size", type=int, help="traces per step (32; quick 16)")
    p.add_argument("--epochs", default="3,5", help="epochs of the multi-epoch rows, comma-separated")
    p.add_argument("--repeats", type=int, help="alternating repeats per mode, median reported (3; quick 1)")
    p.add_argument("--topk", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    pairs = [x.strip() for x in args.pairs.split(",") if x.strip()]
    unknown = sorted(set(pairs) - set(PAIRS))
    if unknown:
        p.error(f"unknown pair(s) {', '.join(unknown)}; choose from {', '.join(PAIRS)}")
    epochs = sorted({int(e) for e in args.epochs.split(",")})
    if not epochs or min(epochs) < 2:
        p.error("--epochs: each multi-epoch run needs at least 2 epochs (the one-epoch row is always there)")
    # --quick only proves the script runs (three teachers to build): its figures mean nothing.
    warm_steps = args.warm_steps or (10 if args.quick else 150)
    traces = args.traces or (64 if args.quick else 1024)
    batch = args.batch_size or (16 if args.quick else 32)
    repeats = args.repeats or (1 if args.quick else 3)
    steps = math.ceil(traces / batch)  # one epoch
    report = start(
        "distill",
        args,
        {
            "pairs": {
                name: f"teacher tiny-moe {PAIRS[name][0]} ({PAIRS[name][1]} tokenizer), student tiny-dense"
                for name in pairs
            },
            "teacher": args.teacher or f"warm-started {warm_steps} steps here",
            "traces": traces,
            "batch_size": batch,
            "steps_per_epoch": steps,
            "epochs": epochs,
            "repeats": repeats,
            "topk": args.topk,
        },
        seeds=[args.seed],
    )
    with tempfile.TemporaryDirectory() as tmp:
        check_identical(steps, batch, args.topk, args.seed, Path(tmp))
    for name in pairs:
        spec, tokenizer_kind, meaning = PAIRS[name]
        print(f"\n-- pair {name}: {meaning} --")
        med = measure_pair(args, name, spec, tokenizer_kind, warm_steps, traces, batch, repeats, steps)
        add_rows(report, name, med, epochs, traces, steps, batch, repeats)
    report.write(args.json)
    return 0


def measure_pair(args, name, spec, tokenizer_kind, warm_steps, traces, batch, repeats, steps) -> dict:
    """Median seconds of the top-k pass, an offline epoch and an online epoch for one pair (and prints
    what they rest on: parameters, tokens, storage, the top-k gap)."""
    import torch

    from posttrain.distill.topk import capture
    from posttrain.models.builders import build_model
    from posttrain.models.loading import count_parameters

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = args.teacher if name == "large" else None
        teacher, tokenizer, teacher_name = make_teacher(checkpoint, warm_steps, args.seed, work, spec, tokenizer_kind)
        teacher.eval()
        student = build_model("tiny-dense", tokenizer, seed=args.seed)
        rows = make_rows(tokenizer, traces, 512)
        encoded = [(r["input_ids"], r["prompt_len"]) for r in rows]
        capture(teacher, encoded[:32], args.topk, tokenizer.pad_token_id)  # warm-up, untimed
        times: dict[str, list[float]] = {"capture": [], "offline": [], "online": []}
        tokens = {}
        for r in range(repeats):
            begin = time.perf_counter()
            targets, gap = capture(teacher, encoded, args.topk, tokenizer.pad_token_id)
            times["capture"].append(time.perf_counter() - begin)
            for mode in ("offline", "online") if r % 2 == 0 else ("online", "offline"):
                trained = copy.deepcopy(student)
                torch.manual_seed(args.seed)
                result = train(mode, trained, tokenizer, rows, teacher, targets, steps, batch, args.seed, work)
                times[mode].append(result["seconds"])
                tokens[mode] = result["tokens"]
                if mode == "offline":
                    offline_student = trained
        stored = work / "topk.safetensors"
        targets.save(stored)  # as `posttrain distill` stores them
        stored_bytes = stored.stat().st_size
        ks = sorted({1, 4, args.topk, 16, 32})
        trained_gap = measured_gap(teacher, offline_student.eval(), tokenizer, rows[:64], ks)

    med = {k: statistics.median(v) for k, v in times.items()}
    t_params, s_params = count_parameters(teacher), count_parameters(student)
    print(
        f"teacher: {teacher_name} ({t_params['total']:,} params, {t_params['active']:,} active, "
        f"{t_params['active'] / s_params['total']:.1f}x the student's); student: tiny-dense "
        f"({s_params['total']:,} params); vocabulary {len(tokenizer):,} ({tokenizer_kind})"
    )
    for key, values in times.items():
        print(f"  {key:<8} median {med[key]:7.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"  student tokens per epoch: offline {tokens['offline']:,}, online {tokens['online']:,}")
    n_tokens = int(targets.ids.shape[0])
    print(
        f"top-{args.topk} targets: {stored_bytes / 1e6:.2f} MB stored for {n_tokens:,} completion tokens = "
        f"{stored_bytes / max(n_tokens, 1):.1f} bytes/token (full-vocabulary fp32 rows would take "
        f"{4 * len(tokenizer):,}); KL gap, teacher-only: {gap['kl_gap_nats']:.5f} nats/token "
        f"(top-{args.topk} hold {gap['teacher_mass']:.4f} of the teacher's mass)"
    )
    print(f"forward KL(teacher || offline-trained student), full vocabulary: {trained_gap['full']:.4f} nats/token")
    for k in ks:
        teacher_only = gap["by_k"].get(k, {}).get("kl_gap_nats")
        extra = f", teacher-only {teacher_only:.5f}" if teacher_only is not None else ""
        print(f"  k={k:<3} full - top-k = {trained_gap[k]:.5f} nats/token{extra}")
    med["ratio_text"] = f"teacher {t_params['active'] / s_params['total']:.1f}x the student's parameters"
    return med


def crossing(med: dict, target: float) -> str:
    """Epochs E from which E x online >= target x (pass + E x offline), the pass paid once."""
    gain = med["online"] - target * med["offline"]
    if gain <= 0:
        return f"never (online/offline per epoch is {med['online'] / med['offline']:.2f})"
    return f"{math.ceil(target * med['capture'] / gain - 1e-9)} epochs"


def add_rows(report, name: str, med: dict, epochs: list[int], traces: int, steps: int, batch: int, repeats: int):
    prefix = ROW_PREFIX[name]
    print(
        f"  offline breaks even from {crossing(med, 1.0)}, reaches 2x from {crossing(med, 2.0)} "
        f"(limit {med['online'] / med['offline']:.2f}x per epoch)"
    )
    what = f"offline top-k throughput incl. the teacher pass, {med['ratio_text']}"
    one = med["online"] / (med["capture"] + med["offline"])
    report.add(
        Row(
            f"{prefix}_1_epoch",
            one,
            what,
            "online teacher throughput",
            f"online {med['online']:.2f} s vs top-k pass {med['capture']:.2f} s + offline {med['offline']:.2f} s "
            f"for one epoch of {traces} traces ({steps} steps x {batch}); medians of {repeats} alternating repeats; "
            f"break-even from {crossing(med, 1.0)}, 2x from {crossing(med, 2.0)}",
        )
    )
    for e in epochs:
        many = e * med["online"] / (med["capture"] + e * med["offline"])
        report.add(
            Row(
                f"{prefix}_{e}_epochs",
                many,
                f"offline top-k throughput over {e} epochs, teacher pass once, {med['ratio_text']}",
                "online teacher throughput",
                f"{e} x {med['online']:.2f} s vs {med['capture']:.2f} s + {e} x {med['offline']:.2f} s, "
                "from the per-epoch medians above",
            )
        )


if __name__ == "__main__":
    sys.exit(main())
