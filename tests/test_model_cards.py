"""Numbers the model cards of attn-only-2l and gridwalk-3l state, measured again by the code
the cards name: a card that drifts from its model fails here."""

import json
import re

import pytest
import torch

from mi_course import induction
from mi_course.data import grid_walks as gw
from mi_course.models import checkpoint, load_model
from mi_course.train import gridwalk_3l


def _card(name: str) -> str:
    return (checkpoint.WEIGHTS_DIR / name / "MODEL_CARD.md").read_text()


def _metrics(name: str) -> dict:
    return json.loads((checkpoint.WEIGHTS_DIR / name / checkpoint.METRICS_FILE).read_text())


@pytest.fixture(scope="module")
def attn_only():
    return load_model("attn-only-2l", device="cpu")


def test_attn_only_copy_limit_is_the_distance_table_of_its_card(attn_only):
    row = re.search(r"\| loss \(nats\) \|(.*)\|", _card("attn-only-2l")).group(1)
    stated = dict(zip([5, 10, 15, 20, 25, 30, 35, 40], map(float, row.split("|"))))
    measured = induction.copy_loss_by_distance(attn_only, 5, 41, list(stated), batch=128, seed=1234)
    assert measured == pytest.approx(stated, abs=0.02)
    assert max(measured[d] for d in (15, 20, 25, 30, 35)) < 0.6 < 1.5 < min(measured[d] for d in (5, 10))


def test_attn_only_previous_token_head_stops_at_position_46(attn_only):
    rows = induction.planted_repeats(attn_only.tokenizer, 128, 5, 41, [5], seed=1234)[0]
    by_position = induction.previous_token_by_position(attn_only, rows, (0, 0))   # entry j: position j + 1
    assert (by_position[:46] >= 0.97).all() and (by_position[46:] <= 0.05).all(), by_position
    assert by_position[:50].mean().item() == pytest.approx(_metrics("attn-only-2l")["prev_token_score_l0"], abs=0.005)
    far = induction.copy_loss_by_distance(attn_only, 5, 51, [5], batch=128, seed=1234)[5]
    assert far == pytest.approx(5.75, abs=0.02), "a first copy past position 46 is not copied"


def test_gridwalk_majority_rates_are_measured_on_the_evaluation_walks():
    walks = gw.grid_walks(gridwalk_3l.EVAL_WALKS, gridwalk_3l.N_MOVES, seed=gridwalk_3l.PROBE_TEST_SEED)
    labelled = walks.cell != gw.IGNORE
    recorded = _metrics("gridwalk-3l")
    for label, short in gridwalk_3l.PROBED.items():
        rate = gridwalk_3l.majority_rate(getattr(walks, label)[labelled])
        assert rate == pytest.approx(recorded[f"{short}_majority_rate"], abs=1e-4)
    assert "visited before (0.565)" in _card("gridwalk-3l")


def test_gridwalk_card_reports_the_range_over_random_draws():
    recorded = _metrics("gridwalk-3l")
    low, high = recorded["random_ablation_kl_min"], recorded["random_ablation_kl_max"]
    assert low <= recorded["random_ablation_kl"] <= high
    card = _card("gridwalk-3l")
    ratio_low, ratio_high = recorded["cell_ablation_kl"] / high, recorded["cell_ablation_kl"] / low
    assert f"{ratio_low:.1f} to {ratio_high:.0f} times" in card, (ratio_low, ratio_high)
    assert f"{gridwalk_3l.RANDOM_DRAWS} draws" in card


def test_gridwalk_random_draws_are_measured_by_evaluate():
    """`evaluate` on fewer walks: the cell subspace matters more than every random draw."""
    metrics = gridwalk_3l.evaluate(load_model("gridwalk-3l", device="cpu"), n_walks=120)
    assert metrics["random_ablation_kl_min"] <= metrics["random_ablation_kl"] <= metrics["random_ablation_kl_max"]
    assert metrics["cell_ablation_kl"] > 2 * metrics["random_ablation_kl_max"], metrics
    assert 0.5 < metrics["before_majority_rate"] < 0.65
