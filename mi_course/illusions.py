"""Interpretability illusions: explanations that look right on the data they came from.

Two kinds, for Chapter 7:

- **Dataset illusions** (Bolukbasi et al. 2021): a unit named from its top activations on one
  dataset. Naming looks at the few inputs where it fires most; scoring the name as a classifier
  (precision and recall of "fires" against "has the property") on other data says how far the
  name holds.
- **Subspace-patching illusions** (Makelov, Lange & Nanda 2023): patching the value of a single
  direction from a source input into a base input changes the output, although neither part of
  the direction does anything alone: one part carries the variable but is not read downstream
  (causally disconnected), the other is read downstream but never varies on the data (dormant).
  Patching along their sum moves the variable's variation into the dormant part, switching on a
  pathway the model never uses. A hand-built component shows it with the ground truth known;
  `split_direction` and `readout_fraction` are the checks for a trained layer (the search on
  a shipped model is in `mi_course.das`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

# --- naming a unit from its top activations, and scoring the name -----------------------------


def top_activation_precision(
    acts: Float[Tensor, "n units"], labels: Bool[Tensor, "n variables"], k: int
) -> Float[Tensor, "units variables"]:
    """For each unit, the fraction of its `k` highest-activating inputs that have each property:
    what "look at the top activations" measures, and all it measures."""
    top = acts.topk(k, dim=0).indices                       # [k, units]
    return labels[top].float().mean(0)


def precision_recall(
    acts: Float[Tensor, "n"], labels: Bool[Tensor, "n"], threshold: float
) -> Float[Tensor, "2"]:
    """The explanation "the unit fires (act > threshold) exactly when the property holds", scored
    as a classifier: (precision, recall). Precision is 0 when the unit never fires, recall 0 when
    no input has the property."""
    fires = acts > threshold
    hits = (fires & labels).sum().float()
    precision = hits / fires.sum() if fires.any() else torch.tensor(0.0)
    recall = hits / labels.sum() if labels.any() else torch.tensor(0.0)
    return torch.stack([precision, recall])


# --- a hand-built component with a disconnected and a dormant direction ------------------------


@dataclass(frozen=True)
class ToyComponent:
    """A scalar variable a, carried to the output by a skip connection, and a component (think:
    an MLP's hidden layer) that the output never needs:

        hidden h = a * write,          output y = a + h @ read.

    `write` and `read` are orthogonal, so on real inputs h @ read = 0 and the component adds
    nothing: the part of h that varies with a (along `write`) is causally disconnected, and the
    direction the output reads (`read`) is dormant.
    """

    write: Float[Tensor, "d_hidden"]
    read: Float[Tensor, "d_hidden"]

    def hidden(self, a: Float[Tensor, "n"]) -> Float[Tensor, "n d_hidden"]:
        return a[:, None] * self.write

    def output(self, a: Float[Tensor, "n"], hidden: Float[Tensor, "n d_hidden"]) -> Float[Tensor, "n"]:
        return a + hidden @ self.read


def toy_component(d_hidden: int, scale: float, generator: torch.Generator) -> ToyComponent:
    """A random `ToyComponent`: `write` and `read` orthogonal, with |write| |read| = `scale`."""
    basis = torch.linalg.qr(torch.randn(d_hidden, 2, generator=generator))[0]
    size = torch.rand(1, generator=generator).item() + 0.5
    return ToyComponent(write=basis[:, 0] * size, read=basis[:, 1] * scale / size)


def subspace_patch(
    base: Float[Tensor, "n d"], source: Float[Tensor, "n d"], direction: Float[Tensor, "d"] | Float[Tensor, "n d"]
) -> Float[Tensor, "n d"]:
    """`base` with its component along `direction` replaced by `source`'s; everything orthogonal
    to the direction stays `base`'s. The direction need not have unit norm; it is one for every
    row, or one per row."""
    unit = direction / direction.norm(dim=-1, keepdim=True)
    return base + ((source - base) * unit).sum(-1, keepdim=True) * unit


def patch_effect(
    toy: ToyComponent, base_a: Float[Tensor, "n"], source_a: Float[Tensor, "n"], direction: Float[Tensor, "d"] | None
) -> float:
    """How far patching `toy`'s hidden layer from source into base moves the output, as a fraction
    of the distance the output would move if the variable itself were changed (source - base).
    `direction=None` patches the whole hidden vector."""
    base, source = toy.hidden(base_a), toy.hidden(source_a)
    patched = source if direction is None else subspace_patch(base, source, direction)
    moved = toy.output(base_a, patched) - toy.output(base_a, base)
    return (moved.sum() / (source_a - base_a).sum()).item()


def readout_fraction(direction: Float[Tensor, "d"], read: Float[Tensor, "k d"]) -> float:
    """The share of the (unit) direction's squared norm inside the span of the rows the next
    layer reads with: 0 means the next layer cannot see a patch along it."""
    basis = torch.linalg.qr(read.T)[0]
    unit = direction / direction.norm()
    return (unit @ basis).pow(2).sum().item()


def split_direction(
    direction: Float[Tensor, "d_mlp"], w_out: Float[Tensor, "d_mlp d_model"]
) -> tuple[Float[Tensor, "d_mlp"], Float[Tensor, "d_mlp"]]:
    """The unit direction split into (invisible, readable) for a layer whose output is
    `hidden @ w_out`: the readable part is its projection on the span of `w_out`'s columns (all
    the output depends on; `w_out` may be rank-deficient), the invisible part the rest, which
    `w_out` maps to 0. The two are orthogonal and add up to the unit direction."""
    unit = direction / direction.norm()
    readable = w_out @ (torch.linalg.pinv(w_out) @ unit)
    return unit - readable, readable


def illusory_direction(toy: ToyComponent) -> Float[Tensor, "d_hidden"]:
    """A unit direction whose patch moves the output exactly as far as changing the variable:
    cos(t) write/|write| + sin(t) read/|read| with sin(2t) = 2 / (|write| |read|), the smaller t.
    Needs |write| |read| >= 2."""
    w, r = toy.write.norm(), toy.read.norm()
    t = 0.5 * torch.asin(2 / (w * r))
    return torch.cos(t) * toy.write / w + torch.sin(t) * toy.read / r


def invisible_push_share(
    direction: Float[Tensor, "d"], w_out: Float[Tensor, "d d_model"], moved: Float[Tensor, "n d"]
) -> float:
    """Where the push of a one-direction patch comes from. Patching along the unit direction
    v = invisible + readable (`split_direction`) adds ((h_s - h_b) . v) v to each hidden vector,
    and the rest of the network sees only ((h_s - h_b) . v) readable. Of that push, the share due to
    source and base differing along the *invisible* part: mean(moved . invisible) / mean(moved . v),
    `moved` = h_s - h_b per row. Near 1: the patch works by moving a variation the network never
    reads into a direction it does (the illusion); near 0: by a variation it reads anyway."""
    invisible, readable = split_direction(direction, w_out)
    return ((moved @ invisible).mean() / (moved @ (invisible + readable)).mean()).item()
