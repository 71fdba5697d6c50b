"""Train `gridwalk-3l`, Chapter 4's model: a 3-layer transformer that predicts moves of grid walks.

The data (`mi_course.data.grid_walks`) are legal random walks on a 5x5 grid; the next move is
uniform over the moves legal at the current cell, so the best achievable loss needs the cell,
which the model must work out from the start token and every move since. The release metrics
check that it did (loss near the optimum, almost no probability on illegal moves), that a linear
probe reads the cell far better than on a random-init copy, and that a property the model does
not need (the parity of the step count) is decodable, yet removing every direction a linear probe
reads it from changes the output no more than noise, while removing the cell's subspace does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from mi_course.data import grid_walks as gw
from mi_course.data.word_tokenizer import build_word_tokenizer
from mi_course.models.checkpoint import save_checkpoint
from mi_course.probing import (
    LinearProbe,
    amnesic_directions,
    collect_residuals,
    fit_probe,
    mean_ablate_directions,
    output_kl,
    untrained_copy,
)
from mi_course.train.loop import check_steps, fit, fresh_model, warmup_stable_decay

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

NAME = "gridwalk-3l"
N_MOVES = 30
DEFAULT_STEPS = 2000
BATCH = 64
LR = 3e-3
WARMUP_STEPS, DECAY_FRACTION, FINAL_LR_FRACTION = 100, 0.3, 0.1
# Release evaluation: probes fit on one set of walks and scored on another; the control is an
# untrained copy with this seed; ablations act at ABLATION_DEPTH (after the first block).
EVAL_WALKS, PROBE_TRAIN_SEED, PROBE_TEST_SEED, CONTROL_SEED = 400, 1234, 4321, 999
ABLATION_DEPTH = 1
# The labels probed, with their short names in the metrics.
PROBED = {"cell": "cell", "step_parity": "parity", "visited_before": "before"}
# Parity counts as removed once a refitted probe reads it at most this well (chance: 0.5).
PARITY_GONE = 0.55
TARGETS_MIN = {
    "cell_probe_acc_depth1": 0.85,
    "cell_probe_acc_depth2": 0.95,
    "parity_probe_acc_depth1": 0.9,
    "cell_ablation_kl": 0.1,
}
TARGETS_MAX = {
    "excess_loss": 0.02,
    "illegal_prob": 0.01,
    "control_cell_probe_acc_depth1": 0.4,
    "parity_removed_probe_acc": PARITY_GONE,
    "parity_ablation_kl": 0.001,
}
# The cell's subspace must matter this many times more than as many random directions.
MIN_CELL_OVER_RANDOM_KL = 5.0
# Random-direction ablations are drawn this many times (seeds CONTROL_SEED, CONTROL_SEED + 1, ...),
# so the cell ablation is compared with a range, not with one draw.
RANDOM_DRAWS = 10


def model_config(seed: int):
    """The architecture; `seed` fixes the initial weights."""
    from transformer_lens.config import TransformerBridgeConfig

    return TransformerBridgeConfig(
        d_model=64, d_head=16, n_heads=4, n_layers=3, d_mlp=256, act_fn="gelu", n_ctx=N_MOVES + 2,
        d_vocab=len(gw.VOCAB), attn_only=False, normalization_type="LN",
        positional_embedding_type="standard", seed=seed, model_name=NAME,
    )


def build_tokenizer(directory: str | Path):
    """The word-level tokenizer over `grid_walks.VOCAB`: `<bos>` 0, `<unk>` 1, moves, then cells."""
    return build_word_tokenizer(gw.VOCAB, directory, pad=gw.BOS, bos=gw.BOS, unk=gw.UNK)


def move_logits(logits: Float[Tensor, "*shape vocab"]) -> Float[Tensor, "*shape move"]:
    """The logits of the four move tokens, in the order of `grid_walks.MOVES`."""
    return logits[..., gw.FIRST_MOVE_ID : gw.FIRST_MOVE_ID + len(gw.MOVES)]


def move_loss(model: TransformerBridge, tokens: Int[Tensor, "batch pos"]) -> Tensor:
    """Next-token cross-entropy at the positions followed by a move (not the start-cell guess)."""
    logits = model(tokens, return_type="logits")
    return F.cross_entropy(logits[:, 1:-1].flatten(0, 1), tokens[:, 2:].flatten())


def output_scores(logits: Float[Tensor, "batch pos vocab"], walks: gw.GridWalks) -> dict[str, float]:
    """Move loss, its excess over the optimum, and the probability put on illegal moves.

    The optimum is the entropy of a uniform choice among the legal moves, log(#legal).
    """
    where = walks.next_move != gw.IGNORE
    log_probs = logits.log_softmax(-1)[where]
    targets = walks.next_move[where] + gw.FIRST_MOVE_ID
    loss = -log_probs.gather(1, targets[:, None]).mean()
    optimum = walks.legal[where].sum(-1).float().log().mean()
    legal_prob = (move_logits(log_probs).exp() * walks.legal[where]).sum(-1)
    return {
        "move_loss": loss.item(),
        "excess_loss": (loss - optimum).item(),
        "illegal_prob": (1 - legal_prob).mean().item(),
    }


def fit_label_probes(
    subject: TransformerBridge, fit_walks: gw.GridWalks, test_walks: gw.GridWalks
) -> tuple[dict[str, LinearProbe], dict[str, Tensor], Float[Tensor, "depth n d_model"]]:
    """For each label in PROBED, probes at every depth fitted on `fit_walks`, and their accuracy
    on `test_walks`; also the residuals they were fitted on (labelled positions only)."""
    fit_mask, test_mask = fit_walks.cell != gw.IGNORE, test_walks.cell != gw.IGNORE
    fit_acts = collect_residuals(subject, fit_walks.tokens)[:, fit_mask]
    test_acts = collect_residuals(subject, test_walks.tokens)[:, test_mask]
    probes = {label: fit_probe(fit_acts, getattr(fit_walks, label)[fit_mask]) for label in PROBED}
    accuracy = {
        label: probe.accuracy(test_acts, getattr(test_walks, label)[test_mask]) for label, probe in probes.items()
    }
    return probes, accuracy, fit_acts


def majority_rate(labels: Int[Tensor, "n"]) -> float:
    """Share of the most frequent class: what a probe that always guesses it scores."""
    return (labels.bincount().max() / len(labels)).item()


def evaluate(model: TransformerBridge, n_walks: int = EVAL_WALKS) -> dict[str, float]:
    """Release metrics: output quality, probes by depth vs the random-init control, ablations.

    Probes are fit on one set of `n_walks` walks and scored on another. The ablations act at
    ABLATION_DEPTH on the second set: the cell probe's subspace, the same number of random
    directions, and every direction from which a linear probe can still read step parity.
    """
    fit_walks = gw.grid_walks(n_walks, N_MOVES, seed=PROBE_TRAIN_SEED)
    test_walks = gw.grid_walks(n_walks, N_MOVES, seed=PROBE_TEST_SEED)
    probes, accuracy, fit_acts = fit_label_probes(model, fit_walks, test_walks)
    _, control_accuracy, _ = fit_label_probes(untrained_copy(model, seed=CONTROL_SEED), fit_walks, test_walks)
    metrics: dict[str, float] = {}
    for prefix, accuracies in (("", accuracy), ("control_", control_accuracy)):
        for label, short in PROBED.items():
            for depth, value in enumerate(accuracies[label].tolist()):
                metrics[f"{prefix}{short}_probe_acc_depth{depth}"] = round(value, 4)

    labelled = test_walks.cell != gw.IGNORE
    for label, short in PROBED.items():
        metrics[f"{short}_majority_rate"] = round(majority_rate(getattr(test_walks, label)[labelled]), 4)

    with torch.no_grad():
        clean = model(test_walks.tokens, return_type="logits")
    metrics |= {key: round(value, 4) for key, value in output_scores(clean, test_walks).items()}
    parity = amnesic_directions(
        fit_acts[ABLATION_DEPTH], fit_walks.step_parity[fit_walks.cell != gw.IGNORE], stop_accuracy=PARITY_GONE
    )
    cell_directions = probes["cell"].directions()[ABLATION_DEPTH]
    random_directions = torch.randn(cell_directions.shape, generator=torch.Generator().manual_seed(CONTROL_SEED))
    metrics["parity_removed_rank"] = parity.basis.shape[1]
    metrics["parity_removed_probe_acc"] = round(parity.accuracies[-1], 4)
    predicted = test_walks.next_move != gw.IGNORE
    for name, directions in (("cell", cell_directions), ("random", random_directions), ("parity", parity.basis)):
        ablated = mean_ablate_directions(
            model, test_walks.tokens, ABLATION_DEPTH, directions, where=test_walks.cell != gw.IGNORE
        )
        metrics[f"{name}_ablation_kl"] = round(output_kl(clean, ablated, predicted), 5)
        metrics[f"{name}_ablation_illegal_prob"] = round(output_scores(ablated, test_walks)["illegal_prob"], 4)
    random_kl = [metrics["random_ablation_kl"]]
    for draw in range(1, RANDOM_DRAWS):
        directions = torch.randn(cell_directions.shape, generator=torch.Generator().manual_seed(CONTROL_SEED + draw))
        ablated = mean_ablate_directions(model, test_walks.tokens, ABLATION_DEPTH, directions, where=labelled)
        random_kl.append(round(output_kl(clean, ablated, predicted), 5))
    metrics["random_ablation_kl_min"], metrics["random_ablation_kl_max"] = min(random_kl), max(random_kl)
    return metrics


def missed_targets(metrics: dict) -> list[str]:
    """The release criteria `metrics` fails, in words (empty when it meets them all)."""
    missed = [f"{key} = {metrics[key]} < {bound}" for key, bound in TARGETS_MIN.items() if metrics[key] < bound]
    missed += [f"{key} = {metrics[key]} > {bound}" for key, bound in TARGETS_MAX.items() if metrics[key] > bound]
    if metrics["cell_ablation_kl"] < MIN_CELL_OVER_RANDOM_KL * metrics["random_ablation_kl"]:
        missed.append(
            f"ablating the cell subspace (KL {metrics['cell_ablation_kl']}) is not "
            f"{MIN_CELL_OVER_RANDOM_KL}x worse than as many random directions ({metrics['random_ablation_kl']})"
        )
    return missed


def train(
    seed: int = 0,
    out_dir: str | Path | None = None,
    steps: int | None = None,
    progress: bool = True,
    eval_walks: int = EVAL_WALKS,
) -> dict:
    """Train from scratch; save the checkpoint to `out_dir` if given; return the release metrics
    (measured on `eval_walks` walks; fewer are quicker and noisier)."""
    steps = check_steps(DEFAULT_STEPS if steps is None else steps)
    model = fresh_model(model_config(seed), build_tokenizer)
    generator = torch.Generator().manual_seed(seed)
    result = fit(
        model,
        lambda: gw.grid_walks(BATCH, N_MOVES, seed=generator).tokens,
        steps, LR, schedule=warmup_stable_decay(steps, WARMUP_STEPS, DECAY_FRACTION, FINAL_LR_FRACTION),
        loss_fn=move_loss, progress=progress, desc=f"{NAME} seed {seed}",
    )
    metrics = result.report(seed, steps, evaluate(model, eval_walks))
    if out_dir is not None:
        save_checkpoint(model, out_dir, metrics)
    return metrics
