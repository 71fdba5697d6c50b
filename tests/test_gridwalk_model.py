"""The probing model `gridwalk-3l`, its data and the probing tools: walks are legal and labelled
right; the shipped model loads offline, predicts legal moves near the optimal loss, carries the
cell linearly far beyond a random-init control, and carries step parity without using it; a few
training steps run and are deterministic; full retraining on three seeds meets the release
criteria (slow: about 4 minutes per seed on one core)."""

import json

import pytest
import torch

from mi_course.data import grid_walks as gw
from mi_course.models import checkpoint, load_model
from mi_course.probing import (
    amnesic_directions,
    collect_residuals,
    fit_probe,
    mean_ablate_directions,
    resid_hook_name,
    untrained_copy,
)
from mi_course.train import gridwalk_3l, training_module



@pytest.fixture(scope="module")
def model():
    return load_model("gridwalk-3l", device="cpu")


@pytest.fixture(scope="module")
def release(model):
    """The release metrics on smaller evaluation sets than the model card's, to stay fast."""
    return gridwalk_3l.evaluate(model, n_walks=120)


# --- data --------------------------------------------------------------------------------


def test_walks_are_legal_and_labels_replay_the_moves():
    walks = gw.grid_walks(200, n_moves=30, seed=3)
    assert walks.tokens.shape == (200, 32) and (walks.tokens[:, 0] == gw.TOKEN_ID[gw.BOS]).all()
    start = walks.tokens[:, 1] - gw.FIRST_CELL_ID
    moves = walks.tokens[:, 2:] - gw.FIRST_MOVE_ID
    assert ((start >= 0) & (start < 25)).all() and ((moves >= 0) & (moves < 4)).all()
    path = torch.stack([start % 5, start // 5], -1)[:, None] + gw.STEPS[moves].cumsum(1)
    assert ((path >= 0) & (path < 5)).all(), "a walk left the grid"
    assert torch.equal(walks.x[:, 2:], path[..., 0]) and torch.equal(walks.y[:, 2:], path[..., 1])
    assert torch.equal(walks.cell[:, 1], start) and (walks.cell[:, 0] == gw.IGNORE).all()
    chosen_was_legal = walks.legal[:, 1:-1].gather(-1, moves[..., None])
    assert chosen_was_legal.all() and torch.equal(walks.next_move[:, 1:-1], moves)


def test_unused_labels_are_what_they_say():
    walks = gw.grid_walks(50, n_moves=12, seed=4)
    assert torch.equal(walks.step_parity[0, 1:], torch.arange(13) % 2)
    cell = walks.cell
    for row, position in ((0, 5), (7, 12), (30, 9)):
        seen = (cell[row, 1:position] == cell[row, position]).any().long()
        assert walks.visited_before[row, position] == seen


def test_walks_are_seeded_and_bad_input_is_explained():
    assert torch.equal(gw.grid_walks(8, seed=1).tokens, gw.grid_walks(8, seed=1).tokens)
    assert not torch.equal(gw.grid_walks(8, seed=1).tokens, gw.grid_walks(8, seed=2).tokens)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        gw.grid_walks(0)
    with pytest.raises(ValueError, match="n_moves"):
        gw.grid_walks(4, n_moves=2.5)


def test_tokenizer_matches_the_generator(model):
    walks = gw.grid_walks(1, n_moves=6, seed=0)
    text = " ".join(gw.VOCAB[i] for i in walks.tokens[0, 1:])
    assert torch.equal(model.to_tokens(text)[0], walks.tokens[0])


# --- probing tools -----------------------------------------------------------------------


def test_probe_reads_a_linear_label_and_exposes_its_directions():
    generator = torch.Generator().manual_seed(0)
    acts = torch.randn(2, 600, 16, generator=generator)
    labels = (acts[1, :, 3] > 0).long() + 2 * (acts[1, :, 5] > 0).long()
    probe = fit_probe(acts, labels)
    accuracy = probe.accuracy(acts, labels)
    assert accuracy[1] > 0.97 and accuracy[0] < 0.5, "only the second stack holds the label"
    basis = probe.directions()[1]
    assert basis.shape == (16, 3) and torch.allclose(basis.T @ basis, torch.eye(3), atol=1e-5)
    mass_on_label_dims = basis[[3, 5]].pow(2).sum() / basis.pow(2).sum()
    assert mass_on_label_dims > 0.6


def test_amnesic_directions_remove_a_label_spread_over_several_directions():
    """Parity of an index read from random embeddings, as step parity is read from positions."""
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(16, 24, generator=generator)
    index = torch.randint(16, (600,), generator=generator)
    acts = embeddings[index] + 0.05 * torch.randn(600, 24, generator=generator)
    removed = amnesic_directions(acts, index % 2, stop_accuracy=0.6, max_rounds=24)
    assert removed.accuracies[0] > 0.95 and removed.accuracies[-1] <= 0.6
    assert len(removed.accuracies) > 2, "one probe direction is not enough here"
    rank = removed.basis.shape[1]
    assert torch.allclose(removed.basis.T @ removed.basis, torch.eye(rank), atol=1e-5)


def test_probe_rejects_malformed_input():
    with pytest.raises(ValueError, match="select the labelled positions"):
        fit_probe(torch.randn(4, 10, 8), torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative integer"):
        fit_probe(torch.randn(10, 8), torch.full((10,), -1))


def test_hooks_copies_and_ablation(model):
    assert resid_hook_name(model, 0) == "blocks.0.hook_resid_pre"
    assert resid_hook_name(model, 3) == "blocks.2.hook_resid_post"
    with pytest.raises(ValueError, match="depth must be an int from 0"):
        resid_hook_name(model, 4)
    tokens = gw.grid_walks(4, seed=0).tokens
    resid = collect_residuals(model, tokens)
    assert resid.shape == (4, 4, 32, 64)
    control = untrained_copy(model, seed=1)
    assert not control.training and not torch.allclose(control(tokens), model(tokens))
    with torch.no_grad():
        clean = model(tokens)
    nothing_removed = mean_ablate_directions(model, tokens, 1, torch.zeros(64, 1))
    assert torch.allclose(nothing_removed, clean, atol=1e-5)


# --- the shipped model --------------------------------------------------------------------


def test_shipped_model_loads_offline_with_its_card(model):
    directory = checkpoint.WEIGHTS_DIR / "gridwalk-3l"
    assert not model.training and model.cfg.n_layers == 3 and model.cfg.d_model == 64
    assert (directory / "MODEL_CARD.md").exists()
    assert checkpoint.directory_size(directory) < 1_100_000
    recorded = json.loads((directory / checkpoint.METRICS_FILE).read_text())
    assert not gridwalk_3l.missed_targets(recorded), "the shipped metrics meet the release criteria"


def test_shipped_model_predicts_legal_moves_near_the_optimum(release):
    assert release["excess_loss"] < 0.05 and release["illegal_prob"] < 0.01


def test_cell_is_decodable_after_one_block_far_above_the_random_init_control(release):
    assert release["cell_probe_acc_depth0"] < 0.2, "the embeddings alone do not know the cell"
    assert release["cell_probe_acc_depth1"] > 0.85 and release["cell_probe_acc_depth2"] > 0.95
    assert release["control_cell_probe_acc_depth1"] < 0.4
    assert release["cell_probe_acc_depth1"] - release["control_cell_probe_acc_depth1"] > 0.5


def test_parity_is_decodable_but_not_used_while_the_cell_is_used(release):
    assert release["parity_probe_acc_depth1"] > 0.9
    assert release["parity_removed_probe_acc"] <= 0.55, "parity was removed for a linear probe"
    assert release["parity_ablation_kl"] < 1e-3
    assert release["cell_ablation_kl"] > 0.1 and release["cell_ablation_illegal_prob"] > 0.05
    assert release["cell_ablation_kl"] > 5 * release["random_ablation_kl"]


# --- training ----------------------------------------------------------------------------


def test_a_few_steps_save_a_loadable_deterministic_checkpoint(tmp_path):
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        metrics = gridwalk_3l.train(seed=seed, out_dir=tmp_path / run, steps=3, progress=False, eval_walks=20)
    assert metrics["steps"] == 3 and 3.0 < metrics["train_loss_last_50"] < 4.0, "about log(31) untrained"
    assert gridwalk_3l.missed_targets(metrics), "three steps do not make a releasable model"
    weights = {run: (tmp_path / run / checkpoint.WEIGHTS_FILE).read_bytes() for run in "abc"}
    assert weights["a"] == weights["b"] and weights["a"] != weights["c"]
    reloaded = checkpoint.load_checkpoint(tmp_path / "a")
    assert reloaded.to_str_tokens("c22 U L")[:2] == ["<bos>", "c22"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_retraining_meets_release_criteria(seed, tmp_path):
    module = training_module("gridwalk-3l")
    metrics = module.train(seed=seed, out_dir=tmp_path, progress=False)
    assert not module.missed_targets(metrics), metrics
