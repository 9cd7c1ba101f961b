"""What the README tells a user to run points at files a fresh clone has."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for line in block.splitlines()]


def test_every_file_a_readme_command_names_is_in_the_repository():
    named = {
        m
        for line in _commands()
        for m in re.findall(
            r"(?<![\w./-])((?:recipes|data|benchmarks|requirements|rewards|scripts)/[\w./-]+\.\w+)", line
        )
    }
    assert {
        "recipes/tiny-math.yaml",
        "requirements/lock.txt",
        "data/gsm8k_test_250.jsonl",
        "scripts/test-deps.sh",
    } <= named
    missing = sorted(path for path in named if not (REPO / path).is_file())
    assert not missing, f"README commands name files a clone does not have: {missing}"


def test_nothing_a_user_runs_reads_outside_the_clone():
    places = [
        REPO / "README.md",
        *REPO.glob("recipes/**/*.yaml"),
        *REPO.glob("src/**/*.py"),
        *REPO.glob("benchmarks/*.py"),
        *REPO.glob("tests/**/*.py"),
    ]
    offenders = [str(p.relative_to(REPO)) for p in places if p != Path(__file__) and "../shared" in p.read_text()]
    assert not offenders


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    test_command = next(line for line in _commands() if "pytest" in line and "lock.txt" in line)
    assert test_command.strip() in ci


def _pages() -> dict[str, str]:
    """The results pages run_all.py wrote: RESULTS.md and any per-machine RESULTS-<machine>.md."""
    return {p.name: p.read_text() for p in sorted((REPO / "benchmarks").glob("RESULTS*.md"))}


def test_the_readme_quotes_the_efficacy_figures_a_results_page_holds():
    # The quickstart's claim is bench_efficacy.py's last line, copied from the results pages the README
    # names, not typed; the recipe quotes those measured on the seeds it names (0, 1, 2).
    readme = (REPO / "README.md").read_text()
    lines, seeds = {}, {}
    for name, results in _pages().items():
        if "\n## efficacy\n" in results and f"benchmarks/{name}" in readme:
            section = results.split("\n## efficacy\n", 1)[1].split("\n## ", 1)[0]
            lines[name] = [x for x in section.splitlines() if x.startswith("efficacy: grpo ")][-1]
            seeds[name] = re.search(r"^- seeds: (.*)$", section, flags=re.M).group(1)
    pattern = r"efficacy: grpo \+\d+\.\d \(min \+\d+\.\d\) vs sft-control [+-]\d+\.\d pass@1 over 3 seeds"
    typed = [x for x in re.findall(pattern, readme) if x not in lines.values()]
    assert not typed, typed  # an efficacy line no results page holds
    quoted = {name: line for name, line in lines.items() if line in readme}
    named = [quoted[name] for name in quoted if seeds[name] == "0, 1, 2"]
    assert named, (quoted, seeds)  # a page per machine for the recipe's named seeds
    recipe = re.findall(pattern, (REPO / "recipes" / "tiny-math.yaml").read_text())
    assert recipe and all(line in named for line in recipe), (recipe, named)


def test_the_family_table_has_every_family_and_names_tests_that_exist():
    from posttrain.config.builders import MOE_FAMILIES

    text = (REPO / "README.md").read_text()
    section = text.split("### Supported model families", 1)[1].split("\n### ", 1)[0]
    legend = dict(re.findall(r"\*\*([A-Z])\*\*\s+`(test_\w+)`", section))
    tests = (REPO / "tests" / "integration" / "test_families.py").read_text()
    assert set(legend) == {"F", "L", "A", "C", "R", "D"}
    assert all(f"def {name}(" in tests for name in legend.values())
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)`[^|]*\|[^|]*\|(.*)\|$", section, flags=re.M)}
    assert set(MOE_FAMILIES) <= set(rows)
    for family in MOE_FAMILIES:
        cells = [c.strip() for c in rows[family].split("|")]
        assert len(cells) == 9 and all(re.search(r"\b[FLACRD]\b", c) for c in cells), (family, cells)


def test_quoted_benchmark_rows_are_the_results_pages():
    """A row quoted as `name: ratio X.XX` in the README or docs/ is one a results page holds."""
    rows: dict[str, set[str]] = {}
    for results in _pages().values():
        for name, value in re.findall(r"^(\w+): ratio (\d+\.\d\d) \(", results, flags=re.M):
            rows.setdefault(name, set()).add(value)
    quoted = [
        (path.name, name, value)
        for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
        for name, value in re.findall(r"`(\w+): ratio (\d+\.\d\d)`", path.read_text())
    ]
    assert any(name.startswith("moe_rl_") for _, name, _ in quoted)
    wrong = [(file, name, value, rows.get(name)) for file, name, value in quoted if value not in rows.get(name, ())]
    assert not wrong, wrong


def test_the_readme_quotes_the_offline_kd_ratios_of_the_page_it_names():
    readme = (REPO / "README.md").read_text()
    paragraph = readme.split("Logit KD from stored top-k targets", 1)[1].split("\n\n", 1)[0]
    (name,) = set(re.findall(r"benchmarks/(RESULTS[\w-]*\.md)", paragraph))
    page = _pages()[name]
    rows = dict(re.findall(r"^(distill_offline\w*): ratio (\d+\.\d\d)", page, flags=re.M))
    for row in ("distill_offline_1_epoch", "distill_offline_3_epochs", "distill_offline_5_epochs"):
        assert f"{rows[row]}×" in paragraph, row
    for row in ("distill_offline_bpe_1_epoch", "distill_offline_bpe_3_epochs", "distill_offline_bpe_5_epochs"):
        assert f"{rows[row]}×" in paragraph, row
    assert f"{rows['distill_offline_matched_3_epochs']}×" in paragraph


def test_the_readme_efficacy_tables_are_the_pages_they_name():
    # Each per-seed table in the README is copied from the printed table of the page named in the
    # paragraph above it: pass@1 and greedy on both sides, warm-start steps and minutes, seed by seed.
    readme = (REPO / "README.md").read_text()
    tables = list(
        re.finditer(r"((?:^[^|\n].*\n)+)\n(\| seed \| warm-start steps.*\n\|[-|]+\n((?:\|.*\n)+))", readme, re.M)
    )
    assert tables
    pages = _pages()
    for table in tables:
        (name,) = set(re.findall(r"benchmarks/(RESULTS[\w-]*\.md)", table[1]))
        section = pages[name].split("\n## efficacy\n", 1)[1].split("\n## ", 1)[0]
        printed = {
            row.split("|")[1].strip(): [c.strip() for c in row.split("|")[1:-1]]
            for row in re.findall(r"^\| \d+ \|.*\|$", section, flags=re.M)
        }
        for line in table[3].strip().splitlines():
            cells = [c.strip() for c in line.split("|")[1:-1]]
            page = printed[cells[0]]
            assert cells[1].split()[0] == page[1].split()[0], (name, cells, page)  # warm-start steps
            assert cells[2:9] == page[2:9], (name, cells, page)  # pass@1, greedy, README command minutes
