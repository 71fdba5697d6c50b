"""The training loop shared by every shipped model: AdamW, a progress bar, snapshots.

A training module supplies the model, a batch sampler and (optionally) its own loss; the
loop stays the same, so every shipped checkpoint is trained the same documented way.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

LossFn = Callable[["TransformerBridge", Tensor], Tensor]


def fresh_model(config: TransformerBridgeConfig, build_tokenizer: Callable[[Path], Any]) -> TransformerBridge:
    """A randomly initialised bridge on the CPU with its tokenizer attached.

    TransformerLens 4 keeps BOS handling only for a tokenizer loaded from a folder, so the
    tokenizer is built into a scratch folder and the bridge boots from there.
    """
    from transformer_lens.model_bridge import TransformerBridge

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_tokenizer(Path(scratch) / "tokenizer")
        return TransformerBridge.boot_native(config, tokenizer=tokenizer, device="cpu")


def check_steps(steps: int) -> int:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return steps


def next_token_loss(model: TransformerBridge, tokens: Int[Tensor, "batch pos"]) -> Tensor:
    """Mean next-token cross-entropy over every position: the default training loss."""
    return model(tokens, return_type="loss")


@dataclass
class TrainResult:
    """What a run leaves besides the trained model: the loss curve, snapshots and wall time."""

    losses: list[float] = field(default_factory=list)
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    seconds: float = 0.0

    def report(self, seed: int, steps: int, evaluation: dict) -> dict:
        """The metrics every training module reports: seed, steps, the final training loss
        (mean of the last 50 steps), the model's own evaluation, and the wall time."""
        tail = self.losses[-50:]
        return {
            "seed": seed,
            "steps": steps,
            "train_loss_last_50": round(sum(tail) / len(tail), 4),
            **evaluation,
            "train_seconds": round(self.seconds, 1),
        }


def warmup_stable_decay(
    steps: int, warmup: int, decay_fraction: float, final: float
) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, constant, then linear decay to `final`.

    The long constant stretch leaves a phase change room to happen at the full rate; the
    decay at the end settles what was learned.
    """
    decay_start = round(steps * (1 - decay_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step < decay_start:
            return 1.0
        return 1.0 - (1.0 - final) * (step - decay_start + 1) / max(1, steps - decay_start)

    return factor


def fit(
    model: TransformerBridge,
    next_batch: Callable[[], Tensor],
    steps: int,
    lr: float,
    *,
    schedule: Callable[[int], float] | None = None,
    weight_decay: float = 0.0,
    loss_fn: LossFn = next_token_loss,
    snapshot_steps: Collection[int] = (),
    progress: bool = True,
    desc: str = "training",
) -> TrainResult:
    """Train `model` in place for `steps` AdamW steps on batches from `next_batch()`.

    `schedule(step)` scales `lr` at each step (constant when None). A snapshot at step s holds
    the weights after s updates (step 0: the initialisation).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule or (lambda step: 1.0))
    result = TrainResult()
    start = time.perf_counter()

    def maybe_snapshot(step: int) -> None:
        if step in snapshot_steps:
            state = model.state_dict()
            result.snapshots[step] = {name: tensor.detach().clone() for name, tensor in state.items()}

    model.train()
    maybe_snapshot(0)
    # Pass `disable` only to switch the bar off: an explicit value would override TQDM_DISABLE.
    quiet = {} if progress else {"disable": True}
    bar = tqdm(range(1, steps + 1), desc=desc, mininterval=0.5, **quiet)
    for step in bar:
        loss = loss_fn(model, next_batch())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        result.losses.append(loss.item())
        maybe_snapshot(step)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
