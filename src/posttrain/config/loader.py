"""Load a YAML recipe, apply `--set key.path=value` overrides, validate, and report every problem.

A bad recipe gets one message listing each problem with its key path, the file line where the
key stands, the bad value, and a suggestion for misspelled keys — never a traceback.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from posttrain.errors import ConfigError

R = TypeVar("R", bound=BaseModel)


def parse_overrides(items: list[str] | None) -> list[tuple[list[str], Any]]:
    """`["grpo.learning_rate=1e-5"]` -> `[(["grpo", "learning_rate"], 1e-5)]`; values parse as YAML."""
    parsed = []
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. grpo.learning_rate=1e-5")
        parsed.append((key.strip().split("."), _parse_value(raw)))
    return parsed


def _parse_value(raw: str) -> Any:
    """YAML typing, plus `1e-5`-style floats that YAML 1.1 would leave as strings."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(data: dict, path: list[str], value: Any) -> None:
    """Set `value` at `path`, creating sections as needed; list items are addressed by index."""
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = node[_index(node, part, path[: i + 1])]
            continue
        if not isinstance(node.get(part), dict | list):
            node[part] = {}
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        node[_index(node, last, path)] = value
    else:
        node[last] = value


def _index(items: list, part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"--set {'.'.join(path)}: {part!r} is not an index of a list of {len(items)}")
    return int(part)


def _key_lines(text: str) -> dict[tuple, int]:
    """Map each key path in the YAML text to its 1-based line number, for error messages."""
    lines: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, key_node.value)
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def read_yaml(path: str | Path) -> tuple[dict, str]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        reason = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}{where}: not valid YAML ({reason})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(data).__name__}")
    return data, text


def load_recipe(
    path: str | Path | None,
    schema: type[R],
    overrides: list[str] | None = None,
    *,
    data: dict | None = None,
    section: str | None = None,
) -> R:
    """Read `path` (or use `data`, read from `path` and adjusted), apply overrides, validate against `schema`.

    `section` names a sub-mapping to validate instead of the whole file (e.g. `distill`).
    """
    text = ""
    if data is None:
        if path is None:
            raise ConfigError("no recipe given")
        data, text = read_yaml(path)
    elif path is not None:
        text = read_yaml(path)[1]  # errors still name the file's lines
    if section is not None:
        data = data.get(section, {}) if isinstance(data.get(section), dict) else data
    shorthands = list_shorthands(schema)
    for key_path, value in parse_overrides(overrides):
        apply_override(data, _through_shorthand(data, key_path, shorthands), value)
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, schema, str(path or "recipe"), _key_lines(text), data)) from None


def list_shorthands(schema: type[BaseModel]) -> dict[str, str]:
    """Sections that also take a plain list, and the field it stands for: `{"rewards": "functions"}`."""
    out = {}
    for name, field in schema.model_fields.items():
        shorthand = getattr(_inner_model(field.annotation), "list_shorthand", None)
        if shorthand:
            out[name] = shorthand
    return out


def _through_shorthand(data: dict, path: list[str], shorthands: dict[str, str]) -> list[str]:
    """An override path that works on both forms of a shorthand section: `rewards.0.weight` reaches
    the list in either form, and any other key (`rewards.strict`) turns a list into the mapping."""
    field = shorthands.get(path[0])
    if field is None or len(path) < 2:
        return path
    value = data.get(path[0])
    if path[1].isdigit():
        return [path[0], field, *path[1:]] if isinstance(value, dict) else path
    if isinstance(value, list):
        data[path[0]] = {field: value}
    return path


def _as_written(loc: tuple, data: Any, lines: dict, shorthands: dict[str, str]) -> tuple[tuple, tuple]:
    """(loc as the recipe wrote it, loc in mapping form): `rewards.functions.0.weight` reads
    `rewards.0.weight` for a recipe that gives `rewards` as a list."""
    if len(loc) < 2 or shorthands.get(loc[0]) != loc[1]:
        return loc, loc
    short = (loc[0], *loc[2:])
    written_as_list = isinstance(data, dict) and isinstance(data.get(loc[0]), list)
    return (short if written_as_list or (loc[0], 0) in lines else loc), short


def format_errors(error: ValidationError, schema: type[BaseModel], source: str, lines: dict, data: Any = None) -> str:
    problems = []
    shorthands = list_shorthands(schema)
    for err in error.errors():
        loc = tuple(err["loc"])
        shown, short = _as_written(loc, data, lines, shorthands)
        dotted = ".".join(str(p) for p in shown) or "(top level)"
        line = _line(lines, loc, short)
        where = f" (line {line})" if line else ""
        if err["type"] == "extra_forbidden":
            hint = _suggest(schema, loc)
            problems.append(f"{dotted}{where}: unknown key{hint}")
        elif err["type"] == "missing":
            problems.append(f"{dotted}: required but missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{dotted}{where}: {msg} (got {_short(err.get('input'))})")
    header = f"{source}: recipe is not valid, found {len(problems)} problem(s):"
    return "\n".join([header, *(f"  - {p}" for p in problems)])


def _line(lines: dict, *locs: tuple) -> int | None:
    """The line of the first key path the file has, else of its parent (an override adds keys)."""
    for loc in (*locs, *(loc[:-1] for loc in locs)):
        if loc in lines:
            return lines[loc]
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(schema: type[BaseModel], loc: tuple) -> str:
    """'did you mean num_generations?' from the fields of the model that owns the bad key."""
    model: Any = schema
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = _inner_model(field.annotation)
        if model is None:
            return ""
    fields = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    if close:
        return f" — did you mean {close[0]}?"
    return f" — known keys: {', '.join(fields)}" if fields else ""


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `list[X]` or `X | None` annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
