"""Superposition: nearly-orthogonal geometry and toy models (Elhage et al. 2022).

Reference implementations for Chapter 1. A toy model squeezes n sparse features into m < n
hidden dimensions, h = W x, and reads them back as x' = ReLU(W^T h + b). Every function carries
a leading *instance* dimension so that many independent toy models (different sparsities,
importances or seeds) train together in one batched run with one optimizer.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mi_course.data.features import sparse_features

# --- Nearly orthogonal vectors -------------------------------------------------------------

JL_CONSTANT = 0.25
"""c in the lower bound exp(c d eps^2) on how many unit vectors in R^d have pairwise |dot| <= eps.

For independent uniform unit vectors u, v in R^d, P(<u, v> >= eps) <= exp(-d eps^2 / 2) (the
spherical-cap bound, Ball 1997, Lemma 2.2), so P(|<u, v>| > eps) <= 2 exp(-d eps^2 / 2). A union
bound over the N(N-1)/2 < N^2/2 pairs of N random vectors gives P(some pair fails) <
N^2 exp(-d eps^2 / 2), which is below 1 when N <= exp(d eps^2 / 4): so such a set exists.
"""


def max_abs_cosine(vectors: Float[Tensor, "n d"]) -> Float[Tensor, ""]:
    """Largest |cosine similarity| over distinct pairs: how far the set is from orthogonal.

    A single vector has no pairs; it gets 0.
    """
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    cos = (unit @ unit.T).abs()
    off_diagonal = ~torch.eye(len(vectors), dtype=torch.bool, device=vectors.device)
    return cos[off_diagonal].max() if len(vectors) > 1 else cos.new_zeros(())


def nearly_orthogonal_vectors(
    d: int, eps: float, n_candidates: int, generator: torch.Generator | None = None
) -> Float[Tensor, "k d"]:
    """Greedy rejection: keep each random unit candidate whose |dot| with every kept one is <= eps.

    All candidate dot products come from one matrix product; the greedy pass itself is
    sequential by nature (whether a candidate is kept depends on the earlier choices).
    """
    candidates = torch.randn(n_candidates, d, generator=generator)
    candidates = candidates / candidates.norm(dim=-1, keepdim=True)
    clash = (candidates @ candidates.T).abs() > eps
    blocked = torch.zeros(n_candidates, dtype=torch.bool)
    kept = []
    for i in range(n_candidates):
        if not blocked[i]:
            kept.append(i)
            blocked |= clash[i]
    return candidates[kept]


def jl_lower_bound(d: Float[Tensor, "k"] | float, eps: float) -> Float[Tensor, "k"]:
    """exp(c d eps^2) with c = JL_CONSTANT: a count of vectors that random sampling guarantees."""
    return torch.exp(JL_CONSTANT * torch.as_tensor(d, dtype=torch.float64) * eps**2)


def pair_tail_bound(d: int, eps: float) -> float:
    """2 exp(-d eps^2 / 2): the bound on P(|<u, v>| > eps) for random unit vectors u, v in R^d."""
    return 2 * math.exp(-d * eps**2 / 2)


def random_pair_tail(d: int, eps: float, n_pairs: int, generator: torch.Generator | None = None) -> float:
    """Monte-Carlo P(|<u, v>| > eps) for independent uniform unit vectors in R^d."""
    u, v = torch.randn(2, n_pairs, d, generator=generator, dtype=torch.float64)
    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    return (cos.abs() > eps).double().mean().item()


# --- Interference ---------------------------------------------------------------------------


def expected_interference(W: Float[Tensor, "m n"], p: float) -> Float[Tensor, "n"]:
    """E[(sum_{j != i} x_j w_i.w_j)^2] for features active with probability p, value +-1.

    Equals sum_{j != i} p (w_i . w_j)^2: the cross terms vanish because signs are independent.
    """
    gram = W.T @ W
    off = gram - torch.diag_embed(torch.diagonal(gram))
    return p * (off**2).sum(dim=-1)


def simulate_interference(
    W: Float[Tensor, "m n"], p: float, n_samples: int, generator: torch.Generator | None = None,
    signed: bool = True,
) -> Float[Tensor, "n"]:
    """Monte-Carlo mean squared interference on each feature from the others.

    Each feature is active with probability p; an active feature has value +1, or a random
    sign when `signed`. With unsigned (non-negative) features the cross terms add
    p^2 ((sum_j a_j)^2 - sum_j a_j^2), second order in p: see `unsigned_interference`.
    """
    n = W.shape[1]
    active = torch.rand(n_samples, n, generator=generator, dtype=W.dtype) < p
    x = active.to(W.dtype)
    if signed:
        signs = torch.randint(0, 2, (n_samples, n), generator=generator).to(W.dtype) * 2 - 1
        x = x * signs
    gram = W.T @ W
    off = gram - torch.diag_embed(torch.diagonal(gram))
    return ((x @ off) ** 2).mean(dim=0)


def unsigned_interference(W: Float[Tensor, "m n"], p: float) -> Float[Tensor, "n"]:
    """Exact E[interference^2] for non-negative binary features: p sum a^2 + p^2 sum_{j != k} a_j a_k."""
    gram = W.T @ W
    off = gram - torch.diag_embed(torch.diagonal(gram))
    return p * (off**2).sum(-1) + p**2 * (off.sum(-1) ** 2 - (off**2).sum(-1))


# --- Toy model of superposition -------------------------------------------------------------


def init_toy_weights(
    n_instances: int, n_features: int, d_hidden: int, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Float[Tensor, "instances d_hidden features"], Float[Tensor, "instances features"]]:
    """Xavier-normal W and zero bias for `n_instances` independent toy models."""
    std = math.sqrt(2.0 / (n_features + d_hidden))
    W = torch.randn(n_instances, d_hidden, n_features, generator=generator) * std
    return W.to(device), torch.zeros(n_instances, n_features, device=device)


def toy_forward(
    W: Float[Tensor, "instances d_hidden features"],
    b: Float[Tensor, "instances features"],
    x: Float[Tensor, "batch instances features"],
) -> Float[Tensor, "batch instances features"]:
    """x' = ReLU(W^T W x + b), for every instance at once."""
    h = torch.einsum("imn,bin->bim", W, x)
    return torch.relu(torch.einsum("imn,bim->bin", W, h) + b)


def importance_weighted_mse(
    out: Float[Tensor, "batch instances features"],
    x: Float[Tensor, "batch instances features"],
    importance: Float[Tensor, "instances features"],
) -> Float[Tensor, "instances"]:
    """Per-instance loss: mean over the batch of sum_i I_i (x_i - x'_i)^2."""
    return (importance * (x - out) ** 2).sum(dim=-1).mean(dim=0)


def train_toy_models(
    W: Float[Tensor, "instances d_hidden features"],
    b: Float[Tensor, "instances features"],
    importance: Float[Tensor, "instances features"],
    features: Callable[[], Float[Tensor, "batch instances features"]],
    steps: int,
    lr: float = 1e-2,
) -> tuple[Float[Tensor, "instances d_hidden features"], Float[Tensor, "instances features"]]:
    """Train copies of (W, b) with Adam on the summed per-instance losses; return them detached.

    Summing keeps each instance's gradient exactly what it would be alone (instances share no
    parameters), so one optimizer step updates every model independently. `features()` is
    called once per step for a fresh batch.
    """
    W = W.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        x = features()
        loss = importance_weighted_mse(toy_forward(W, b, x), x, importance).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return W.detach(), b.detach()


def with_progress(
    features: Callable[[], Float[Tensor, "batch instances features"]], total: int, desc: str
) -> Callable[[], Float[Tensor, "batch instances features"]]:
    """`features`, advancing a progress bar once per batch it draws, i.e. once per training step.

    A training function calls `features()` once per step, so wrapping the batches shows its
    progress without touching the training code. The bar closes after `total` batches; it stays
    quiet when TQDM_DISABLE is set (as under tests).
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step")

    def draw() -> Float[Tensor, "batch instances features"]:
        batch = features()
        bar.update()
        if bar.n >= total:
            bar.close()
        return batch

    return draw


def toy_loss(
    W: Float[Tensor, "instances d_hidden features"],
    b: Float[Tensor, "instances features"],
    importance: Float[Tensor, "instances features"],
    x: Float[Tensor, "batch instances features"],
) -> Float[Tensor, "instances"]:
    """Per-instance loss on a given batch, without gradients: what `best_of_seeds` ranks by."""
    with torch.no_grad():
        return importance_weighted_mse(toy_forward(W, b, x), x, importance)


def tiled_features(
    batch_size: int, sparsity: Float[Tensor, "k"], n_features: int, outer: int, inner: int,
    generator: torch.Generator | None = None, sampler: Callable[..., Tensor] = sparse_features,
) -> Float[Tensor, "batch instances features"]:
    """One batch per sparsity, shared by the `outer` x `inner` instances around it.

    Instances are laid out as (outer, k, inner): e.g. (importance, sparsity, seed) in a sweep.
    Models that differ only in importance or seed then see the same data, which saves drawing
    it many times and makes their losses directly comparable. `sampler` draws the batch (any
    function with the signature of `sparse_features`).
    """
    x = sampler(batch_size, sparsity, n_features, generator)
    tiled = x[:, None, :, None, :].expand(-1, outer, -1, inner, -1)
    return tiled.reshape(batch_size, outer * len(sparsity) * inner, n_features)


def best_of_seeds(
    loss: Float[Tensor, "instances"], n_seeds: int
) -> Int[Tensor, "settings"]:
    """Index of the lowest-loss instance per setting, for instances laid out as (settings, seeds).

    A few random restarts per setting make sweeps robust to the occasional poor local minimum.
    """
    per_setting = loss.reshape(-1, n_seeds)
    return per_setting.argmin(dim=-1) + n_seeds * torch.arange(len(per_setting), device=loss.device)


def feature_norms(W: Float[Tensor, "instances d_hidden features"]) -> Float[Tensor, "instances features"]:
    """||W_i||: how strongly each feature is represented in the hidden space."""
    return W.norm(dim=-2)


def represented(
    W: Float[Tensor, "instances d_hidden features"], threshold: float = 0.5
) -> Bool[Tensor, "instances features"]:
    """Features whose weight norm exceeds `threshold`: the ones the model keeps."""
    return feature_norms(W) > threshold


def adjacent_angles(vectors: Float[Tensor, "k 2"]) -> Float[Tensor, "k"]:
    """Angles in degrees between neighbouring 2-D vectors, going once around the circle."""
    theta = torch.sort(torch.atan2(vectors[:, 1], vectors[:, 0])).values
    gaps = torch.diff(theta, append=theta[:1] + 2 * math.pi)
    return torch.rad2deg(gaps)


# --- Phase diagram ---------------------------------------------------------------------------

PHASES = ("feature 2 not represented", "dedicated dimension", "superposition")
"""Codes 0, 1, 2 returned by `classify_phase`, for n = 2 features in m = 1 dimension."""


def classify_phase(
    W: Float[Tensor, "instances 1 2"], threshold: float = 0.5
) -> Int[Tensor, "instances"]:
    """0: feature 2 not represented; 1: feature 2 has the dimension to itself; 2: both share it.

    A feature counts as represented when its weight has magnitude above `threshold`; in
    superposition the two weights have opposite signs (an antipodal pair), so use |W|.
    """
    kept = W[:, 0, :].abs() > threshold
    phase = torch.zeros(W.shape[0], dtype=torch.long, device=W.device)
    phase[kept[:, 1]] = 1
    phase[kept[:, 1] & kept[:, 0]] = 2
    return phase


# --- Feature dimensionality ------------------------------------------------------------------

STICKY_FRACTIONS = (1.0, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8, 1 / 3)
"""D_i of features arranged as small regular configurations, where Elhage et al. (2022, "feature
dimensionality") see features stick: dedicated (1), tetrahedron (3/4), triangle (2/3), antipodal
pair (1/2), pentagon (2/5), square antiprism (3/8); a hexagon in a plane gives 1/3."""


def feature_dimensionality(W: Float[Tensor, "instances d_hidden features"]) -> Float[Tensor, "instances features"]:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2: the share of a dimension feature i gets.

    A feature with W_i = 0 gets D_i = 0.
    """
    norms = W.norm(dim=-2, keepdim=True)
    unit = W / norms.clamp_min(1e-12)
    overlap = torch.einsum("imn,imk->ink", unit, W) ** 2
    return norms.squeeze(-2) ** 2 / overlap.sum(dim=-1).clamp_min(1e-12)


def distance_to_fractions(
    values: Float[Tensor, "k"], fractions: tuple[float, ...] = STICKY_FRACTIONS
) -> Float[Tensor, "k"]:
    """Distance from each value to the nearest of `fractions`."""
    return (values[:, None] - torch.tensor(fractions, dtype=values.dtype, device=values.device)).abs().min(dim=-1).values


def fraction_coverage(
    lo: float, hi: float, tol: float, fractions: tuple[float, ...] = STICKY_FRACTIONS
) -> float:
    """Share of [lo, hi] within `tol` of some fraction: the hit rate of values spread evenly."""
    grid = torch.linspace(lo, hi, 100_001, dtype=torch.float64)
    return (distance_to_fractions(grid, fractions) <= tol).double().mean().item()
