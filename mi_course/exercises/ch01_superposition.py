"""Chapter 1 exercises: superposition geometry and toy models (Elhage et al. 2022).

Every case is small enough to grade in milliseconds (the training case in well under a
second). Cases come in an order that makes each known mistake fail first on a case where its
output differs from every other known mistake's, so the hint it earns is its own.
"""

from __future__ import annotations

import copy
import math
from functools import partial

import torch
from torch import Tensor

from mi_course import superposition as ref
from mi_course.data.features import sparse_features
from mi_course.grading import Case, Exercise, Mistake, register


def _generator(base: int, seed: int) -> dict[str, torch.Generator]:
    """The `generator=` keyword of a seeded exercise's case (see `seed_arg`)."""
    return {"generator": torch.Generator().manual_seed(base + seed)}


# --- 1. nearly orthogonal vectors --------------------------------------------------------------


def _cosine_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    scaled = torch.randn(6, 4, generator=g) * torch.tensor([[0.5], [3.0], [1.0], [2.0], [0.2], [1.5]])
    scaled[5] = -2.0 * scaled[0] + 0.05 * torch.randn(4, generator=g)  # most aligned pair is opposed
    parallel = torch.randn(4, 3, generator=g)
    parallel[2] = -3.0 * parallel[0]
    return [
        Case(args=(scaled,), label="6 vectors in R^4, mixed lengths, the closest pair opposed"),
        Case(args=(torch.randn(9, 30, generator=g, dtype=torch.float64),), label="9 vectors in R^30, float64"),
        Case(args=(torch.tensor([[1.0, 0.0], [0.0, 2.0]]),), label="2 orthogonal vectors (edge)"),
        Case(args=(parallel,), label="two distinct rows exactly parallel, |cos| = 1 (edge)"),
        Case(args=(torch.tensor([[1.0, 0.0, 0.0], [0.02, 1.0, 0.0], [-0.021, 0.0, 1.0]]),),
             label="two small cosines of opposite sign, close in size (edge)"),
    ]


def _cosine_with_diagonal(vectors: Tensor) -> Tensor:
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    return (unit @ unit.T).abs().max()


def _cosine_unnormalised(vectors: Tensor) -> Tensor:
    dots = (vectors @ vectors.T).abs()
    return dots[~torch.eye(len(vectors), dtype=torch.bool)].max()


def _cosine_signed(vectors: Tensor) -> Tensor:
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    return (unit @ unit.T)[~torch.eye(len(vectors), dtype=torch.bool)].max()


register(Exercise(
    id="ch01.max_abs_cosine",
    title="Largest |cosine| between distinct vectors",
    reference=ref.max_abs_cosine,
    cases=_cosine_cases,
    mistakes=(
        Mistake("diagonal kept", _cosine_with_diagonal,
                "Every vector has cosine 1 with itself: leave out the i == j entries of the matrix."),
        Mistake("no normalisation", _cosine_unnormalised,
                "Dot products of raw vectors grow with their lengths: divide each vector by its norm first."),
        Mistake("sign kept", _cosine_signed,
                "Opposite directions (cosine near -1) interfere as much as equal ones: take the absolute value."),
    ),
))


def _orthogonal_cases(seed: int = 0) -> list[Case]:
    """Sizes where a greedy search keeps well over 2d vectors, so no orthonormal basis passes."""
    return [
        Case(args=(10, 0.5, 1000), kwargs=_generator(1, seed), label="d=10, eps=0.5, 1000 candidates"),
        Case(args=(2, 0.1, 300), kwargs=_generator(2, seed), label="d=2, eps=0.1 (the answer is 2)"),
        Case(args=(40, 0.35, 1000), kwargs=_generator(3, seed), label="d=40, eps=0.35, 1000 candidates"),
    ]


ORTHOGONAL_SHARE = 0.5
"""A learner's set must hold at least this share of what the reference's greedy search finds."""


def _validate_orthogonal(case: Case, out: object) -> str | None:
    """Unit length, pairwise |dot| <= eps, and enough vectors. Reasons name the property only."""
    d, eps, n_candidates = case.args
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[1] != d:
        return f"return a tensor of shape (k, d) = (k, {d}): one unit vector per row"
    if not out.is_floating_point():
        return "the vectors should be a floating-point tensor"
    if len(out) == 0:
        return "the set is empty: the first candidate can always be kept"
    if not torch.allclose(out.norm(dim=-1).double(), torch.ones(len(out), dtype=torch.float64), atol=1e-4):
        return "not every vector has unit length"
    dots = (out @ out.T).double().fill_diagonal_(0)
    if (dots > eps + 1e-5).any():
        return "two of the vectors have a dot product above eps"
    if (dots < -eps - 1e-5).any():
        return "two of the vectors have a dot product below -eps"
    found = len(ref.nearly_orthogonal_vectors(d, eps, n_candidates, copy.deepcopy(case.kwargs["generator"])))
    if len(out) <= d < found:
        return (f"the set has only {len(out)} vectors, no more than an orthonormal basis of R^{d}: "
                "random candidates kept greedily give far more than d")
    if len(out) < math.ceil(ORTHOGONAL_SHARE * found):
        return ("the set is too small: a greedy search over the same number of candidates keeps at least "
                "twice as many")
    return None


def _unit_candidates(d: int, n: int, generator: torch.Generator) -> Tensor:
    c = torch.randn(n, d, generator=generator)
    return c / c.norm(dim=-1, keepdim=True)


def _orthogonal_unnormalised(d: int, eps: float, n_candidates: int, generator: torch.Generator) -> Tensor:
    kept: list[Tensor] = []
    for v in torch.randn(n_candidates, d, generator=generator):
        if all(abs(float(v @ k)) <= eps for k in kept):
            kept.append(v)
    return torch.stack(kept)


def _orthogonal_signed(d: int, eps: float, n_candidates: int, generator: torch.Generator) -> Tensor:
    kept: list[Tensor] = []
    for v in _unit_candidates(d, n_candidates, generator):
        if all(float(v @ k) <= eps for k in kept):
            kept.append(v)
    return torch.stack(kept)


def _orthogonal_stop_early(d: int, eps: float, n_candidates: int, generator: torch.Generator) -> Tensor:
    kept: list[Tensor] = []
    for v in _unit_candidates(d, n_candidates, generator):
        if any(abs(float(v @ k)) > eps for k in kept):
            break
        kept.append(v)
    return torch.stack(kept)


register(Exercise(
    id="ch01.nearly_orthogonal_vectors",
    title="Many unit vectors with pairwise |dot| <= eps",
    reference=ref.nearly_orthogonal_vectors,
    cases=_orthogonal_cases,
    validate=_validate_orthogonal,
    seed_arg="generator",
    mistakes=(
        Mistake("candidates not normalised", _orthogonal_unnormalised,
                "Random Gaussian vectors are not unit vectors: divide each candidate by its norm "
                "before testing it."),
        Mistake("signed test", _orthogonal_signed,
                "Test |dot| <= eps, not dot <= eps: a candidate pointing nearly opposite a kept vector "
                "is not nearly orthogonal to it."),
        Mistake("stops at the first rejection", _orthogonal_stop_early,
                "A rejected candidate only means *that* candidate does not fit: skip it and keep "
                "trying the rest."),
    ),
))


register(Exercise(
    id="ch01.r2_count", kind="value",
    title="How many unit vectors in R^2 can have pairwise |dot| <= 0.1?",
    reference=2,
    mistakes=(
        Mistake("three", 3, "Three lines through the origin split 180 degrees, so two of them are at most "
                            "60 degrees apart, and cos 60 = 0.5 > 0.1."),
        Mistake("four", 4, "v and -v are both unit vectors, but |v . (-v)| = 1: opposite vectors do not count "
                           "as nearly orthogonal."),
        Mistake("one", 1, "Two perpendicular unit vectors have dot product 0, which is <= 0.1."),
    ),
))


register(Exercise(
    id="ch01.jl_constant", kind="value",
    title="The constant c in the lower bound exp(c d eps^2)",
    reference=ref.JL_CONSTANT,
    mistakes=(
        Mistake("no square root", 0.5, "One pair fails with probability <= 2 exp(-d eps^2 / 2), but N vectors "
                                       "have about N^2 / 2 pairs: solve N^2 exp(-d eps^2 / 2) < 1 for N."),
        Mistake("tail exponent doubled", 1.0, "The tail of <u, v> for random unit vectors is exp(-d eps^2 / 2), "
                                              "with the 1/2, and the N^2 pairs then halve the exponent again."),
    ),
))


# --- 2. interference ---------------------------------------------------------------------------


def _interference_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(4 + seed)
    return [
        Case(args=(torch.randn(2, 5, generator=g), 0.1), label="5 features in 2 dimensions, p = 0.1"),
        Case(args=(torch.randn(3, 8, generator=g, dtype=torch.float64), 0.5), label="8 features in 3 dims, float64"),
        Case(args=(torch.randn(1, 1, generator=g), 0.3), label="a single feature: no interference (edge)"),
        Case(args=(torch.randn(4, 3, generator=g), 1.0), label="p = 1: every feature always active"),
    ]


def _interference_with_self(W: Tensor, p: float) -> Tensor:
    return p * ((W.T @ W) ** 2).sum(dim=-1)


def _interference_no_p(W: Tensor, p: float) -> Tensor:
    return ref.expected_interference(W, 1.0)


def _interference_p_squared(W: Tensor, p: float) -> Tensor:
    return ref.expected_interference(W, p**2)


def _interference_abs(W: Tensor, p: float) -> Tensor:
    gram = W.T @ W
    return p * (gram - torch.diag_embed(torch.diagonal(gram))).abs().sum(dim=-1)


register(Exercise(
    id="ch01.expected_interference",
    title="Expected squared interference on each feature",
    reference=ref.expected_interference,
    cases=_interference_cases,
    mistakes=(
        Mistake("self term kept", _interference_with_self,
                "Feature i does not interfere with itself: sum over j != i (zero the diagonal of W^T W)."),
        Mistake("no activation probability", _interference_no_p,
                "Feature j only interferes when it is active, which happens with probability p."),
        Mistake("p squared", _interference_p_squared,
                "E[x_j^2] = p for a feature that is +-1 with probability p: the factor is p, not p^2."),
        Mistake("not squared", _interference_abs,
                "The interference is squared: use (w_i . w_j)^2, not |w_i . w_j|."),
    ),
))


# --- 3. toy model ----------------------------------------------------------------------------------


def _feature_cases(seed: int = 0) -> list[Case]:
    return [
        Case(args=(4000, torch.tensor([0.0, 0.5, 0.9]), 6), kwargs=_generator(5, seed),
             label="3 instances with sparsity 0, 0.5, 0.9"),
        Case(args=(3000, torch.tensor([0.3]), 1), kwargs=_generator(6, seed), label="one feature, one instance"),
    ]


SIGMAS = 6.0
"""Statistical checks allow this many standard errors (the KS bound below: p ~ 1e-6), so a right
answer fails less than once in 10^5 gradings."""


def _density_ok(observed: Tensor, expected: Tensor, n: int) -> Tensor:
    """Within SIGMAS binomial standard errors (plus a little slack)."""
    return (observed - expected).abs() <= SIGMAS * (expected * (1 - expected) / n).sqrt() + 2e-3


def _max_correlation(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Largest |correlation| between two entries of the last axis, and the fewest samples one rests on.

    x, weight: (batch, other, last); a pair is correlated over the samples where both weights
    are 1. Pairs with fewer than 400 such samples, or no spread, are skipped.
    """
    xw = x * weight
    n = torch.einsum("bif,big->ifg", weight, weight)
    sx = torch.einsum("bif,big->ifg", xw, weight)
    sxx = torch.einsum("bif,big->ifg", xw * x, weight)
    sxy = torch.einsum("bif,big->ifg", xw, xw)
    cov = n * sxy - sx * sx.transpose(-1, -2)
    var = n * sxx - sx**2
    corr = cov / (var * var.transpose(-1, -2)).sqrt()
    off_diagonal = ~torch.eye(x.shape[-1], dtype=torch.bool)
    usable = (n >= 400) & off_diagonal & (var > 1e-9 * n**2) & (var.transpose(-1, -2) > 1e-9 * n**2)
    corr = torch.where(usable, corr.abs(), torch.zeros(()))
    return corr.max(), n[usable].min() if usable.any() else n.new_ones(())


def _validate_features(case: Case, out: object) -> str | None:
    """Shape, range, per-feature density, independent presence and values, uniform values.
    Reasons name the property only."""
    batch, sparsity, n_features = case.args
    expected_shape = (batch, len(sparsity), n_features)
    if not isinstance(out, Tensor) or tuple(out.shape) != expected_shape:
        return f"return a tensor of shape (batch, instances, features) = {expected_shape}"
    if not out.is_floating_point():
        return "the features should be a floating-point tensor"
    if (out < 0).any():
        return "some values are negative; present features take values in [0, 1]"
    if (out > 1).any():
        return "some values exceed 1; present features take values in [0, 1]"
    out = out.detach().cpu().double()
    present = (out != 0).double()
    density = present.mean(dim=0)
    s = sparsity.double()[:, None]
    if not _density_ok(density, 1 - s, batch).all():
        if _density_ok(density, s, batch).all():
            return "features are present with probability S; they should be present with probability 1 - S"
        return "the share of present (nonzero) features does not match 1 - S for every instance and feature"
    values = out[out != 0]
    if values.numel() > 1 and values.std() < 1e-6:
        return "every present feature has the same value; values should be uniform in [0, 1]"
    for axis, order in (("features", (0, 1, 2)), ("instances", (0, 2, 1))):
        p, x = present.permute(order), out.permute(order)
        corr, n = _max_correlation(p, torch.ones_like(p))
        if corr > SIGMAS / n.sqrt():
            return (f"different {axis} switch on and off together: draw presence independently for every "
                    "sample, instance and feature")
        corr, n = _max_correlation(x, p)
        if corr > SIGMAS / n.sqrt():
            return f"the values of different {axis} are correlated: draw every present value independently"
    for instance in range(out.shape[1]):
        x = out[:, instance][out[:, instance] != 0].sort().values
        if len(x) >= 100:
            ecdf = torch.arange(1, len(x) + 1, dtype=x.dtype) / len(x)
            if (ecdf - x).abs().max() > 2.7 / len(x) ** 0.5:  # Kolmogorov-Smirnov at p ~ 1e-6
                return "the present values are not uniform in [0, 1]"
    return None


def _features_swapped(batch: int, sparsity: Tensor, n: int, generator: torch.Generator) -> Tensor:
    return sparse_features(batch, 1 - sparsity, n, generator)


def _features_binary(batch: int, sparsity: Tensor, n: int, generator: torch.Generator) -> Tensor:
    return (sparse_features(batch, sparsity, n, generator) > 0).float()


def _features_one_sparsity(batch: int, sparsity: Tensor, n: int, generator: torch.Generator) -> Tensor:
    return sparse_features(batch, sparsity.mean().expand(len(sparsity)), n, generator)


def _features_gaussian(batch: int, sparsity: Tensor, n: int, generator: torch.Generator) -> Tensor:
    present = sparse_features(batch, sparsity, n, generator) > 0
    return torch.randn(present.shape, generator=generator).abs() * present


register(Exercise(
    id="ch01.sparse_features",
    title="Synthetic sparse features with an instance dimension",
    reference=sparse_features,
    cases=_feature_cases,
    validate=_validate_features,
    seed_arg="generator",
    mistakes=(
        Mistake("sparsity and density swapped", _features_swapped,
                "Sparsity S is the probability that a feature is *absent*: keep it where rand >= S "
                "(equivalently rand < 1 - S)."),
        Mistake("binary values", _features_binary,
                "Present features should carry a value drawn uniformly from [0, 1], not 1."),
        Mistake("one sparsity for all instances", _features_one_sparsity,
                "Each instance has its own sparsity: compare against sparsity[None, :, None] so it "
                "broadcasts over batch and features."),
        Mistake("Gaussian values", _features_gaussian,
                "torch.randn is Gaussian and unbounded; torch.rand is uniform on [0, 1)."),
    ),
))


def _forward_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7 + seed)
    return [
        Case(args=(torch.randn(3, 2, 5, generator=g), torch.randn(3, 5, generator=g),
                   torch.rand(4, 3, 5, generator=g)), label="3 instances, 5 features in 2 dims, batch 4"),
        Case(args=(torch.randn(1, 4, 4, generator=g), torch.randn(1, 4, generator=g),
                   torch.rand(1, 1, 4, generator=g)), label="one instance, batch of one, m = n (edge)"),
    ]


def _forward_no_relu(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    return torch.einsum("imn,bim->bin", W, torch.einsum("imn,bin->bim", W, x)) + b


def _forward_relu_before_bias(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    return torch.relu(torch.einsum("imn,bim->bin", W, torch.einsum("imn,bin->bim", W, x))) + b


def _forward_no_bias(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    return ref.toy_forward(W, torch.zeros_like(b), x)


register(Exercise(
    id="ch01.toy_forward",
    title="Toy model forward pass x' = ReLU(W^T W x + b)",
    reference=ref.toy_forward,
    cases=_forward_cases,
    mistakes=(
        Mistake("no ReLU", _forward_no_relu,
                "The read-out ends in a ReLU: without it negative interference reaches the output."),
        Mistake("ReLU before the bias", _forward_relu_before_bias,
                "Add the bias inside the ReLU: the negative bias is what filters out small interference."),
        Mistake("bias left out", _forward_no_bias, "Add the bias b (one per instance and feature) before the ReLU."),
    ),
))


def _loss_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(8 + seed)
    return [
        Case(args=(torch.rand(6, 3, 5, generator=g), torch.rand(6, 3, 5, generator=g),
                   0.3 + 2 * torch.rand(3, 5, generator=g)), label="3 instances, 5 features, batch 6"),
        Case(args=(torch.rand(1, 1, 2, generator=g), torch.rand(1, 1, 2, generator=g), torch.tensor([[1.0, 0.5]])),
             label="one instance, batch of one (edge)"),
    ]


def _loss_unweighted(out: Tensor, x: Tensor, importance: Tensor) -> Tensor:
    return ref.importance_weighted_mse(out, x, torch.ones_like(importance))


def _loss_importance_squared(out: Tensor, x: Tensor, importance: Tensor) -> Tensor:
    return ((importance * (x - out)) ** 2).sum(dim=-1).mean(dim=0)


def _loss_mean_features(out: Tensor, x: Tensor, importance: Tensor) -> Tensor:
    return (importance * (x - out) ** 2).mean(dim=(0, 2))


def _loss_scalar(out: Tensor, x: Tensor, importance: Tensor) -> Tensor:
    return (importance * (x - out) ** 2).sum(dim=-1).mean()


register(Exercise(
    id="ch01.importance_weighted_mse",
    title="Importance-weighted reconstruction loss, per instance",
    reference=ref.importance_weighted_mse,
    cases=_loss_cases,
    mistakes=(
        Mistake("importance ignored", _loss_unweighted, "Weight each feature's squared error by its importance I_i."),
        Mistake("importance squared", _loss_importance_squared,
                "Multiply the *squared* error by I_i: I_i (x_i - x'_i)^2, not (I_i (x_i - x'_i))^2."),
        Mistake("mean over features", _loss_mean_features,
                "Sum over features (the loss is sum_i I_i (x_i - x'_i)^2) and average over the batch only."),
        Mistake("instances averaged together", _loss_scalar,
                "Keep one loss per instance: reduce over the batch and features, not over instances."),
    ),
))


def _training_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(9 + seed)
    W, b = ref.init_toy_weights(3, 5, 2, g)
    b = b + 0.1 * torch.randn(b.shape, generator=g)
    importance = 0.8 ** torch.arange(5.0) * torch.tensor([[1.0], [2.0], [0.5]])
    sparsity = torch.tensor([0.0, 0.7, 0.9])
    features = partial(sparse_features, 64, sparsity, 5, generator=torch.Generator().manual_seed(10 + seed))
    return [Case(args=(W, b, importance, features, 40), kwargs={"lr": 0.03},
                 label="3 instances, 5 features in 2 dims, 40 steps of batch 64, lr = 0.03")]


def _train_no_zero_grad(W, b, importance, features, steps, lr=1e-2):
    W = W.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        x = features()
        ref.importance_weighted_mse(ref.toy_forward(W, b, x), x, importance).sum().backward()
        optimizer.step()
    return W.detach(), b.detach()


def _train_unweighted(W, b, importance, features, steps, lr=1e-2):
    return ref.train_toy_models(W, b, torch.ones_like(importance), features, steps, lr)


def _train_bias_frozen(W, b, importance, features, steps, lr=1e-2):
    W = W.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([W], lr=lr)
    for _ in range(steps):
        x = features()
        loss = ref.importance_weighted_mse(ref.toy_forward(W, b, x), x, importance).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return W.detach(), b.detach()


register(Exercise(
    id="ch01.train_toy_models",
    title="Train many toy models at once: one optimizer, no loop over instances",
    reference=ref.train_toy_models,
    cases=_training_cases,
    rtol=1e-3, atol=1e-4, timeout_s=30.0,
    mistakes=(
        Mistake("gradients never zeroed", _train_no_zero_grad,
                "loss.backward() adds to .grad: call optimizer.zero_grad() every step."),
        Mistake("importance ignored", _train_unweighted,
                "Train on the importance-weighted loss, with the `importance` you were given."),
        Mistake("bias not trained", _train_bias_frozen,
                "Give the optimizer both W and b: the learned (negative) bias is part of the model."),
    ),
))


# --- 4. phase diagram ----------------------------------------------------------------------------


def _phase_cases(seed: int = 0) -> list[Case]:
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [-0.9, 0.8], [0.1, -0.9],
                      [0.2, 0.1], [-0.8, 0.0], [0.6, 0.7], [0.05, -0.6]])
    at_threshold = torch.tensor([[0.25, 0.3], [-0.3, -0.25], [0.3, -0.26], [0.1, 0.26], [-0.25, 0.4], [0.2, 0.1]])
    g = torch.Generator().manual_seed(12 + seed)
    return [
        Case(args=(W[:, None, :],), label="nine hand-made models covering every phase and sign"),
        Case(args=(W[:1, None, :].double(),), kwargs={"threshold": 0.5}, label="one model, float64 (edge)"),
        Case(args=(at_threshold[:, None, :],), kwargs={"threshold": 0.25},
             label="threshold 0.25, weights exactly at it are not represented (edge)"),
        Case(args=(torch.randn(20, 1, 2, generator=g),), kwargs={"threshold": 0.8},
             label="20 random models, threshold 0.8"),
    ]


def _phase_signed(W: Tensor, threshold: float = 0.5) -> Tensor:
    represented = W[:, 0, :] > threshold
    phase = torch.zeros(W.shape[0], dtype=torch.long)
    phase[represented[:, 1]] = 1
    phase[represented[:, 1] & represented[:, 0]] = 2
    return phase


def _phase_wrong_feature(W: Tensor, threshold: float = 0.5) -> Tensor:
    return ref.classify_phase(W.flip(-1), threshold)


def _phase_overwritten(W: Tensor, threshold: float = 0.5) -> Tensor:
    represented = W[:, 0, :].abs() > threshold
    phase = torch.zeros(W.shape[0], dtype=torch.long)
    phase[represented[:, 1] & represented[:, 0]] = 2
    phase[represented[:, 1]] = 1
    return phase


register(Exercise(
    id="ch01.classify_phase",
    title="Classify n = 2 -> m = 1 models into the three phases",
    reference=ref.classify_phase,
    cases=_phase_cases,
    mistakes=(
        Mistake("sign kept", _phase_signed,
                "A feature stored along -1 is represented too (in superposition one weight is negative): "
                "compare |W| with the threshold."),
        Mistake("features swapped", _phase_wrong_feature,
                "The phases are about feature 2, the second column W[:, 0, 1]; feature 1 is W[:, 0, 0]."),
        Mistake("superposition overwritten", _phase_overwritten,
                "Both-represented models also satisfy the 'feature 2 represented' test: assign "
                "superposition last, or test for it first and exclude it."),
    ),
))


# --- 5. feature dimensionality --------------------------------------------------------------------


def _dimensionality_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(11 + seed)
    with_zero = torch.randn(1, 2, 5, generator=g)
    with_zero[..., 3] = 0
    return [
        Case(args=(torch.randn(2, 3, 6, generator=g),), label="2 instances, 6 features in 3 dims"),
        Case(args=(with_zero,), label="a feature with W_i = 0 has D_i = 0 (edge)"),
        Case(args=(torch.randn(3, 4, 4, generator=g, dtype=torch.float64),), label="m = n, float64"),
    ]


def _dimensionality_no_self(W: Tensor) -> Tensor:
    norms = W.norm(dim=-2, keepdim=True)
    overlap = torch.einsum("imn,imk->ink", W / norms.clamp_min(1e-12), W) ** 2
    others = overlap.sum(-1) - torch.diagonal(overlap, dim1=-2, dim2=-1)
    return norms.squeeze(-2) ** 2 / others.clamp_min(1e-12)


def _dimensionality_unnormalised(W: Tensor) -> Tensor:
    overlap = torch.einsum("imn,imk->ink", W, W) ** 2
    return W.norm(dim=-2) ** 2 / overlap.sum(-1).clamp_min(1e-12)


def _dimensionality_norm_not_squared(W: Tensor) -> Tensor:
    norms = W.norm(dim=-2)
    return ref.feature_dimensionality(W) / norms.clamp_min(1e-12) * (norms > 0)


register(Exercise(
    id="ch01.feature_dimensionality",
    title="Feature dimensionality D_i",
    reference=ref.feature_dimensionality,
    cases=_dimensionality_cases,
    mistakes=(
        Mistake("self term left out", _dimensionality_no_self,
                "The sum over j includes j = i: a dedicated feature then gets D_i = 1, not infinity."),
        Mistake("W_i not normalised", _dimensionality_unnormalised,
                "Project onto the *unit* vector W_i / ||W_i|| in the denominator."),
        Mistake("norm not squared", _dimensionality_norm_not_squared,
                "The numerator is ||W_i||^2, the squared norm."),
    ),
))
