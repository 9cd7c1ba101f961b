"""The package's layers point one way: cli -> grpo / distill / evaluate -> rewards / models / data /
telemetry -> config / io. Read from the source with `ast`, lazy imports inside functions included."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Top to bottom; a part imports parts below it, or in its own layer without a cycle. The top-level
# helper modules (atomic files, checkpoints, the TRL adapter, ranks, signals, Hub upload) sit with io.
LAYERS = [
    ("cli", "__main__"),
    ("grpo", "distill", "evaluate"),
    ("rewards", "models", "data", "telemetry"),
    ("config", "io", "errors", "__init__", "checkpoints", "trl_adapter", "distributed", "safety", "outputs", "hub"),
]
TIERS = {part: len(LAYERS) - i for i, layer in enumerate(LAYERS) for part in layer}
HEAVY = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file, relative ones resolved."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
            else:
                found.append((node.module, node.lineno))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> where, for every import between two parts of posttrain."""
    edges = defaultdict(list)
    for path in sorted((SRC / "posttrain").rglob("*.py")):
        source = _part(_module_name(path))
        for target, line in _imports(path):
            if target.split(".")[0] == "posttrain" and _part(target) != source:
                edges[(source, _part(target))].append(f"{path.relative_to(SRC)}:{line}")
    return edges


def test_every_part_has_a_tier():
    parts = {_part(_module_name(p)) for p in (SRC / "posttrain").rglob("*.py")}
    assert parts <= set(TIERS), f"give these parts a tier: {sorted(parts - set(TIERS))}"


def test_no_part_imports_a_layer_above_it():
    upward = [
        f"{src} -> {dst} ({', '.join(where)})" for (src, dst), where in _edges().items() if TIERS[dst] > TIERS[src]
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_two_parts_import_each_other():
    graph = defaultdict(set)
    for src, dst in _edges():
        graph[src].add(dst)

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))

    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert not cycles, f"import cycles between parts: {cycles}"


def test_grpo_and_distill_share_only_through_lower_layers():
    edges = _edges()
    assert ("grpo", "distill") not in edges and ("distill", "grpo") not in edges


@pytest.mark.parametrize("part", ["rewards", "config", "data"])
def test_pure_parts_never_import_the_training_stack(part):
    # Rewards are pure functions of text; config is data; data needs no model (Hub datasets, yes).
    # config reads TRL's dataclass field names, in trl_fields.py only.
    heavy = [
        f"{path.relative_to(SRC)}:{line} {name}"
        for path in sorted((SRC / "posttrain" / part).rglob("*.py"))
        for name, line in _imports(path)
        if name.split(".")[0] in HEAVY
        and not (part == "data" and name.split(".")[0] == "datasets")
        and not (part == "config" and path.name == "trl_fields.py" and name.startswith("trl"))
    ]
    assert not heavy, heavy


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    # The reader must resolve both import forms, or the tests above pass on anything.
    fake = tmp_path / "posttrain" / "config"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from posttrain.grpo import run\nfrom ..models import builders\n")
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    assert [n for n, _ in _imports(fake / "bad.py")] == ["posttrain.grpo", "posttrain.models"]
    assert set(_edges()) == {("config", "grpo"), ("config", "models")}
