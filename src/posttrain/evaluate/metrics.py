"""Turn scored samples into eval metrics: pass@k, maj@k, format rate, reward means, lengths.

Input is a list of per-problem records (plain dicts), as sampling + scoring produce them:

    {"id": "gsm8k-17", "prompt": "...", "answer": "42",
     "samples": [{"text": "...", "extracted": "42" | None, "correct": True | False | None,
                  "rewards": {"accuracy": 1.0, "format": 0.0}, "num_tokens": 37,
                  "truncated": False}, ...]}

`correct` is None when the checker could not parse the gold answer. A problem whose samples are
all None is *excluded*: counted in `n_excluded`, left out of every accuracy metric (pass@k,
maj@k), kept in the others (format, rewards, length, truncation), which do not need the gold.
A stray None among True/False samples counts as not correct: nothing verified it.

No torch and no reward code here: answer equivalence for majority voting is injected, so the
same numbers come out whichever checker the reward library uses.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from posttrain.errors import PosttrainError

Equivalent = Callable[[str, str], bool]

# Two-sided 95% quantile of the standard normal.
Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): the chance that k of the n samples, drawn without
    replacement, include at least one of the c correct ones.

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1..n} (1 - k/i) because the binomials
    overflow a float long before n reaches the hundreds of samples people use.

    >>> round(pass_at_k(5, 2, 2), 6)   # 1 - C(3,2)/C(5,2) = 1 - 3/10
    0.7
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset must contain a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_ci95(rates: Sequence[float]) -> tuple[float, float, float]:
    """Mean of per-problem rates in [0, 1] with a 95% confidence interval over problems.

    Normal approximation: mean ± 1.96 · s / sqrt(m), with s the sample standard deviation
    (ddof=1) of the m per-problem rates, clipped to [0, 1]. Problems are the sampled unit; the
    noise of sampling n completions per problem is already in the spread of the per-problem
    means. With fewer than 2 problems there is no spread to measure, so the interval is the
    degenerate [mean, mean] — read it as "unknown", not "exact".

    >>> mean_ci95([1.0, 0.5, 0.5, 0.0])[0]
    0.5
    """
    if not rates:
        raise ValueError("mean_ci95: no values")
    mean = statistics.fmean(rates)
    if len(rates) < 2:
        return mean, mean, mean
    half = Z95 * statistics.stdev(rates) / math.sqrt(len(rates))
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def cluster_answers(answers: Sequence[str | None], equivalent: Equivalent) -> list[list[int]]:
    """Group answer indices into clusters of equivalent answers, in order of first appearance.

    Each answer is compared with each cluster's representative (its first member) only, so a
    non-transitive checker cannot chain "0.5" ~ "1/2" ~ "0.50001" into one cluster. Missing or
    blank answers join no cluster: a failed extraction is not a vote.
    """
    clusters: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None or not answer.strip():
            continue
        for cluster in clusters:
            rep = answers[cluster[0]]
            # Exact match first: the injected checker may be a slow symbolic comparison.
            if answer == rep or equivalent(rep, answer):
                cluster.append(i)
                break
        else:
            clusters.append([i])
    return clusters


def majority_index(answers: Sequence[str | None], equivalent: Equivalent) -> int | None:
    """Index of the representative of the largest cluster; ties go to the cluster seen first.

    None when no answer was extracted.
    """
    clusters = cluster_answers(answers, equivalent)
    if not clusters:
        return None
    return max(clusters, key=len)[0]  # max keeps the first of equal lengths


def majority_answer(answers: Sequence[str | None], equivalent: Equivalent) -> str | None:
    """The majority-vote answer (as first written), or None when no answer was extracted.

    >>> majority_answer(["1/2", None, "0.5", "3"], lambda a, b: {a, b} <= {"1/2", "0.5"})
    '1/2'
    """
    i = majority_index(answers, equivalent)
    return None if i is None else answers[i]


def maj_correct(samples: Sequence[Mapping[str, Any]], k: int, equivalent: Equivalent) -> bool:
    """Majority vote over the first k samples, scored by the winning cluster's representative.

    The representative's own `correct` flag stands for its cluster: every member was judged
    equivalent to it, and re-checking the answer against the gold would need the reward
    library here. No winner (nothing extracted) counts as wrong.
    """
    head = samples[:k]
    i = majority_index([s.get("extracted") for s in head], equivalent)
    return i is not None and head[i].get("correct") is True


def is_excluded(record: Mapping[str, Any]) -> bool:
    """True when the gold answer was unparseable: the problem has samples, all with correct None."""
    samples = record["samples"]
    return bool(samples) and all(s.get("correct") is None for s in samples)


def summarize(
    records: Sequence[Mapping[str, Any]],
    ks: Iterable[int],
    equivalent: Equivalent,
    *,
    format_reward: str = "format",
) -> dict[str, Any]:
    """The `metrics` section of the eval report (keys documented in `posttrain.evaluate.report`).

    pass@1 is always reported, with its 95% CI; pass@k for every k in `ks`; maj@k for every
    k >= 2 in `ks` (maj@1 is just the first sample's accuracy, a noisier copy of pass@1).
    Accuracy metrics are None when every problem is excluded.
    """
    ks = _check_ks(ks)
    included = [r for r in records if not is_excluded(r)]
    _check_enough_samples(included, max(ks))
    samples = [s for r in records for s in r["samples"]]
    out: dict[str, Any] = {
        "n_problems": len(records),
        "n_excluded": len(records) - len(included),
        "n_samples": len(samples),
    }
    out.update(_accuracy(included, ks, equivalent))
    rewards = _reward_stats(samples)
    out["format_rate"] = rewards[format_reward]["mean"] if format_reward in rewards else None
    out["rewards"] = rewards
    out["length"] = _length_stats(samples)
    flags = [bool(s["truncated"]) for s in samples if s.get("truncated") is not None]
    out["truncation_rate"] = statistics.fmean(flags) if flags else None
    return out


def _check_ks(ks: Iterable[int]) -> list[int]:
    ks = list(ks)
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if bad or not ks:
        raise PosttrainError(f"--k takes positive whole numbers such as 1,4,8; got {ks}")
    return sorted(set(ks))


def _check_enough_samples(records: Sequence[Mapping[str, Any]], k_max: int) -> None:
    short = [r for r in records if len(r["samples"]) < k_max]
    if short:
        shown = ", ".join(f"{r.get('id', '?')} has {len(r['samples'])}" for r in short[:3])
        more = f" and {len(short) - 3} more" if len(short) > 3 else ""
        raise PosttrainError(
            f"pass@{k_max} needs at least {k_max} samples per problem, but {len(short)} "
            f"problem(s) have fewer ({shown}{more}); raise --n to {k_max} or drop {k_max} from --k"
        )


def _accuracy(records: Sequence[Mapping[str, Any]], ks: list[int], equivalent: Equivalent) -> dict:
    out: dict[str, Any] = {}
    if not records:
        out["pass@1"], out["pass@1_ci95"] = None, None
        out.update({f"pass@{k}": None for k in ks if k > 1})
        out.update({f"maj@{k}": None for k in ks if k > 1})
        return out
    counts = [(len(r["samples"]), sum(s.get("correct") is True for s in r["samples"])) for r in records]
    mean, lo, hi = mean_ci95([c / n for n, c in counts])
    out["pass@1"], out["pass@1_ci95"] = mean, [lo, hi]
    for k in ks:
        if k > 1:
            out[f"pass@{k}"] = statistics.fmean(pass_at_k(n, c, k) for n, c in counts)
    for k in ks:
        if k > 1:
            out[f"maj@{k}"] = statistics.fmean(maj_correct(r["samples"], k, equivalent) for r in records)
    return out


def _reward_stats(samples: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per reward name: mean over non-None values, how many there were, and how many were None."""
    values: dict[str, list[float]] = {}
    n_none: dict[str, int] = {}
    for s in samples:
        for name, v in (s.get("rewards") or {}).items():
            values.setdefault(name, [])
            n_none.setdefault(name, 0)
            if v is None:
                n_none[name] += 1
            else:
                values[name].append(float(v))
    return {
        name: {"mean": statistics.fmean(vs) if vs else None, "n": len(vs), "n_none": n_none[name]}
        for name, vs in values.items()
    }


def _length_stats(samples: Sequence[Mapping[str, Any]]) -> dict[str, float | int | None]:
    lengths = [int(s["num_tokens"]) for s in samples if s.get("num_tokens") is not None]
    if not lengths:
        return {"mean": None, "median": None, "max": None}
    median = float(statistics.median(lengths))
    return {"mean": statistics.fmean(lengths), "median": median, "max": max(lengths)}
