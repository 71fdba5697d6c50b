"""Feature absorption (Chanin et al. 2024): where a general feature is implied by specific ones, a
sparse autoencoder saves L1 by folding the general direction into each specific latent, and the
general latent goes silent exactly where its feature is present together with a specific one.

Synthetic data with a known hierarchy: one *parent* feature, present whenever one of its
*children* is (each child implies the parent, like "starts with S" implied by "snake") and
sometimes alone, plus independent features. Every feature is a known unit direction, so the
parent latent can be found by its decoder direction and its firing checked input by input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mi_course import sae as sae_lib


@dataclass(frozen=True)
class Hierarchy:
    """Feature 0 is the parent, features 1..n_children its children, the rest independent."""

    directions: Float[Tensor, "features d_in"]
    n_children: int
    p_child: float = 0.15
    p_parent_alone: float = 0.1
    p_other: float = 0.1

    @property
    def n_features(self) -> int:
        return self.directions.shape[0]


def hierarchy(n_children: int, n_other: int, d_in: int, generator: torch.Generator) -> Hierarchy:
    return Hierarchy(sae_lib.random_unit_features(1 + n_children + n_other, d_in, generator), n_children)


def hierarchical_features(
    h: Hierarchy, batch: int, generator: torch.Generator
) -> tuple[Float[Tensor, "batch features"], Float[Tensor, "batch d_in"]]:
    """(coefficients, activations): at most one child per input; the parent is on whenever a child
    is, and alone with probability `p_parent_alone` otherwise; magnitudes uniform in [0.5, 1]."""
    has_child = torch.rand(batch, generator=generator) < h.p_child
    which = torch.randint(h.n_children, (batch,), generator=generator)
    children = torch.zeros(batch, h.n_children)
    children[has_child, which[has_child]] = 1.0
    alone = ~has_child & (torch.rand(batch, generator=generator) < h.p_parent_alone)
    parent = (has_child | alone).float()[:, None]
    other = (torch.rand(batch, h.n_features - 1 - h.n_children, generator=generator) < h.p_other).float()
    magnitude = 0.5 + 0.5 * torch.rand(batch, h.n_features, generator=generator)
    coefficients = torch.cat([parent, children, other], -1) * magnitude
    return coefficients, coefficients @ h.directions


def parent_recall(parent_acts: Float[Tensor, "n"], child_active: Bool[Tensor, "n children"]) -> Float[Tensor, "children"]:
    """For each child, the fraction of the inputs where that child is active on which the parent
    latent fires (activation > 0). A child never active gets recall 0."""
    fires = (parent_acts > 0).float()
    counts = child_active.sum(0)
    return (fires @ child_active.float()) / counts.clamp_min(1)


def best_latent(sae: sae_lib.SAE, direction: Float[Tensor, "d_in"]) -> Tensor:
    """Per instance, the latent whose decoder row is closest in cosine to `direction`."""
    cos = torch.einsum("isd,d->is", sae.W_dec, direction) / sae.W_dec.norm(dim=-1)
    return cos.argmax(-1)
