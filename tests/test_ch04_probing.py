"""Chapter 4's reference code on cases where the right answer is known: residual stacks line up
with labels, splits keep walks whole, batched probes equal separate ones, the Bayes limit is the
training module's optimum, control tasks are functions of the type, an MLP probe reads what a
linear one cannot, and the interventions change exactly the subspace they name."""

import math

import pytest
import torch

from mi_course import probing
from mi_course.data import grid_walks as gw
from mi_course.models import load_model
from mi_course.train.gridwalk_3l import output_scores


@pytest.fixture(scope="module")
def model():
    return load_model("gridwalk-3l", device="cpu")


def test_stack_residuals_lines_up_with_the_labels(model):
    walks = gw.grid_walks(3, n_moves=5, seed=0)
    keep = walks.cell != gw.IGNORE
    names = probing.resid_hook_names(model.cfg.n_layers)
    assert names == [probing.resid_hook_name(model, d) for d in range(model.cfg.n_layers + 1)]
    with torch.no_grad():
        _, cache = model.run_with_cache(walks.tokens)
    acts = probing.stack_residuals(cache, model.cfg.n_layers, keep)
    assert acts.shape == (4, 3 * 6, 64)
    full = probing.collect_residuals(model, walks.tokens)
    assert torch.equal(acts[:, 0], full[:, 0, 1]) and torch.equal(acts[:, 6], full[:, 1, 1]), "row-major, <bos> dropped"


def test_split_by_walk_keeps_walks_whole_and_follows_the_seed():
    keep = torch.ones(10, 4, dtype=torch.bool)
    keep[:, 0] = False
    test = probing.split_by_walk(keep, 0.3, seed=1)
    per_walk = test.view(10, 3)
    assert (per_walk.all(1) | ~per_walk.any(1)).all() and per_walk.all(1).sum() == 3
    assert torch.equal(test, probing.split_by_walk(keep, 0.3, seed=1))
    assert not torch.equal(test, probing.split_by_walk(keep, 0.3, seed=2))


def test_batched_probes_equal_probes_fitted_one_by_one():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(200, 6, generator=generator) * 4 + 2
    noise = torch.randn(2, 200, 6, generator=generator)
    acts = torch.stack([noise[0], base, base + 0.1 * noise[1]])    # depth 0 knows nothing, 1 and 2 know it all
    labels = (base[:, 0] > 2).long() + (base[:, 1] > 2).long()
    weight, bias = probing.fit_probes(acts, labels, 3)
    probe = probing.LinearProbe.from_weights(weight, bias)
    for depth in range(3):
        alone = probing.LinearProbe.from_weights(*probing.fit_probes(acts[depth : depth + 1], labels, 3))
        torch.testing.assert_close(probe.cross_entropy(acts, labels)[depth], alone.cross_entropy(acts[depth:depth + 1], labels)[0],
                                   atol=2e-3, rtol=0)
    assert probe.accuracy(acts, labels)[0] < 0.7 < probe.accuracy(acts, labels)[1:].min()
    assert torch.allclose(probe.logits(acts), acts @ weight + bias[:, None], atol=1e-5)


def test_bayes_limit_is_the_training_modules_optimum():
    walks = gw.grid_walks(50, seed=3)
    uniform_over_legal = torch.full((*walks.tokens.shape, len(gw.VOCAB)), -1e9)
    moves = torch.where(walks.legal, 0.0, -1e9)
    uniform_over_legal[..., gw.FIRST_MOVE_ID : gw.FIRST_MOVE_ID + 4] = moves
    scores = output_scores(uniform_over_legal, walks)
    limit = gw.bayes_move_loss(walks.legal, walks.next_move)
    assert abs(scores["move_loss"] - scores["excess_loss"] - limit.item()) < 1e-5
    assert math.log(2) < limit < math.log(4)


def test_control_task_is_a_function_of_the_type():
    types = torch.tensor([7, 3, 7, 100, 3, 3])
    labels = probing.control_task(types, 4, seed=0)
    assert labels[0] == labels[2] and labels[1] == labels[4] == labels[5]
    assert labels.min() >= 0 and labels.max() < 4
    tokens = gw.grid_walks(2, n_moves=3, seed=0).tokens
    ids = probing.input_types(tokens, len(gw.VOCAB))
    assert ids[0, 2] == 2 * len(gw.VOCAB) + tokens[0, 2]


def test_mlp_probe_reads_xor_which_no_linear_probe_can():
    generator = torch.Generator().manual_seed(0)
    acts = torch.randn(1, 800, 2, generator=generator)
    labels = ((acts[0, :, 0] > 0) ^ (acts[0, :, 1] > 0)).long()
    linear = probing.LinearProbe.from_weights(*probing.fit_probes(acts, labels, 2))
    mlp = probing.fit_mlp_probes(acts, labels, 2, hidden=16, steps=300, lr=3e-2)
    assert linear.accuracy(acts, labels).item() < 0.65 and mlp.accuracy(acts, labels).item() > 0.95


def test_mean_ablation_replaces_only_the_subspace_and_agrees_with_the_hook(model):
    generator = torch.Generator().manual_seed(1)
    resid = torch.randn(2, 5, 6, generator=generator)
    directions = torch.randn(6, 2, generator=generator)
    where = torch.rand(2, 5, generator=generator) < 0.6
    out = probing.mean_ablate_subspace(resid, directions, where)
    basis = probing.orthonormal_basis(directions)
    assert torch.equal(out[~where], resid[~where])
    inside = out[where] @ basis
    torch.testing.assert_close(inside, (resid[where] @ basis).mean(0).expand_as(inside))
    torch.testing.assert_close(out - (out @ basis) @ basis.T, resid - (resid @ basis) @ basis.T)
    torch.testing.assert_close(probing.mean_ablate_subspace(out, directions, where), out, atol=1e-5, rtol=0)

    walks = gw.grid_walks(4, seed=0)
    keep = walks.cell != gw.IGNORE
    cell_dirs = torch.randn(64, 3, generator=generator)
    by_hook = probing.mean_ablate_directions(model, walks.tokens, 2, cell_dirs, where=keep)
    resid2 = probing.collect_residuals(model, walks.tokens)[2]
    edited = probing.mean_ablate_subspace(resid2, cell_dirs, keep)
    with torch.no_grad():
        by_hand = model.run_with_hooks(walks.tokens, fwd_hooks=[("blocks.1.hook_resid_post", lambda act, hook: edited)])
    torch.testing.assert_close(by_hook, by_hand)


def test_steering_sets_the_subspace_and_leaves_the_rest():
    generator = torch.Generator().manual_seed(2)
    basis = torch.linalg.qr(torch.randn(8, 3, generator=generator))[0]
    resid, target = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    out = probing.steer_subspace(resid, basis, target)
    torch.testing.assert_close(out @ basis, target @ basis)
    torch.testing.assert_close(out - (out @ basis) @ basis.T, resid - (resid @ basis) @ basis.T)


def test_class_means_and_erasure():
    acts = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]])
    torch.testing.assert_close(probing.class_means(acts, torch.tensor([0, 0, 2]), 4),
                               torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 5.0], [0.0, 0.0]]))
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(16, 24, generator=generator)
    index = torch.randint(16, (600,), generator=generator)
    spread = embeddings[index] + 0.05 * torch.randn(600, 24, generator=generator)
    basis = probing.erase_label(spread, index % 2, max_dims=16)
    assert 1 < basis.shape[1] <= 16
    left = spread - (spread @ basis) @ basis.T
    assert probing.fit_probe(left, index % 2).accuracy(left, index % 2) < 0.6


def test_plots_fit_a_notebook_column_with_titles_and_labels():
    from mi_course.viz import probing as viz

    by_depth = torch.tensor([0.1, 0.8, 0.9, 0.85])
    figures = [
        viz.plot_by_depth({"trained": by_depth, "control": by_depth / 2}, "t", "accuracy", bound=0.04, bound_label="chance"),
        viz.plot_bounds({"trained": by_depth}, torch.rand(30) + 1, torch.ones(30)),
        viz.plot_selectivity({"linear": by_depth}, {"linear": by_depth / 3}),
        viz.plot_ablation({"cell": 0.2, "parity": 0.0}, {"random": torch.tensor([0.01, 0.02])}, "t"),
        viz.plot_steering({"probe": [0.6, 1.0, 1.0]}, [1, 2, 3], chance=0.0),
    ]
    for figure in figures:
        assert figure.get_size_inches()[0] <= 8
        for ax in figure.axes:
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
            legend = ax.get_legend()
            assert legend is None or min(text.get_fontsize() for text in legend.get_texts()) >= 9
