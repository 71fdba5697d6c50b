"""Training: a few steps run and save a loadable checkpoint; runs are deterministic; full retraining
across three seeds meets the release criteria (slow: about 3-4 minutes per seed on one core)."""

import json
import math

import pytest

from mi_course.models import checkpoint
from mi_course.models.registry import MODELS
from mi_course.train import trainable_models, training_module
from mi_course.train.__main__ import main
from mi_course.train.attn_only_2l import WORDS, snapshot_schedule, train
from mi_course.train.loop import warmup_stable_decay



@pytest.mark.parametrize("name", trainable_models())
def test_every_shipped_model_has_a_training_module(name):
    module = training_module(name)
    for attribute in ("train", "missed_targets", "DEFAULT_STEPS"):
        assert hasattr(module, attribute), f"{module.__name__} lacks {attribute}"


def test_hub_models_are_not_trainable():
    hub_names = [name for name, spec in MODELS.items() if not spec.shipped]
    with pytest.raises(ValueError, match="hub model"):
        training_module(hub_names[0])


def test_a_few_steps_save_a_loadable_checkpoint(tmp_path):
    metrics = train(seed=0, out_dir=tmp_path, steps=3, progress=False)
    assert metrics["steps"] == 3 and metrics["loss_first_copy"] > 0.9 * math.log(len(WORDS))
    assert checkpoint.snapshot_steps(tmp_path) == [0, 3]
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    model = checkpoint.load_checkpoint(tmp_path)
    assert not model.training and model.to_str_tokens(WORDS[0]) == ["<bos>", WORDS[0]]


def test_training_is_deterministic_for_a_seed(tmp_path):
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(seed=seed, out_dir=tmp_path / run, steps=4, progress=False)
    weights = {run: (tmp_path / run / checkpoint.WEIGHTS_FILE).read_bytes() for run in "abc"}
    assert weights["a"] == weights["b"] and weights["a"] != weights["c"]


def test_snapshot_schedule_is_log_spaced():
    steps = snapshot_schedule(3000)
    assert len(steps) == 10 and steps[0] == 0 and steps[-1] == 3000 and steps == sorted(set(steps))
    ratios = [b / a for a, b in zip(steps[1:], steps[2:])]
    assert max(ratios) / min(ratios) < 1.05, "equal ratios between consecutive snapshots"


def test_warmup_stable_decay_shape():
    factor = warmup_stable_decay(steps=100, warmup=10, decay_fraction=0.2, final=0.1)
    assert factor(0) == pytest.approx(0.1) and factor(9) == 1.0 and factor(79) == 1.0
    assert factor(99) == pytest.approx(0.1) and factor(80) > factor(90) > factor(99)


def test_cli_reports_and_flags_missed_criteria(tmp_path, capsys):
    code = main(["attn-only-2l", "--steps", "2", "--out", str(tmp_path / "run")])
    report = capsys.readouterr().out
    assert code == 1 and "MISSED" in report and '"induction_score_l1"' in report
    assert (tmp_path / "run" / checkpoint.WEIGHTS_FILE).exists()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_retraining_meets_release_criteria(seed, tmp_path):
    module = training_module("attn-only-2l")
    metrics = module.train(seed=seed, out_dir=tmp_path, progress=False)
    assert not module.missed_targets(metrics), metrics
