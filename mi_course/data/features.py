"""Synthetic sparse features for toy models of superposition (Elhage et al. 2022).

Each feature is present independently with probability 1 - S (S is the *sparsity*) and, when
present, takes a value uniform in [0, 1]. The instance dimension lets one call feed many toy
models at once, each with its own sparsity, so a whole sweep trains as one batched run.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def sparse_features(
    batch_size: int,
    sparsity: float | Float[Tensor, "instances"],
    n_features: int,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch instances features"]:
    """A batch of sparse features, one slice per instance, with that instance's sparsity.

    The presence mask is drawn first, then the values, both from `generator`, so equal seeds give
    equal batches. Output lives on the generator's device (CPU without a generator).
    """
    device = generator.device if generator is not None else torch.device("cpu")
    s = torch.as_tensor(sparsity, dtype=torch.float32, device=device).reshape(-1)
    if ((s < 0) | (s > 1)).any():
        raise ValueError(f"sparsity must lie in [0, 1], got {s.tolist()}")
    shape = (batch_size, s.numel(), n_features)
    present = torch.rand(shape, generator=generator, device=device) < (1 - s)[:, None]
    values = torch.rand(shape, generator=generator, device=device)
    return torch.where(present, values, torch.zeros((), device=device))
