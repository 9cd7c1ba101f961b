"""What a distillation run remembers between resumes: seconds per stage, parameter counts, evals.

`stages.json` keeps the time each stage took when it actually ran, so a resumed run still reports
the real cost of a reused stage; held-out evals are cached as `eval_<label>.json` (metrics) next to
`heldout_<label>.jsonl` (every sample), so they are not sampled twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import yaml

from posttrain.distributed import on_main
from posttrain.evaluate.heldout import HeldOut, heldout_accuracy, result_line
from posttrain.io import atomic_write_json, atomic_write_jsonl


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        self.seconds: dict[str, float] = data.get("seconds", {})
        self.reused: dict[str, bool] = data.get("reused", {})
        self.info: dict = data.get("info", {})

    def save(self) -> None:
        data = {"seconds": self.seconds, "reused": self.reused, "info": self.info}
        on_main(lambda: atomic_write_json(self.path, data))

    @contextmanager
    def stage(self, name: str, reused: bool):
        """Time a stage; a reused stage keeps the seconds it took when it ran."""
        started = time.time()
        yield
        if not reused or name not in self.seconds:
            self.seconds[name] = round(time.time() - started, 1)
        self.reused[name] = reused
        self.save()

    def params_once(self, role: str, count: Callable[[], dict]) -> dict:
        """Parameter counts of a role, computed (which may load the model) only the first time."""
        key = f"{role}_params"
        if key not in self.info:
            self.info[key] = count()
            self.save()
        return self.info[key]


def evaluate_cached(model_fn, tokenizer, heldout: HeldOut, label: str, out: Path, ledger: Ledger) -> dict | None:
    """Held-out accuracy of `model_fn()` (`posttrain.evaluate.heldout`), or its cached result."""
    if not heldout.rows:
        return None
    path = out / f"eval_{label}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))

    with ledger.stage(f"eval_{label}", reused=False):
        result = heldout_accuracy(model_fn(), tokenizer, heldout, label)
        records = result.pop("records")

        def write() -> None:  # every process sampled a share; the main one writes
            atomic_write_jsonl(out / f"heldout_{label}.jsonl", records)
            atomic_write_json(path, result)

        on_main(write)
    heldout.console.print(result_line(result, heldout.settings, label))
    return result


def recipe_changes(old_path: Path, new: dict, prefix: str = "") -> list[str]:
    """Keys whose value differs from the recipe a run started with (dotted paths), for a resume warning."""

    if not old_path.is_file():
        return []
    old = yaml.safe_load(old_path.read_text(encoding="utf-8")) or {}
    return _diff(old, new, prefix)


def _diff(old, new, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [d for k in keys for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]
