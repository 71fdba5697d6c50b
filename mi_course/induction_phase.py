"""The induction phase change (Olsson et al. 2022): scores and losses across training snapshots.

Olsson et al. saw induction heads form in a short window of training, at the same time as the
in-context-learning score drops and the loss on repeated text falls. `attn-only-2l` ships with
snapshots at log-spaced training steps (`mi_course.models.snapshot_steps`), so Chapter 3 can
measure the same series without training anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

from mi_course.circuits import per_token_loss
from mi_course.induction import attention_patterns, induction_scores, loss_by_half, previous_token_scores
from mi_course.models import load_model, snapshot_steps


def in_context_learning_score(
    loss: Float[Tensor, "batch pos_minus_1"], early: int = 10, late: int = 50
) -> float:
    """Mean loss on token `late` minus mean loss on token `early` (tokens counted from 0 = BOS).

    Olsson et al. 2022 use token 500 minus token 50 on natural text; our rows are 61 tokens, so
    the defaults scale that down. Negative means the model predicts better with more context.
    `loss[:, j]` is the loss of predicting token j + 1, as `per_token_loss` returns it.
    """
    if not 1 <= early < late <= loss.shape[-1]:
        raise ValueError(f"need 1 <= early < late <= {loss.shape[-1]}, got early={early}, late={late}")
    return (loss[:, late - 1].mean() - loss[:, early - 1].mean()).item()


class PhaseChange(NamedTuple):
    """One value per snapshot, in training order. Scores are the best head's (max over heads)."""

    steps: list[int]
    induction: Float[Tensor, "snapshot"]
    previous_token: Float[Tensor, "snapshot"]
    loss_first: Float[Tensor, "snapshot"]
    loss_repeat: Float[Tensor, "snapshot"]
    icl: Float[Tensor, "snapshot"]


@torch.no_grad()
def snapshot_metrics(
    model: TransformerBridge, repeated: Int[Tensor, "batch pos"], seg_len: int, natural: Int[Tensor, "batch pos2"]
) -> tuple[float, float, float, float, float]:
    """Induction and previous-token score, first- and repeated-copy loss, ICL score of one model.

    `repeated` is `[BOS] + segment + segment` rows; `natural` rows from the training mix, on
    which the in-context-learning score is measured. Copy losses are `loss_by_half`'s.
    """
    patterns = attention_patterns(model, repeated)
    halves = loss_by_half(model, repeated, seg_len)
    natural = natural.to(model.cfg.device)
    return (
        induction_scores(patterns, seg_len).max().item(),
        previous_token_scores(patterns).max().item(),
        halves.first,
        halves.repeat,
        in_context_learning_score(per_token_loss(model(natural), natural)),
    )


def phase_change_series(
    name: str,
    repeated: Int[Tensor, "batch pos"],
    seg_len: int,
    natural: Int[Tensor, "batch pos2"],
    device: str | torch.device | None = None,
) -> PhaseChange:
    """`snapshot_metrics` at every training snapshot of shipped model `name`.

    One model per snapshot is loaded in turn: each has its own weights, so there is no batch
    to form across them, and each costs one small forward pass per input.
    """
    steps = snapshot_steps(name)
    if len(steps) < 2:
        raise ValueError(f"{name!r} ships {len(steps)} training snapshot(s); a phase change needs several")
    rows = [snapshot_metrics(load_model(name, device=device, step=step), repeated, seg_len, natural) for step in steps]
    columns = torch.tensor(rows).T
    return PhaseChange(steps, *columns)


def transition_window(
    steps: Sequence[int], values: Float[Tensor, "snapshot"], low: float = 0.1, high: float = 0.9
) -> tuple[int, int]:
    """The snapshots between which `values` goes from `low` to `high` of its total change.

    Progress at a snapshot is (value - first) / (last - first), so the window marks where most
    of a rise (or fall) happens without assuming its shape: it runs from the last snapshot
    still at or below `low` to the first at or above `high`. It is only as sharp as the
    snapshots are dense.
    """
    values = torch.as_tensor(values, dtype=torch.float64)
    if len(steps) != len(values) or len(steps) < 2:
        raise ValueError(f"need as many values as steps, at least 2; got {len(values)} and {len(steps)}")
    if values[0] == values[-1]:
        raise ValueError("the series ends where it starts, so it has no transition")
    progress = (values - values[0]) / (values[-1] - values[0])
    end = int((progress >= high).nonzero()[0])
    start = int((progress[:end] <= low).nonzero()[-1]) if (progress[:end] <= low).any() else 0
    return (steps[start], steps[end])
