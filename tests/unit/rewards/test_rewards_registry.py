"""Registry: names -> bound TRL reward callables, with every recipe mistake reported clearly."""

import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.errors import PosttrainError
from posttrain.rewards import registry

REPO = Path(__file__).resolve().parents[3]
GOOD = "<think>12+34=46 46+5=51</think><answer>51</answer>"


def test_available_lists_builtins_with_descriptions_and_kwargs():
    infos = registry.available()
    assert {"accuracy", "format"} <= set(infos)
    assert all(info.description for info in infos.values())
    assert infos["format"].kwargs == {"allow_prefilled_think": False}
    assert "answer" not in infos["accuracy"].kwargs  # a dataset column, not configuration
    assert infos["overlong"].required == ("max_length",)


def test_build_binds_kwargs_names_and_weights():
    funcs, weights = registry.build(
        [
            {"name": "accuracy"},
            {"name": "format", "weight": 0.5},
            {"name": "repetition_penalty", "kwargs": {"ngram_size": 2}},
            {"name": "repetition_penalty", "weight": 2},
        ]
    )
    assert [f.__name__ for f in funcs] == ["accuracy", "format", "repetition_penalty", "repetition_penalty_2"]
    assert weights == [1.0, 0.5, 1.0, 2.0]
    # TRL calls reward functions with keyword arguments only, plus extra columns.
    out = funcs[0](
        prompts=["p", "p"],
        completions=[GOOD, "<answer>50</answer>"],
        completion_ids=[[1], [2]],
        answer=["51", "51"],
        level=[1, 2],
    )
    assert out == [1.0, 0.0]
    assert funcs[1](completions=[GOOD]) == [1.0]
    assert funcs[2](completions=["a b a b a b"]) == pytest.approx([-0.6])


def test_build_accepts_objects_with_attributes():
    class Spec:
        name, weight, kwargs = "format", None, None

    funcs, weights = registry.build([Spec()])
    assert funcs[0].__name__ == "format" and weights == [1.0]


def test_unknown_name_lists_available_and_suggests():
    with pytest.raises(PosttrainError) as err:
        registry.build([{"name": "acuracy"}])
    message = str(err.value)
    assert "Did you mean 'accuracy'?" in message and "format" in message


def test_unknown_kwarg_names_reward_and_allowed_kwargs():
    with pytest.raises(PosttrainError, match=r"reward 'format': unknown kwarg 'strict'.*allow_prefilled_think"):
        registry.build([{"name": "format", "kwargs": {"strict": True}}])


def test_validate_reports_every_problem_at_once():
    problems = registry.validate(
        [
            {"name": "acuracy"},
            {"name": "format", "kwargs": {"foo": 1}},
            {"name": "overlong"},
            {"name": "accuracy", "weight": "high"},
            {"name": "format", "wieght": 2},
        ]
    )
    assert len(problems) == 5
    assert any("missing required kwarg 'max_length'" in p for p in problems)
    assert any("did you mean 'weight'" in p for p in problems)
    assert registry.validate([{"name": "accuracy"}, {"name": "format"}]) == []


def test_kwarg_values_are_checked_at_load_time():
    problems = registry.validate(
        [
            {"name": "accuracy", "kwargs": {"extract_order": ["boxed", "lastnum"]}},
            {"name": "overlong", "kwargs": {"max_length": 10, "unit": "words"}},
            {"name": "accuracy", "kwargs": {"extract_order": ["boxed", "last_number"]}},
        ]
    )
    assert len(problems) == 2
    assert "'lastnum'" in problems[0] and "last_number" in problems[0]
    assert "'tokens' or 'chars'" in problems[1]


def test_file_plugin_loads_relative_to_base_dir():
    funcs, _ = registry.build(
        [{"name": "rewards/example_length.py:short_answer_bonus", "kwargs": {"max_chars": 10}}], base_dir=REPO
    )
    assert funcs[0].__name__ == "short_answer_bonus"
    assert funcs[0](completions=["short", "x" * 50]) == [1.0, 0.0]


def test_plugin_errors_are_clear(tmp_path):
    with pytest.raises(PosttrainError, match="file not found"):
        registry.build([{"name": "rewards/missing.py:f"}], base_dir=tmp_path)
    (tmp_path / "r.py").write_text("def good(completions, **kw):\n    return [1.0] * len(completions)\n")
    with pytest.raises(PosttrainError, match=r"has no function 'bad' \(functions there: good\)"):
        registry.build([{"name": "r.py:bad"}], base_dir=tmp_path)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PosttrainError, match="boom"):
        registry.build([{"name": "broken.py:f"}], base_dir=tmp_path)
    with pytest.raises(PosttrainError, match="cannot import module"):
        registry.build([{"name": "no_such_package_xyz.mod:f"}])


def test_module_plugin_and_plugin_without_var_kwargs(tmp_path, monkeypatch):
    (tmp_path / "myrewards.py").write_text(
        "def exact(completions, answer, bonus=1.0):\n"
        "    return [bonus if c == a else 0.0 for c, a in zip(completions, answer)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    funcs, _ = registry.build([{"name": "myrewards:exact", "kwargs": {"bonus": 2.0}}])
    # Columns the plug-in does not declare (prompts, level) are not passed to it.
    assert funcs[0](completions=["a", "b"], answer=["a", "a"], prompts=["p", "q"], level=[1, 2]) == [2.0, 0.0]


def test_importing_registry_does_not_import_torch():
    code = "import sys, posttrain.rewards.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
