"""The energy benchmark: its hand-written energy agrees with the evaluator, its result is
JSON, and (slow) the evaluator stays within 1.1× of hand-written torch."""

from __future__ import annotations

import json

import pytest
import torch

from sgl.bench.energy import bench_inputs, bench_terms, format_table, hand_written_energy, main, run_energy_bench
from sgl.runtime.evaluate import Evaluator


def test_the_bench_program_has_the_requested_terms_and_matches_the_hand_written_energy():
    terms, plan = bench_terms(8)
    assert len(terms) == 8 and len(plan) == 8
    evaluator = Evaluator(terms, grid=(16, 16), dtype=torch.float64)
    inputs = bench_inputs(plan, 16, batch=2, channels=4, feature_grid=8)
    inputs.attn.update({k: v.double() for k, v in inputs.attn.items()})
    inputs.feats.update({k: v.double() for k, v in inputs.feats.items()})
    hand = hand_written_energy(plan, inputs, 16)
    assert torch.allclose(evaluator(0, 1, inputs).total, hand.double(), rtol=1e-6)


def test_run_energy_bench_returns_json():
    result = run_energy_bench(n_terms=4, grid=16, repeats=2, channels=4, feature_grid=8)
    assert json.loads(json.dumps(result)) == result
    assert result["terms"] == 4 and result["evaluator_ms"] > 0 and result["hand_written_ms"] > 0
    assert result["max_abs_diff"] < 1e-5
    table = format_table(result)
    assert "ratio" in table and "hand-written" in table


def test_main_prints_json(capsys):
    assert main(["--terms", "4", "--grid", "8", "--repeats", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["grid"] == 8


@pytest.mark.slow
def test_the_evaluator_is_within_ten_percent_of_hand_written_torch():
    result = run_energy_bench(n_terms=20, grid=64, repeats=60)
    assert result["ratio"] <= result["target_ratio"], format_table(result)
