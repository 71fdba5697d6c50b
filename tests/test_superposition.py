"""Chapter 1's reference code: geometry, interference, the toy model, its training, the phase
classifier, feature dimensionality, the feature generator and the plots."""

import math
from functools import partial

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from mi_course import superposition as sp
from mi_course.data.features import sparse_features
from mi_course.viz import superposition as viz



def _polygon(k: int, radius: float = 1.0) -> torch.Tensor:
    """k unit vectors (rows) at the corners of a regular polygon."""
    angles = torch.arange(k) * 2 * math.pi / k + 0.3
    return radius * torch.stack([angles.cos(), angles.sin()], dim=-1)


# --- geometry ---------------------------------------------------------------------------------


def test_max_abs_cosine_of_polygons_and_bases():
    assert sp.max_abs_cosine(_polygon(5, 3.0)).item() == pytest.approx(math.cos(math.radians(36)), abs=1e-5)
    assert sp.max_abs_cosine(torch.eye(4) * torch.tensor([1.0, 2, 3, 4])).item() == pytest.approx(0.0)
    opposed = torch.tensor([[1.0, 0.0], [-2.0, 0.1]])
    assert sp.max_abs_cosine(opposed).item() > 0.99


def test_adjacent_angles_of_a_pentagon():
    gaps = sp.adjacent_angles(_polygon(5)[torch.tensor([3, 0, 4, 1, 2])])
    assert torch.allclose(gaps, torch.full((5,), 72.0), atol=1e-4)
    assert gaps.sum().item() == pytest.approx(360.0, abs=1e-3)


@pytest.mark.parametrize("d,eps", [(2, 0.1), (10, 0.2), (60, 0.1)])
def test_nearly_orthogonal_vectors_meet_the_condition(d, eps):
    vectors = sp.nearly_orthogonal_vectors(d, eps, 600, torch.Generator().manual_seed(0))
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(len(vectors)), atol=1e-5)
    assert sp.max_abs_cosine(vectors) <= eps + 1e-6
    again = sp.nearly_orthogonal_vectors(d, eps, 600, torch.Generator().manual_seed(0))
    assert torch.equal(vectors, again), "same seed, same set"
    if d == 2:
        assert len(vectors) == 2, "three lines in the plane always have two within 60 degrees"


def test_pair_tail_bound_holds_and_random_sets_of_the_bound_size_succeed():
    gen = torch.Generator().manual_seed(1)
    for d, eps in [(20, 0.3), (100, 0.2), (300, 0.1)]:
        assert sp.random_pair_tail(d, eps, 20_000, gen) <= sp.pair_tail_bound(d, eps)
    # Union bound: N random vectors fail with probability < N^2 exp(-d eps^2 / 2) = 1/16 here.
    d, eps = 200, 0.3
    n = int(sp.jl_lower_bound(d, eps).item() / 4)
    assert sp.JL_CONSTANT == 0.25 and n == int(math.exp(d * eps**2 / 4) / 4)
    vectors = torch.randn(n, d, generator=gen, dtype=torch.float64)
    assert sp.max_abs_cosine(vectors) <= eps


# --- interference -------------------------------------------------------------------------------


def test_interference_formula_matches_simulation():
    gen = torch.Generator().manual_seed(2)
    W = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    for p in (0.05, 0.5):
        predicted = sp.expected_interference(W, p)
        simulated = sp.simulate_interference(W, p, 200_000, gen)
        assert torch.allclose(simulated, predicted, rtol=0.03)
        unsigned = sp.simulate_interference(W, p, 200_000, gen, signed=False)
        assert torch.allclose(unsigned, sp.unsigned_interference(W, p), rtol=0.05)
    pentagon = _polygon(5).T
    assert torch.allclose(sp.expected_interference(pentagon, 0.1), torch.full((5,), 0.15), atol=1e-6)


# --- features -----------------------------------------------------------------------------------


def test_sparse_features_statistics_and_seeding():
    sparsity = torch.tensor([0.0, 0.5, 0.9, 1.0])
    x = sparse_features(20_000, sparsity, 8, torch.Generator().manual_seed(3))
    assert x.shape == (20_000, 4, 8) and x.dtype == torch.float32
    density = (x != 0).float().mean(dim=(0, 2))
    assert torch.allclose(density, 1 - sparsity, atol=0.01)
    present = x[x != 0]
    assert present.min() >= 0 and present.max() <= 1
    assert present.mean().item() == pytest.approx(0.5, abs=0.01)
    assert present.var().item() == pytest.approx(1 / 12, abs=0.005)
    same = sparse_features(20_000, sparsity, 8, torch.Generator().manual_seed(3))
    other = sparse_features(20_000, sparsity, 8, torch.Generator().manual_seed(4))
    assert torch.equal(x, same) and not torch.equal(x, other)


def test_sparse_features_rejects_bad_sparsity():
    with pytest.raises(ValueError, match="sparsity must lie in"):
        sparse_features(4, torch.tensor([1.5]), 2)


def test_tiled_features_share_data_across_outer_and_inner():
    x = sp.tiled_features(50, torch.tensor([0.0, 0.9]), 3, outer=2, inner=3,
                          generator=torch.Generator().manual_seed(5))
    grid = x.reshape(50, 2, 2, 3, 3)  # (batch, outer, sparsity, inner, features)
    assert torch.equal(grid[:, 0], grid[:, 1])
    assert torch.equal(grid[:, :, :, 0], grid[:, :, :, 2])
    assert not torch.equal(grid[:, 0, 0], grid[:, 0, 1])


# --- toy model ----------------------------------------------------------------------------------


def test_forward_and_loss_match_a_per_instance_computation():
    gen = torch.Generator().manual_seed(6)
    W, b = torch.randn(3, 2, 5, generator=gen), torch.randn(3, 5, generator=gen)
    x = torch.rand(7, 3, 5, generator=gen)
    importance = torch.rand(3, 5, generator=gen)
    out = sp.toy_forward(W, b, x)
    loss = sp.importance_weighted_mse(out, x, importance)
    for i in range(3):
        expected = torch.relu(x[:, i] @ W[i].T @ W[i] + b[i])
        assert torch.allclose(out[:, i], expected, atol=1e-6)
        manual = (importance[i] * (x[:, i] - expected) ** 2).sum(-1).mean()
        assert loss[i].item() == pytest.approx(manual.item(), rel=1e-5)


def test_vectorised_training_matches_training_each_instance_alone():
    gen = torch.Generator().manual_seed(7)
    W0, b0 = sp.init_toy_weights(3, 5, 2, gen)
    importance = torch.tensor([[1.0] * 5, [2.0] * 5, [0.5] * 5]) * 0.9 ** torch.arange(5.0)
    data = sparse_features(32 * 25, torch.tensor([0.0, 0.7, 0.95]), 5, gen).reshape(25, 32, 3, 5)
    together = sp.train_toy_models(W0, b0, importance, iter(data).__next__, 25, lr=0.01)
    for i in range(3):
        alone = sp.train_toy_models(W0[i:i + 1], b0[i:i + 1], importance[i:i + 1],
                                    iter(data[:, :, i:i + 1]).__next__, 25, lr=0.01)
        assert torch.allclose(together[0][i], alone[0][0], atol=1e-5)
        assert torch.allclose(together[1][i], alone[1][0], atol=1e-5)
    assert not W0.requires_grad and torch.equal(W0, sp.init_toy_weights(3, 5, 2, torch.Generator().manual_seed(7))[0])


def test_sparse_toy_model_learns_a_pentagon():
    """The chapter's headline result at a small cost: n=5, m=2, S=0.95, best of 3 seeds."""
    gen = torch.Generator().manual_seed(8)
    sparsity = torch.full((3,), 0.95)
    importance = torch.ones(3, 5)
    W, b = sp.init_toy_weights(3, 5, 2, gen)
    W, b = sp.train_toy_models(W, b, importance, partial(sparse_features, 256, sparsity, 5, gen), 1000, lr=1e-2)
    loss = sp.toy_loss(W, b, importance, sparse_features(10_000, sparsity, 5, torch.Generator().manual_seed(9)))
    best = W[sp.best_of_seeds(loss, 3)][0]
    assert (sp.feature_norms(best[None]) > 0.5).all()
    assert ((sp.adjacent_angles(best.T) - 72).abs() < 6).all()


def test_best_of_seeds_picks_the_lowest_loss_per_setting():
    loss = torch.tensor([3.0, 1.0, 2.0, 0.5, 4.0, 0.7])
    assert sp.best_of_seeds(loss, 3).tolist() == [1, 3]
    assert sp.best_of_seeds(loss, 2).tolist() == [1, 3, 5]


# --- phases and dimensionality ------------------------------------------------------------------


def test_classify_phase():
    W = torch.tensor([[1.0, 0.1], [0.0, -0.9], [0.8, -1.0], [-0.7, 0.6], [0.2, 0.2]])[:, None, :]
    assert sp.classify_phase(W).tolist() == [0, 1, 2, 2, 0]
    assert sp.PHASES[2] == "superposition"


def test_feature_dimensionality_of_known_configurations():
    dedicated = torch.eye(3)[None]
    antipodal = torch.tensor([[[1.0, -1.0]]])
    pentagon = _polygon(5, 1.3).T[None]
    hexagon = _polygon(6).T[None]
    tetrahedron = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]).T[None]
    with_zero = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    assert torch.allclose(sp.feature_dimensionality(dedicated), torch.ones(1, 3))
    assert torch.allclose(sp.feature_dimensionality(antipodal), torch.full((1, 2), 0.5))
    assert torch.allclose(sp.feature_dimensionality(pentagon), torch.full((1, 5), 0.4), atol=1e-6)
    assert torch.allclose(sp.feature_dimensionality(hexagon), torch.full((1, 6), 1 / 3), atol=1e-6)
    assert torch.allclose(sp.feature_dimensionality(tetrahedron), torch.full((1, 4), 0.75), atol=1e-6)
    assert sp.feature_dimensionality(with_zero).tolist() == [[1.0, 0.0]]


def test_fraction_distance_and_coverage():
    d = sp.distance_to_fractions(torch.tensor([0.5, 0.41, 0.9]))
    assert torch.allclose(d, torch.tensor([0.0, 0.01, 0.1]), atol=1e-6)
    assert sp.fraction_coverage(0.45, 0.55, 0.05) == pytest.approx(1.0, abs=1e-4)
    assert sp.fraction_coverage(0.8, 0.95, 0.02) == pytest.approx(0.0)


# --- plots --------------------------------------------------------------------------------------


def test_plots_return_figures():
    gen = torch.Generator().manual_seed(10)
    W = torch.randn(3, 2, 5, generator=gen)
    figures = [
        viz.plot_gram_heatmaps(W, ["a", "b", "c"]),
        viz.plot_feature_arrows(W, ["a", "b", "c"]),
        viz.plot_orthogonal_counts([2, 10, 100], [2, 9, 30], sp.jl_lower_bound(torch.tensor([2, 10, 100]), 0.1), 0.1),
        viz.plot_phase_diagram(torch.randint(0, 3, (4, 6), generator=gen), torch.logspace(0, -2, 6),
                               torch.logspace(-1, 1, 4)),
        viz.plot_feature_dimensionality(torch.tensor([1.0, 2.0, 4.0]), torch.rand(3, 6, generator=gen),
                                        torch.rand(3, 6, generator=gen) > 0.3),
    ]
    assert all(isinstance(f, Figure) for f in figures)
    assert [len(f.axes) for f in figures] == [4, 3, 1, 1, 1]  # heatmaps: 3 panels and a colour bar
    assert len(figures[2].axes[0].lines) == 3


def test_feature_arrows_need_two_dimensions():
    with pytest.raises(ValueError, match="2-D hidden space"):
        viz.plot_feature_arrows(torch.randn(1, 3, 4), ["x"])
