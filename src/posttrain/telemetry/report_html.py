"""`report.html`: one self-contained page to browse an evaluation's problems (no CDN, no server).

A person who wants to see *why* accuracy moved filters the problems by what a model did with them
(correct / wrong / format-failed), reads each completion with its extracted answer and reward
breakdown, compares two models' answers to the same problem side by side (base vs trained, or
a model vs its `--baseline`), and sees the run's figures, embedded as PNG data.

A problem's status under one model, from its samples: **correct** when at least half the samples
are correct; otherwise **format-failed** when more than half fail the format (`sample_status`);
otherwise **wrong**. The page is plain HTML with a few lines of inline JavaScript for the filters; every
text from a model is escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from posttrain.io import atomic_write_text

STATUSES = ("correct", "wrong", "format-failed")


def sample_status(sample: Mapping) -> str:
    """correct; format-failed (its format reward is 0, or without a format reward, no answer was extracted;
    the extractor falls back to the whole text, so the reward is the better witness); else wrong."""
    if sample.get("correct"):
        return "correct"
    rewards = sample.get("rewards") or {}
    failed = rewards["format"] == 0 if rewards.get("format") is not None else sample.get("extracted") in (None, "")
    return "format-failed" if failed else "wrong"


def problem_status(samples: Sequence[Mapping]) -> str:
    """A problem's status under one model (module docstring); a problem with no samples is wrong."""
    statuses = [sample_status(s) for s in samples]
    if statuses and 2 * statuses.count("correct") >= len(statuses):
        return "correct"
    if 2 * statuses.count("format-failed") > len(statuses):
        return "format-failed"
    return "wrong"


def question_text(prompt) -> str:
    """The last user message of a chat prompt, or the prompt string itself."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        return str(users[-1] if users else prompt)
    return "" if prompt is None else str(prompt)


def join_runs(runs: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    """One entry per problem id (in the first model's order): id, question, answer, {model: samples}."""
    problems: dict[str, dict] = {}
    for label, records in runs.items():
        for record in records:
            key = str(record.get("id"))
            entry = problems.setdefault(
                key,
                {
                    "id": key,
                    "question": question_text(record.get("prompt")),
                    "answer": record.get("answer"),
                    "runs": {},
                },
            )
            entry["runs"][label] = list(record.get("samples", []))
    return list(problems.values())


def render(
    title: str,
    facts: Sequence[tuple[str, str]],
    runs: Mapping[str, Sequence[Mapping]],
    figures: Mapping[str, Path] | None = None,
) -> str:
    """The page: `facts` as a key/value table, `figures` (caption -> PNG) embedded, then the problems."""
    labels = list(runs)
    problems = join_runs(runs)
    counts = {label: dict.fromkeys(STATUSES, 0) for label in labels}
    for problem in problems:
        for label in labels:
            if label in problem["runs"]:
                counts[label][problem_status(problem["runs"][label])] += 1
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _facts_table(facts, labels, counts),
        _figures(figures or {}),
        _controls(labels, len(problems)),
        _problems_table(problems, labels),
        f"<script>{_JS}</script></body></html>",
    ]
    return "\n".join(parts)


def write(path: Path, *args, **kwargs) -> Path:
    atomic_write_text(Path(path), render(*args, **kwargs))
    return Path(path)


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _facts_table(facts, labels, counts) -> str:
    rows = [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts]
    for label in labels:
        c = counts[label]
        text = ", ".join(f"{c[s]} {s}" for s in STATUSES)
        rows.append(f"<tr><th>{_e(label)}: problems</th><td>{_e(text)}</td></tr>")
    return f"<table class='facts'>{''.join(rows)}</table>"


def _figures(figures: Mapping[str, Path]) -> str:
    out = []
    for caption, path in figures.items():
        path = Path(path)
        if not path.is_file():
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(
            f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return f"<section class='figures'>{''.join(out)}</section>" if out else ""


def _controls(labels, total: int) -> str:
    options = "".join(f"<option value='{_e(label)}'>{_e(label)}</option>" for label in labels)
    statuses = "".join(f"<option value='{s}'>{s}</option>" for s in STATUSES)
    changed = (
        "<label><input type='checkbox' id='changed'> only where the models differ</label>" if len(labels) > 1 else ""
    )
    return (
        "<section class='controls'>"
        f"<label>model <select id='run'>{options}</select></label> "
        f"<label>status <select id='status'><option value='all'>all</option>{statuses}</select></label> "
        "<label>search <input id='search' type='search' placeholder='question or answer'></label> "
        f"{changed} <span id='shown'>{total} of {total} problems shown</span></section>"
    )


def _problems_table(problems, labels) -> str:
    head = "".join(f"<th>{_e(label)}</th>" for label in labels)
    rows = []
    for i, problem in enumerate(problems):
        attrs, cells = [], []
        for j, label in enumerate(labels):
            samples = problem["runs"].get(label, [])
            status = problem_status(samples)
            right = sum(1 for s in samples if s.get("correct"))
            attrs.append(f"data-run{j}='{status}'")
            cells.append(f"<td class='{status}'>{right}/{len(samples)} <small>{status}</small></td>")
        search = _e(f"{problem['question']} {problem['answer']}".lower())
        rows.append(
            f"<tr class='problem' data-index='{i}' {' '.join(attrs)} data-search='{search}'>"
            f"<td>{_e(problem['id'])}</td><td class='q'>{_e(problem['question'])}</td>"
            f"<td>{_e(problem['answer'])}</td>{''.join(cells)}</tr>"
        )
        rows.append(
            f"<tr class='detail' id='detail-{i}' hidden><td colspan='{3 + len(labels)}'>"
            f"{_detail(problem, labels)}</td></tr>"
        )
    return (
        "<table class='problems'><thead><tr><th>id</th><th>question</th><th>gold</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _detail(problem, labels) -> str:
    columns = []
    for label in labels:
        items = []
        for k, sample in enumerate(problem["runs"].get(label, [])):
            rewards = sample.get("rewards") or {}
            breakdown = ", ".join(f"{_e(name)} {_number(value)}" for name, value in rewards.items())
            status = sample_status(sample)
            items.append(
                f"<div class='sample {status}'><div class='meta'>sample {k + 1}: {status}, "
                f"answer <b>{_e(sample.get('extracted'))}</b>"
                f"{', truncated' if sample.get('truncated') else ''}</div>"
                f"<div class='rewards'>{breakdown}</div><pre>{_e(sample.get('text'))}</pre></div>"
            )
        columns.append(f"<div class='column'><h3>{_e(label)}</h3>{''.join(items) or '<p>no samples</p>'}</div>")
    return f"<div class='columns'>{''.join(columns)}</div>"


def _number(value) -> str:
    return "none" if value is None else f"{float(value):.3g}"


_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
.facts th{background:#f4f4f4}.figures{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}
figure{margin:0}figure img{max-width:560px;border:1px solid #ddd}figcaption{font-size:12px;color:#555}
.controls{margin:1em 0;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
.problems tr.problem{cursor:pointer}.problems tr.problem:hover{background:#f7f7ff}
td.correct{background:#e6f4e6}td.wrong{background:#fbe9e9}td.format-failed{background:#fff4d6}
.columns{display:flex;gap:1em}.column{flex:1;min-width:0}
.sample{border-left:4px solid #bbb;margin:0 0 .6em;padding:.2em .5em}
.sample.correct{border-color:#3a3}.sample.wrong{border-color:#c33}.sample.format-failed{border-color:#d90}
pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0;background:#fafafa}
.meta{font-size:12px}.rewards{font-size:12px;color:#555}
"""

_JS = """
const rows = Array.from(document.querySelectorAll('tr.problem'));
function apply() {
  const run = document.getElementById('run').selectedIndex;
  const status = document.getElementById('status').value;
  const query = document.getElementById('search').value.trim().toLowerCase();
  const changed = document.getElementById('changed');
  let shown = 0;
  for (const row of rows) {
    const statuses = Object.keys(row.dataset).filter(k => k.startsWith('run')).map(k => row.dataset[k]);
    let ok = status === 'all' || row.dataset['run' + run] === status;
    ok = ok && (!query || row.dataset.search.includes(query));
    ok = ok && (!changed || !changed.checked || new Set(statuses).size > 1);
    row.hidden = !ok;
    if (!ok) document.getElementById('detail-' + row.dataset.index).hidden = true;
    shown += ok ? 1 : 0;
  }
  document.getElementById('shown').textContent = shown + ' of ' + rows.length + ' problems shown';
}
for (const id of ['run', 'status', 'search', 'changed']) {
  const el = document.getElementById(id);
  if (el) el.addEventListener(el.tagName === 'INPUT' && el.type !== 'checkbox' ? 'input' : 'change', apply);
}
for (const row of rows) {
  row.addEventListener('click', () => {
    const detail = document.getElementById('detail-' + row.dataset.index);
    detail.hidden = !detail.hidden;
  });
}
"""
