"""The >>> examples in every reward module's docstrings hold."""

import doctest
import importlib
import sys
from pathlib import Path

import pytest

MODULES = ["math", "extract", "format", "cot", "shaping", "_common", "_normalize"]
REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(f"posttrain.rewards.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and (result.attempted > 0 or name == "_normalize")


def test_example_plugin_doctest():
    sys.path.insert(0, str(REPO / "rewards"))
    try:
        module = importlib.import_module("example_length")
    finally:
        sys.path.remove(str(REPO / "rewards"))
    assert doctest.testmod(module).failed == 0
