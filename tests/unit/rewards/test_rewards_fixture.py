"""Accuracy of the math checker on a labelled sample of public answer-checker test cases."""

import json
from pathlib import Path

from posttrain.rewards.math import verify

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "verifier_sample.jsonl"
# Measured: 126/127 (the miss is "1 <= |z| <= 3/2" against the union of intervals it denotes).
MIN_ACCURACY = 0.98


def test_fixture_accuracy_and_no_false_positives():
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line]
    assert len(rows) >= 100 and all(r["source"] and r["license"] for r in rows)
    results = [(bool(verify(r["pred"], r["gold"])), r) for r in rows]
    false_positives = [r["id"] for got, r in results if got and not r["equivalent"]]
    correct = sum(got == r["equivalent"] for got, r in results)
    assert false_positives == []
    assert correct / len(rows) >= MIN_ACCURACY, [r["id"] for got, r in results if got != r["equivalent"]]
