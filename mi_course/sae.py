"""Sparse autoencoders (SAEs): training, metrics, recovery of known features, and interventions.

An SAE rewrites an activation x as a sparse, non-negative combination of learned directions
(Sharkey et al. 2022; Bricken et al. 2023; Cunningham et al. 2023):

    f(x) = ReLU((x - b_dec) @ W_enc + b_enc),        x_hat = f(x) @ W_dec + b_dec.

Every function works on a leading *instance* dimension, so a sweep over L1 coefficients (or
seeds) trains as one batched run, as Chapter 1's toy models do. Shapes: activations are
`[batch, instances, d_in]`, latents `[batch, instances, d_sae]`, and decoder rows `W_dec[i, j]`
are latent j's direction in instance i.

Metric names follow SAELens's evaluations, so the numbers carry over: L0 is the mean number of
active latents per input; explained variance is 1 - (summed squared error) / (summed squared
deviation from the mean input); a latent is dead when it fires on none of the inputs looked at;
CE loss recovered is (L_zero - L_sae) / (L_zero - L_clean).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from tqdm.auto import tqdm

from mi_course import mutants


@dataclass(frozen=True)
class SAE:
    """The weights of `instances` SAEs of one shape. `k` set: TopK SAEs (Gao et al. 2024), with
    one k for all instances or a tuple of one k per instance."""

    W_enc: Float[Tensor, "instances d_in d_sae"]
    b_enc: Float[Tensor, "instances d_sae"]
    W_dec: Float[Tensor, "instances d_sae d_in"]
    b_dec: Float[Tensor, "instances d_in"]
    k: int | tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(instances, d_in, d_sae)."""
        return tuple(self.W_enc.shape)  # type: ignore[return-value]

    def instance(self, index: int) -> SAE:
        """One instance, kept as an instance dimension of size 1."""
        pick = slice(index, index + 1)
        k = self.k[index] if isinstance(self.k, tuple) else self.k
        return SAE(self.W_enc[pick], self.b_enc[pick], self.W_dec[pick], self.b_dec[pick], k)

    def tensors(self) -> dict[str, Tensor]:
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}

    def encode(self, x: Float[Tensor, "batch instances d_in"]) -> Float[Tensor, "batch instances d_sae"]:
        pre = encoder_preacts(x, self.W_enc, self.b_enc, self.b_dec)
        if self.k is None:
            return torch.relu(pre)
        if isinstance(self.k, int):
            return topk_latents(pre, self.k)
        # One k per instance: keep each instance's top max(k), then drop ranks beyond its own k.
        values, indices = pre.topk(max(self.k), dim=-1)
        keep = torch.arange(max(self.k)) < torch.tensor(self.k)[:, None]
        return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values) * keep)

    def decode(self, latents: Float[Tensor, "batch instances d_sae"]) -> Float[Tensor, "batch instances d_in"]:
        return torch.einsum("bis,isd->bid", latents, self.W_dec) + self.b_dec

    def __call__(self, x: Float[Tensor, "batch instances d_in"]) -> tuple[Tensor, Tensor]:
        """(latents, reconstruction)."""
        latents = self.encode(x)
        return latents, self.decode(latents)


def init_sae(
    instances: int, d_in: int, d_sae: int, generator: torch.Generator, k: int | None = None,
    b_dec: Float[Tensor, "instances d_in"] | None = None,
) -> SAE:
    """Unit-norm random decoder rows, the encoder its transpose, zero encoder bias.

    Tying the initial encoder to the decoder (Conerly et al. 2024) makes every latent start as a
    detector of its own direction, which leaves fewer latents dead. `b_dec` (e.g. the data's
    mean or geometric median) starts the decoder bias where the data are.
    """
    W_dec = torch.randn(instances, d_sae, d_in, generator=generator)
    W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    start = torch.zeros(instances, d_in) if b_dec is None else b_dec.expand(instances, d_in).clone()
    return SAE(W_dec.transpose(1, 2).clone(), torch.zeros(instances, d_sae), W_dec, start, k)


# --- forward pass, loss -----------------------------------------------------------------------


def encoder_preacts(
    x: Float[Tensor, "batch instances d_in"], W_enc: Float[Tensor, "instances d_in d_sae"],
    b_enc: Float[Tensor, "instances d_sae"], b_dec: Float[Tensor, "instances d_in"],
) -> Float[Tensor, "batch instances d_sae"]:
    """(x - b_dec) @ W_enc + b_enc: the decoder bias is the SAE's origin, so remove it first."""
    return torch.einsum("bid,ids->bis", x - b_dec, W_enc) + b_enc


def sae_forward(
    x: Float[Tensor, "batch instances d_in"],
    W_enc: Float[Tensor, "instances d_in d_sae"],
    b_enc: Float[Tensor, "instances d_sae"],
    W_dec: Float[Tensor, "instances d_sae d_in"],
    b_dec: Float[Tensor, "instances d_in"],
) -> tuple[Float[Tensor, "batch instances d_sae"], Float[Tensor, "batch instances d_in"]]:
    """Latents f = ReLU((x - b_dec) W_enc + b_enc) and reconstruction x_hat = f W_dec + b_dec."""
    latents = torch.relu(encoder_preacts(x, W_enc, b_enc, b_dec))
    return latents, torch.einsum("bis,isd->bid", latents, W_dec) + b_dec


def sae_loss(
    x: Float[Tensor, "batch instances d_in"],
    latents: Float[Tensor, "batch instances d_sae"],
    recon: Float[Tensor, "batch instances d_in"],
    W_dec: Float[Tensor, "instances d_sae d_in"],
    l1_coeff: Float[Tensor, "instances"],
) -> Float[Tensor, "instances"]:
    """Per instance: mean over the batch of ||x - x_hat||^2 + l1_coeff * sum_j f_j ||d_j||.

    Weighting each latent's L1 by its decoder norm stops the cheat of shrinking f_j while
    growing d_j, which would buy sparsity for free (Anthropic, April 2024 update).
    """
    reconstruction = (x - recon).pow(2).sum(-1).mean(0)
    sparsity = (latents * W_dec.norm(dim=-1)).sum(-1).mean(0)
    return reconstruction + l1_coeff * sparsity


def topk_latents(
    preacts: Float[Tensor, "batch instances d_sae"], k: int
) -> Float[Tensor, "batch instances d_sae"]:
    """Keep the k largest pre-activations of each input (then ReLU), zero the rest (Gao et al. 2024)."""
    values, indices = preacts.topk(k, dim=-1)
    return torch.zeros_like(preacts).scatter(-1, indices, torch.relu(values))


# --- metrics (SAELens's definitions) ------------------------------------------------------------


def explained_variance(
    x: Float[Tensor, "batch instances d_in"], recon: Float[Tensor, "batch instances d_in"]
) -> Float[Tensor, "instances"]:
    """1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, the mean taken over the batch.

    Against the variance about the mean, not about zero: an SAE that outputs only its decoder
    bias (the mean) explains nothing, however far the data sit from the origin.
    """
    residual = (x - recon).pow(2).sum((0, -1))
    total = (x - x.mean(0, keepdim=True)).pow(2).sum((0, -1))
    return 1 - residual / total


def l0_and_dead(
    latents: Float[Tensor, "batch instances d_sae"]
) -> tuple[Float[Tensor, "instances"], Float[Tensor, "instances"]]:
    """(L0, dead fraction): mean number of non-zero latents per input, and the fraction of latents
    that are zero on every input of the batch."""
    active = latents != 0
    return active.float().sum(-1).mean(0), (~active.any(0)).float().mean(-1)


def loss_recovered(
    clean: Float[Tensor, "n"], spliced: Float[Tensor, "n"], ablated: Float[Tensor, "n"]
) -> float:
    """CE loss recovered, (L_ablated - L_spliced) / (L_ablated - L_clean), from per-position losses.

    1 when splicing the SAE in costs nothing, 0 when it is as bad as zero-ablating the site. The
    means are taken first: a ratio per position explodes where clean and ablated losses agree.
    """
    return ((ablated.mean() - spliced.mean()) / (ablated.mean() - clean.mean())).item()


# --- recovery of known features ----------------------------------------------------------------


def _unit(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def decoder_cosines(
    W_dec: Float[Tensor, "*instances d_sae d_in"], features: Float[Tensor, "n_features d_in"]
) -> Float[Tensor, "*instances d_sae n_features"]:
    """Cosine similarity of every decoder row with every feature direction."""
    return _unit(W_dec) @ _unit(features).T


def mmcs(
    W_dec: Float[Tensor, "instances d_sae d_in"], features: Float[Tensor, "n_features d_in"]
) -> Float[Tensor, "instances"]:
    """Mean max cosine similarity (Sharkey et al. 2022): for each true feature the best-aligned
    latent's cosine, averaged over the features. Several features may pick the same latent."""
    return decoder_cosines(W_dec, features).max(-2).values.mean(-1)


def hungarian_match(
    W_dec: Float[Tensor, "d_sae d_in"], features: Float[Tensor, "n_features d_in"]
) -> tuple[Float[Tensor, "n_features"], Int[Tensor, "n_features"]]:
    """A one-to-one match of features to latents maximising the summed cosine.

    Returns each feature's matched cosine and latent index (needs d_sae >= n_features). Unlike
    MMCS, one latent cannot stand in for two features.
    """
    cos = decoder_cosines(W_dec, features).T.double()
    rows, cols = linear_sum_assignment(cos.cpu().numpy(), maximize=True)
    order = np.argsort(rows)
    latent = torch.as_tensor(cols[order], dtype=torch.long)
    return cos[torch.arange(len(features)), latent].to(W_dec.dtype), latent


# --- training -----------------------------------------------------------------------------------


def resample_dead(
    sae: SAE, dead: Bool[Tensor, "instances d_sae"], x: Float[Tensor, "batch instances d_in"], *, seed: int
) -> SAE:
    """Give every dead latent a new job: the direction of an input the SAE reconstructs badly.

    Per instance, each dead latent draws an input with probability proportional to its squared
    reconstruction error (Bricken et al. 2023). Its decoder row becomes the unit vector along
    that input minus b_dec, its encoder column the same vector scaled to 0.2 x the mean encoder
    norm of the live latents (1 if none live), and its encoder bias 0. Live latents are untouched.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _, recon = sae(x)
        error = (x - recon).pow(2).sum(-1).T + 1e-12                               # [instances, batch]
        n_dead = dead.shape[-1]
        picks = torch.multinomial(error, n_dead, replacement=True, generator=generator)  # [inst, d_sae]
        centred = x.transpose(0, 1) - sae.b_dec[:, None]                            # [inst, batch, d_in]
        chosen = _unit(torch.gather(centred, 1, picks[..., None].expand(-1, -1, x.shape[-1])))
        enc_norm = sae.W_enc.norm(dim=1)                                           # [inst, d_sae]
        live = (~dead).float()
        scale = 0.2 * torch.where(live.sum(-1) > 0, (enc_norm * live).sum(-1) / live.sum(-1).clamp_min(1), 1.0)
        W_dec = torch.where(dead[..., None], chosen, sae.W_dec)
        W_enc = torch.where(dead[:, None, :], (chosen * scale[:, None, None]).transpose(1, 2), sae.W_enc)
        b_enc = torch.where(dead, 0.0, sae.b_enc)
    return replace(sae, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec)


@dataclass(frozen=True)
class TrainLog:
    """Per-instance metrics logged during training, one row per logging step."""

    steps: list[int]
    l0: Float[Tensor, "logs instances"]
    explained_variance: Float[Tensor, "logs instances"]
    dead_fraction: Float[Tensor, "logs instances"]


def train_sae(
    sae: SAE,
    batches: Callable[[], Float[Tensor, "batch instances d_in"]],
    steps: int,
    l1_coeff: Float[Tensor, "instances"] | float = 0.0,
    lr: float = 3e-3,
    resample_every: int | None = None,
    seed: int = 0,
    log_every: int = 50,
    progress: bool = True,
) -> tuple[SAE, TrainLog]:
    """Train every instance at once with Adam on the summed per-instance losses.

    Summing keeps each instance's gradient what it would be alone. The L1 term weights latents by
    their decoder norms (see `sae_loss`); TopK SAEs (`sae.k` set) use the reconstruction alone.
    Dead latents (no firing over the last `resample_every` steps) are resampled, at most until
    three quarters of training, then Adam's moments are reset. Under the `untrained` mutant the
    initial SAE comes back.
    """
    l1 = torch.as_tensor(l1_coeff, dtype=torch.float32).expand(sae.shape[0])
    if mutants.skip_training():
        return sae, TrainLog([], torch.zeros(0, sae.shape[0]), torch.zeros(0, sae.shape[0]), torch.zeros(0, sae.shape[0]))
    params = {name: tensor.detach().clone().requires_grad_(True) for name, tensor in sae.tensors().items()}

    def current() -> SAE:
        return SAE(**params, k=sae.k)

    optimizer = torch.optim.Adam(params.values(), lr=lr)
    fired = torch.zeros(sae.shape[0], sae.shape[2], dtype=torch.bool)
    log: dict[str, list] = {"steps": [], "l0": [], "ev": [], "dead": []}
    quiet = {} if progress else {"disable": True}
    for step in tqdm(range(1, steps + 1), desc="training SAEs", mininterval=0.5, **quiet):
        x = batches()
        latents, recon = current()(x)
        loss = sae_loss(x, latents, recon, params["W_dec"], l1 if sae.k is None else torch.zeros_like(l1))
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        with torch.no_grad():
            params["W_dec"] /= params["W_dec"].norm(dim=-1, keepdim=True)  # unit decoder rows
            fired |= (latents > 0).any(0)
        if step % log_every == 0 or step == steps:
            with torch.no_grad():
                l0, _ = l0_and_dead(latents)
                log["steps"].append(step)
                log["l0"].append(l0)
                log["ev"].append(explained_variance(x, recon))
                log["dead"].append((~fired).float().mean(-1) if resample_every else l0_and_dead(latents)[1])
        if resample_every and step % resample_every == 0:
            if step <= 0.75 * steps and (~fired).any():
                fresh = resample_dead(current(), ~fired, x.detach(), seed=seed + step)
                with torch.no_grad():
                    for name, tensor in fresh.tensors().items():
                        params[name].copy_(tensor)
                optimizer = torch.optim.Adam(params.values(), lr=lr)
            fired = torch.zeros_like(fired)
    trained = SAE(**{name: tensor.detach() for name, tensor in params.items()}, k=sae.k)
    return trained, TrainLog(log["steps"], torch.stack(log["l0"]), torch.stack(log["ev"]), torch.stack(log["dead"]))


# --- toy data with ground truth ------------------------------------------------------------------


def toy_activations(
    features: Float[Tensor, "n_features d_in"], batch: int, p_active: float, generator: torch.Generator,
    instances: int = 1,
) -> Float[Tensor, "batch instances d_in"]:
    """Sparse non-negative combinations of known unit directions (Sharkey et al. 2022's set-up):
    each feature is on with probability `p_active`, with a magnitude uniform in [0, 1]."""
    from mi_course.data.features import sparse_features

    coefficients = sparse_features(batch, torch.full((instances,), 1 - p_active), len(features), generator)
    return coefficients @ features


def random_unit_features(n_features: int, d_in: int, generator: torch.Generator) -> Float[Tensor, "n_features d_in"]:
    return _unit(torch.randn(n_features, d_in, generator=generator))


# --- scoring latents against known variables, and interventions ----------------------------------


def best_f1(
    acts: Float[Tensor, "n units"], labels: Bool[Tensor, "n variables"]
) -> Float[Tensor, "units variables"]:
    """How well each unit detects each binary variable: the best F1 over thresholds "act >= t".

    Only thresholds at the units' own values count, and tied values fall on the same side, so a
    unit that is zero on most inputs cannot split its zeros. F1 rewards firing *only* on the
    variable, which dense directions (neurons, random projections) rarely do. Loops over
    variables, never over units.
    """
    values, order = acts.T.sort(-1, descending=True)                     # [units, n]
    cut = torch.ones_like(values, dtype=torch.bool)
    cut[:, :-1] = values[:, :-1] != values[:, 1:]                         # the last of each tie group
    predicted = torch.arange(1, acts.shape[0] + 1, dtype=torch.float32)
    scores = []
    for column in labels.T.float():
        true_positives = column[order].cumsum(-1)
        f1 = 2 * true_positives / (predicted + column.sum())
        scores.append(torch.where(cut, f1, 0.0).max(-1).values)
    return torch.stack(scores, -1)


def remove_latent(x: Float[Tensor, "n d_in"], sae: SAE, latent: int) -> Float[Tensor, "n d_in"]:
    """x - f_i(x) d_i: take one latent's contribution out of x, and keep everything else,
    the SAE's error term (x - x_hat) included, so only latent i's part of x changes."""
    latents = sae.encode(x[:, None])[:, 0]
    return x - latents[:, latent, None] * sae.W_dec[0, latent]


def steer_latent(x: Float[Tensor, "n d_in"], sae: SAE, latent: int, alpha: float) -> Float[Tensor, "n d_in"]:
    """x + alpha * d_i: push the activation along latent i's decoder direction."""
    return x + alpha * sae.W_dec[0, latent]


def mmcs_counterexample(
    n_features: int, d_in: int, d_sae: int
) -> tuple[Float[Tensor, "d_sae d_in"], Float[Tensor, "n_features d_in"]]:
    """A dictionary with high MMCS that has not found the features: each latent sits between a
    pair of features (cosine 0.91 with both) and the spare latents point away from all of them, so
    only a one-to-one match shows that half the features have no latent of their own."""
    basis = torch.eye(d_in)
    half = n_features // 2
    centres, offsets = basis[:half], basis[half:n_features]
    features = _unit(torch.cat([centres + 0.45 * offsets, centres - 0.45 * offsets]))
    spare = -centres[torch.arange(d_sae - half) % half]
    return torch.cat([centres, spare]), features
