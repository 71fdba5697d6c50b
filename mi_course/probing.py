"""Probes on the residual stream, their baselines, and interventions on their directions.

A probe that reads a property from activations shows the information is *there*, not that the
model *uses* it (Hewitt & Liang 2019; Belinkov 2022). The tools here make that distinction:
a randomly initialised copy of the model and control tasks as the baselines a probe must beat,
mean-ablation of the probe's directions, which asks whether the model's output depends on them
(Elazar et al. 2021), and edits along them, which ask whether the model acts on what they say
(Li et al. 2023; Nanda et al. 2023).

Depth d of the residual stream means "after d blocks": depth 0 is the embeddings
(`blocks.0.hook_resid_pre`), depth d >= 1 is `blocks.{d-1}.hook_resid_post`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def resid_hook_name(model: TransformerBridge, depth: int) -> str:
    """The hook that holds the residual stream after `depth` blocks."""
    n_layers = model.cfg.n_layers
    if not isinstance(depth, int) or not 0 <= depth <= n_layers:
        raise ValueError(f"depth must be an int from 0 (embeddings) to {n_layers}, got {depth!r}")
    return "blocks.0.hook_resid_pre" if depth == 0 else f"blocks.{depth - 1}.hook_resid_post"


def resid_hook_names(n_layers: int) -> list[str]:
    """The residual-stream hooks of every depth, 0 (embeddings) to n_layers, in order."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


def stack_residuals(
    cache: Mapping[str, Tensor], n_layers: int, keep: Bool[Tensor, "batch pos"]
) -> Float[Tensor, "depth n d_model"]:
    """The residual stream at every depth, one row per kept position (row-major: walk by walk).

    The rows line up with `labels[keep]`: the residual at position p has read token p, and the
    labels at p describe the state after token p. `keep` drops the unlabelled `<bos>` position.
    """
    return torch.stack([cache[name][keep] for name in resid_hook_names(n_layers)])


def collect_residuals(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "depth batch pos d_model"]:
    """The residual stream at every depth, 0 (embeddings) to n_layers, stacked."""
    names = resid_hook_names(model.cfg.n_layers)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return torch.stack([cache[name] for name in names])


def split_by_walk(keep: Bool[Tensor, "batch pos"], test_fraction: float, seed: int = 0) -> Bool[Tensor, "n"]:
    """Which labelled rows (`keep`, row-major) are test rows: all of a walk's rows, or none.

    Positions of one walk share their history, so splitting by position would let the probe see
    the test walks' neighbours in training. `round(test_fraction * batch)` walks, drawn at random
    with a generator seeded by `seed`, form the test set.
    """
    generator = torch.Generator().manual_seed(seed)
    n_test = round(test_fraction * keep.shape[0])
    test_walk = torch.zeros(keep.shape[0], dtype=torch.bool)
    test_walk[torch.randperm(keep.shape[0], generator=generator)[:n_test]] = True
    return test_walk[:, None].expand_as(keep)[keep]


@dataclass(frozen=True)
class LinearProbe:
    """A multinomial logistic-regression probe, or a stack of independent ones.

    It reads `(acts - center) / scale @ weight + bias`; `center` and the scalar `scale` only make
    the fit well conditioned, so the directions the probe reads are the columns of `weight`.
    """

    weight: Float[Tensor, "*probes d_model classes"]
    bias: Float[Tensor, "*probes 1 classes"]
    center: Float[Tensor, "*probes 1 d_model"]
    scale: Float[Tensor, "*probes 1 1"]

    def logits(self, acts: Float[Tensor, "*probes n d_model"]) -> Float[Tensor, "*probes n classes"]:
        return ((acts - self.center) / self.scale) @ self.weight + self.bias

    def predict(self, acts: Float[Tensor, "*probes n d_model"]) -> Int[Tensor, "*probes n"]:
        return self.logits(acts).argmax(-1)

    def accuracy(self, acts: Float[Tensor, "*probes n d_model"], labels: Int[Tensor, "n"]) -> Float[Tensor, "*probes"]:
        """Fraction of rows whose label the probe predicts."""
        return (self.predict(acts) == labels).float().mean(-1)

    def cross_entropy(self, acts: Float[Tensor, "*probes n d_model"], labels: Int[Tensor, "n"]) -> Float[Tensor, "*probes"]:
        """Mean cross-entropy (nats) of the probe's prediction of `labels`."""
        return cross_entropy_by_probe(self.logits(acts), labels)

    @classmethod
    def from_weights(cls, weight: Float[Tensor, "*probes d_model classes"], bias: Float[Tensor, "*probes classes"]) -> LinearProbe:
        """The probe whose logits are `acts @ weight + bias`."""
        probes, d_model = weight.shape[:-2], weight.shape[-2]
        return cls(
            weight=weight, bias=bias[..., None, :], center=weight.new_zeros(*probes, 1, d_model),
            scale=weight.new_ones(*probes, 1, 1),
        )

    def directions(self) -> Float[Tensor, "*probes d_model rank"]:
        """An orthonormal basis of the subspace the probe reads (rank: classes - 1).

        Adding the same vector to every class weight changes no prediction, so the weights are
        centred over classes first; what is left spans the directions that decide the class.
        """
        centred = self.weight - self.weight.mean(-1, keepdim=True)
        basis, _ = torch.linalg.qr(centred)
        return basis[..., : self.weight.shape[-1] - 1]


def cross_entropy_by_probe(
    logits: Float[Tensor, "*probes n classes"], labels: Int[Tensor, "*probes n"]
) -> Float[Tensor, "*probes"]:
    """Mean cross-entropy over rows, kept separate for each probe in the leading dimensions."""
    labels = labels.expand(logits.shape[:-1])
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none").view(labels.shape).mean(-1)


def orthonormal_basis(vectors: Float[Tensor, "d_model k"], tol: float = 1e-6) -> Float[Tensor, "d_model rank"]:
    """An orthonormal basis of the span of the columns of `vectors` (zero columns add nothing)."""
    if vectors.numel() == 0:
        return vectors.new_zeros(vectors.shape[0], 0)
    u, singular, _ = torch.linalg.svd(vectors, full_matrices=False)
    return u[:, singular > tol * max(singular.max().item(), tol)]


def _check_probe_data(acts: Tensor, labels: Tensor) -> None:
    if acts.ndim < 2 or labels.ndim != 1 or acts.shape[-2] != labels.shape[0]:
        raise ValueError(
            f"need acts of shape (..., n, d_model) and labels of shape (n,), got {tuple(acts.shape)} "
            f"and {tuple(labels.shape)}; select the labelled positions first, e.g. acts[:, mask]"
        )
    if labels.numel() == 0:
        raise ValueError("no labelled rows to fit a probe on")
    if labels.dtype not in (torch.int64, torch.int32) or labels.min() < 0:
        raise ValueError("labels must be non-negative integer class ids; drop unlabelled positions")


def fit_probe(
    acts: Float[Tensor, "*probes n d_model"],
    labels: Int[Tensor, "n"],
    n_classes: int | None = None,
    l2: float = 1e-4,
    max_iter: int = 100,
) -> LinearProbe:
    """Fit logistic-regression probes (one per leading index of `acts`) by full-batch L-BFGS.

    The loss is convex, so the result does not depend on a seed; fitting a stack of probes in
    one call (e.g. one per depth) shares the optimiser, and each converges to its own optimum
    because the summed objective separates.
    """
    _check_probe_data(acts, labels)
    acts = acts.detach().float()
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    center = acts.mean(-2, keepdim=True)
    scale = (acts - center).pow(2).sum(-1).mean(-1)[..., None, None].sqrt().clamp_min(1e-8)
    inputs = (acts - center) / scale * acts.shape[-1] ** 0.5
    probes = acts.shape[:-2]
    weight = acts.new_zeros(*probes, acts.shape[-1], n_classes, requires_grad=True)
    bias = acts.new_zeros(*probes, 1, n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")
    targets = labels.to(acts.device).expand(*probes, -1).reshape(-1)

    def objective() -> Tensor:
        optimizer.zero_grad()
        logits = (inputs @ weight + bias).reshape(-1, n_classes)
        loss = F.cross_entropy(logits, targets, reduction="sum") / labels.shape[0]
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():   # also when the caller has switched gradients off
        optimizer.step(objective)
    # Fold the sqrt(d_model) input scaling back into the weights.
    return LinearProbe(
        weight=weight.detach() * acts.shape[-1] ** 0.5, bias=bias.detach(), center=center, scale=scale
    )


def fit_probes(
    acts: Float[Tensor, "probes n d_model"], labels: Int[Tensor, "n"], n_classes: int
) -> tuple[Float[Tensor, "probes d_model classes"], Float[Tensor, "probes classes"]]:
    """Logistic-regression probes, one per leading index, as weights and biases on the raw
    activations: probe i reads `acts[i] @ weight[i] + bias[i]`. One batched optimisation."""
    probe = fit_probe(acts, labels, n_classes)
    weight = probe.weight / probe.scale
    bias = probe.bias - (probe.center / probe.scale) @ probe.weight
    return weight, bias[..., 0, :]


@dataclass(frozen=True)
class MLPProbe:
    """A one-hidden-layer ReLU probe, or a stack of independent ones: the more expressive probe
    that control tasks are meant to expose (Hewitt & Liang 2019)."""

    w_in: Float[Tensor, "*probes d_model hidden"]
    b_in: Float[Tensor, "*probes 1 hidden"]
    w_out: Float[Tensor, "*probes hidden classes"]
    b_out: Float[Tensor, "*probes 1 classes"]
    center: Float[Tensor, "*probes 1 d_model"]
    scale: Float[Tensor, "*probes 1 1"]

    def logits(self, acts: Float[Tensor, "*probes n d_model"]) -> Float[Tensor, "*probes n classes"]:
        hidden = F.relu(((acts - self.center) / self.scale) @ self.w_in + self.b_in)
        return hidden @ self.w_out + self.b_out

    def accuracy(self, acts: Float[Tensor, "*probes n d_model"], labels: Int[Tensor, "*probes n"]) -> Float[Tensor, "*probes"]:
        return (self.logits(acts).argmax(-1) == labels).float().mean(-1)


def fit_mlp_probes(
    acts: Float[Tensor, "*probes n d_model"],
    labels: Int[Tensor, "*probes n"],
    n_classes: int,
    hidden: int = 64,
    steps: int = 200,
    lr: float = 1e-2,
    seed: int = 0,
) -> MLPProbe:
    """MLP probes for every leading index of `acts` (labels broadcast against them), all trained
    in one full-batch Adam optimisation; each probe's loss is separate, so they do not interact."""
    acts = acts.detach().float()
    labels = labels.to(acts.device).expand(acts.shape[:-1])
    probes, d_model = acts.shape[:-2], acts.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    center = acts.mean(-2, keepdim=True)
    scale = ((acts - center).pow(2).sum(-1).mean(-1)[..., None, None] / d_model).sqrt().clamp_min(1e-8)
    params = [
        torch.randn(*probes, d_model, hidden, generator=generator) / d_model**0.5,
        torch.zeros(*probes, 1, hidden),
        torch.randn(*probes, hidden, n_classes, generator=generator) / hidden**0.5,
        torch.zeros(*probes, 1, n_classes),
    ]
    params = [param.to(acts.device).requires_grad_(True) for param in params]
    probe = MLPProbe(*params, center=center, scale=scale)
    optimizer = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():   # also when the caller has switched gradients off
        for _ in tqdm(range(steps), desc="MLP probes", leave=False):
            optimizer.zero_grad()
            cross_entropy_by_probe(probe.logits(acts), labels).sum().backward()
            optimizer.step()
    return MLPProbe(*(param.detach() for param in params), center=center, scale=scale)


def input_types(tokens: Int[Tensor, "batch pos"], d_vocab: int) -> Int[Tensor, "batch pos"]:
    """An id for each (position, token) pair: what the embeddings alone can tell apart. Control
    tasks give each such type its own random label."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    return positions * d_vocab + tokens


def control_task(types: Int[Tensor, "n"], n_classes: int, seed: int = 0) -> Int[Tensor, "n"]:
    """A control task (Hewitt & Liang 2019): each input type gets one label drawn uniformly from
    `n_classes`, the same for every row of that type, from a generator seeded by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randint(n_classes, (int(types.max()) + 1,), generator=generator)
    return table[types.cpu()].to(types.device)


class Nullspace(NamedTuple):
    """What `amnesic_directions` removed: an orthonormal basis, and the accuracy of the probe
    fitted at each round (before that round's directions were removed)."""

    basis: Float[Tensor, "d_model k"]
    accuracies: list[float]


def amnesic_directions(
    acts: Float[Tensor, "n d_model"],
    labels: Int[Tensor, "n"],
    stop_accuracy: float,
    max_rounds: int = 24,
    max_iter: int = 50,
) -> Nullspace:
    """Directions whose removal leaves a fresh linear probe unable to read `labels`.

    Iterative nullspace projection (Ravfogel et al. 2020), as used by amnesic probing (Elazar
    et al. 2021): fit a probe, add its directions to the removed set, project them out, refit;
    stop once a probe scores at most `stop_accuracy` (e.g. just above the majority class).
    Removing one probe's direction is not enough when the property is spread over many.
    """
    _check_probe_data(acts, labels)
    d_model = acts.shape[-1]
    basis = acts.new_zeros(d_model, 0)
    accuracies: list[float] = []
    for _ in range(max_rounds):
        projected = acts - (acts @ basis) @ basis.T
        probe = fit_probe(projected, labels, max_iter=max_iter)
        accuracies.append(probe.accuracy(projected, labels).item())
        if accuracies[-1] <= stop_accuracy:
            break
        basis = orthonormal_basis(torch.cat([basis, probe.directions()], dim=1))
    return Nullspace(basis, accuracies)


def erase_label(acts: Float[Tensor, "n d_model"], labels: Int[Tensor, "n"], max_dims: int) -> Float[Tensor, "d_model k"]:
    """An orthonormal basis of at most `max_dims` directions whose removal leaves a fresh linear
    probe reading `labels` barely above the majority class: amnesic directions, stopped at
    majority + 0.02."""
    majority = torch.bincount(labels).max().item() / len(labels)
    n_classes = int(labels.max()) + 1
    rounds = max(1, max_dims // max(1, n_classes - 1))
    return amnesic_directions(acts, labels, stop_accuracy=majority + 0.02, max_rounds=rounds).basis


def untrained_copy(model: TransformerBridge, seed: int = 0) -> TransformerBridge:
    """A randomly initialised model of `model`'s architecture and tokenizer: the probing control.

    Random networks already mix and spread their inputs, so a probe on one often reads a lot; a
    probe on the trained model says something only by the margin it beats this copy by.
    """
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    from mi_course.models.checkpoint import config_dict

    settings = config_dict(model) | {"seed": seed, "dtype": model.cfg.dtype}
    copy = TransformerBridge.boot_native(
        TransformerBridgeConfig.from_dict(settings), tokenizer=model.tokenizer, device=model.cfg.device
    )
    return copy.eval()


def random_init_weights(model: TransformerBridge, seed: int = 0) -> dict[str, Tensor]:
    """The weights (a state dict) a fresh model of `model`'s architecture starts from, with `seed`:
    load them into a copy of the model to get the random-init control."""
    return untrained_copy(model, seed).state_dict()


def mean_ablate_directions(
    model: TransformerBridge,
    tokens: Int[Tensor, "batch pos"],
    depth: int,
    directions: Float[Tensor, "d_model k"],
    where: Bool[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos vocab"]:
    """Logits when, at residual depth `depth`, the component in span(`directions`) is replaced by
    its mean, at the positions `where` (all positions when None).

    Mean rather than zero keeps the residual stream near its usual range, so a change in the
    output reflects the information removed, not an activation the model never sees.
    """
    mask = torch.ones(tokens.shape, dtype=torch.bool) if where is None else where
    if mask.shape != tokens.shape:
        raise ValueError(f"where must have the shape of tokens {tuple(tokens.shape)}, got {tuple(mask.shape)}")
    if directions.ndim != 2 or directions.shape[0] != model.cfg.d_model:
        raise ValueError(f"directions must have shape (d_model={model.cfg.d_model}, k), got {tuple(directions.shape)}")
    mask = mask.to(model.cfg.device)
    directions = directions.to(device=model.cfg.device, dtype=model.cfg.dtype)

    def hook(resid: Float[Tensor, "batch pos d_model"], hook) -> Tensor:
        return mean_ablate_subspace(resid, directions, mask)

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(resid_hook_name(model, depth), hook)])


def mean_ablate_subspace(
    resid: Float[Tensor, "batch pos d_model"],
    directions: Float[Tensor, "d_model k"],
    where: Bool[Tensor, "batch pos"],
) -> Float[Tensor, "batch pos d_model"]:
    """`resid` with its component in span(`directions`) replaced, at the positions `where`, by
    that component's mean over the same positions; everything else is left as it is."""
    basis = orthonormal_basis(directions)
    component = resid @ basis
    mean = component[where].mean(0)
    change = torch.where(where[..., None], mean - component, 0.0)
    return resid + change @ basis.T


def class_means(acts: Float[Tensor, "n d_model"], labels: Int[Tensor, "n"], n_classes: int) -> Float[Tensor, "classes d_model"]:
    """The mean activation of each class (a class with no rows gets zeros)."""
    sums = acts.new_zeros(n_classes, acts.shape[-1]).index_add_(0, labels, acts)
    return sums / torch.bincount(labels, minlength=n_classes).clamp_min(1)[:, None].to(acts.dtype)


def steer_subspace(
    resid: Float[Tensor, "n d_model"], basis: Float[Tensor, "d_model k"], target: Float[Tensor, "n d_model"]
) -> Float[Tensor, "n d_model"]:
    """`resid` with its component in span(`basis`) (orthonormal columns) set to `target`'s: an
    edit along the probe's directions that leaves the rest of the residual stream alone."""
    return resid + ((target - resid) @ basis) @ basis.T


def output_kl(
    clean: Float[Tensor, "batch pos vocab"],
    changed: Float[Tensor, "batch pos vocab"],
    where: Bool[Tensor, "batch pos"] | None = None,
) -> float:
    """Mean KL(clean || changed) of the next-token distributions, over the positions `where`.

    The measure of whether an intervention mattered: zero when the output distribution is the
    same, whichever token the model would have ranked first.
    """
    if clean.shape != changed.shape:
        raise ValueError(f"logits differ in shape: {tuple(clean.shape)} and {tuple(changed.shape)}")
    mask = torch.ones(clean.shape[:-1], dtype=torch.bool) if where is None else where
    clean_lp, changed_lp = clean.log_softmax(-1)[mask], changed.log_softmax(-1)[mask]
    return (clean_lp.exp() * (clean_lp - changed_lp)).sum(-1).mean().item()
