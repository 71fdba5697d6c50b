"""Chapter 2's shipped SAEs on `gridwalk-3l`: the walk variables are what they say, the SAEs load
and reconstruct fresh walks with little loss, their edge latents are used by the model (removing
one raises the probability of the move that edge forbids, far more than a random direction of the
same size), a few training steps write loadable files, and full retraining on three seeds meets
the release criteria (slow)."""

import pytest
import torch

from mi_course import sae as S
from mi_course.data import grid_walks as gw
from mi_course.models import load_model
from mi_course.sae_gridwalk import (
    legal_set_variables, load_saes, move_log_probs, run_with_edit, site_acts, splice_losses, walk_variables,
)
from mi_course.train import gridwalk_3l_saes, training_module


@pytest.fixture(scope="module")
def model():
    return load_model("gridwalk-3l", device="cpu")


@pytest.fixture(scope="module")
def shipped():
    return load_saes()


@pytest.fixture(scope="module")
def walks():
    return gw.grid_walks(120, seed=55)


def test_walk_variables_and_legal_sets(walks):
    labels, names = walk_variables(walks)
    assert labels.shape == (*walks.tokens.shape, len(names)) and not labels[:, 0].any()
    cell = labels[..., : gw.SIZE**2]
    assert (cell.sum(-1) == (walks.cell >= 0).long()).all()
    assert torch.equal(labels[..., names.index("x=0")], walks.x == 0)
    legal, legal_names = legal_set_variables(walks)
    assert len(legal_names) == 9 and (legal.sum(-1) == (walks.cell >= 0).long()).all(), "one set per position"
    corner = legal[..., legal_names.index("UR")]
    assert torch.equal(corner, (walks.x == 0) & (walks.y == 0))


def test_shipped_saes_reconstruct_with_little_loss(model, shipped, walks):
    saes, config = shipped
    assert set(saes) == set(gridwalk_3l_saes.WIDTHS) and config["site"] == gridwalk_3l_saes.SITE
    acts = site_acts(model, walks.tokens, config["site"])[walks.cell >= 0][:, None]
    latents, recon = saes["main"](acts)
    assert S.explained_variance(acts, recon).item() >= 0.9 and S.l0_and_dead(latents)[0].item() <= 12
    clean, spliced, ablated = splice_losses(model, walks, config["site"], saes["main"])
    assert spliced.mean() - clean.mean() <= 0.005 and S.loss_recovered(clean, spliced, ablated) >= 0.99


def test_removing_an_edge_latent_allows_the_forbidden_move(model, shipped, walks):
    saes, config = shipped
    sae, site = saes["main"], config["site"]
    labelled = walks.cell >= 0
    acts = site_acts(model, walks.tokens, site)
    latents = sae.encode(acts.flatten(0, 1)[:, None])[:, 0].view(*acts.shape[:2], -1)
    left = walks.x == 0
    score = S.best_f1(latents[labelled], left[labelled][:, None])[:, 0]
    j = int(score.argmax())
    assert score[j] >= 0.9, f"best 'x = 0' latent F1 {score[j]:.2f}"
    active = (latents[..., j] > 0) & labelled
    with torch.no_grad():
        clean = move_log_probs(model(walks.tokens))
    removed = move_log_probs(run_with_edit(model, walks.tokens, site, lambda x: S.remove_latent(x, sae, j), active))
    unit = torch.nn.functional.normalize(torch.randn(64, generator=torch.Generator().manual_seed(0)), dim=0)
    random_ = move_log_probs(run_with_edit(
        model, walks.tokens, site, lambda x: x - sae.encode(x[:, None])[:, 0, j, None] * sae.W_dec[0, j].norm() * unit, active))
    move = gw.MOVES.index("L")
    change, control = (removed - clean)[active][:, move].mean(), (random_ - clean)[active][:, move].mean()
    assert change >= 1.0 and change >= 5 * control.abs(), f"log p(L) {change:+.2f}, random {control:+.2f}"


def test_a_few_training_steps_write_loadable_saes(tmp_path):
    module = training_module("gridwalk-3l-saes")
    assert module is gridwalk_3l_saes
    metrics = module.train(seed=0, out_dir=tmp_path, steps=3, progress=False)
    saes, config = load_saes(tmp_path)
    assert metrics["steps"] == 3 and set(saes) == set(module.WIDTHS)
    assert saes["main"].shape == (1, 64, module.WIDTHS["main"]) and config["input_scale"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_retraining_meets_the_release_criteria(seed):
    metrics = gridwalk_3l_saes.train(seed=seed, progress=False)
    assert not gridwalk_3l_saes.missed_targets(metrics), metrics
