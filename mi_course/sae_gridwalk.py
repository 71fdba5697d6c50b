"""SAEs on `gridwalk-3l`: the known variables every latent is scored against, the shipped SAEs,
splicing an SAE into the model, and editing one latent to see what the model does with it.

The walk data (`mi_course.data.grid_walks`) know, at every position, the current cell, its x and
y, the last move, the step parity and whether the cell was visited before. So an SAE latent's
meaning need not be guessed from its top activations: it can be *scored* as a detector of each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from safetensors.torch import load_file
from torch import Tensor

from mi_course.data import grid_walks as gw
from mi_course.models.checkpoint import WEIGHTS_DIR
from mi_course.sae import SAE

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

SAES_NAME = "gridwalk-3l-saes"
SAES_DIR = WEIGHTS_DIR / SAES_NAME
SAES_FILE = "saes.safetensors"
SAES_CONFIG = "config.json"

Edit = Callable[[Float[Tensor, "n d"]], Float[Tensor, "n d"]]


def walk_variables(walks: gw.GridWalks) -> tuple[Bool[Tensor, "batch pos variables"], list[str]]:
    """Every known variable of every position as a binary label, with its name.

    cell=c (25), x=i and y=j (5 each), last move (4; false at the start cell), odd step, visited
    before. All false at `<bos>`; select positions with `walks.cell >= 0`.
    """
    labelled = (walks.cell != gw.IGNORE)[..., None]
    last_move = walks.tokens - gw.FIRST_MOVE_ID
    groups = [
        (F.one_hot(walks.cell.clamp_min(0), gw.SIZE**2), [f"cell {c}" for c in gw.CELLS]),
        (F.one_hot(walks.x.clamp_min(0), gw.SIZE), [f"x={i}" for i in range(gw.SIZE)]),
        (F.one_hot(walks.y.clamp_min(0), gw.SIZE), [f"y={i}" for i in range(gw.SIZE)]),
        (torch.stack([last_move == i for i in range(len(gw.MOVES))], -1), [f"last {m}" for m in gw.MOVES]),
        ((walks.step_parity == 1)[..., None], ["odd step"]),
        ((walks.visited_before == 1)[..., None], ["visited before"]),
    ]
    labels = torch.cat([values.bool() for values, _ in groups], -1) & labelled
    return labels, [name for _, names in groups for name in names]


def load_saes(directory: Path = SAES_DIR) -> tuple[dict[str, SAE], dict]:
    """The shipped SAEs by name (single instances, in the site's raw units) and their config."""
    config = json.loads((directory / SAES_CONFIG).read_text())
    tensors = load_file(directory / SAES_FILE)
    saes = {}
    for name, spec in config["saes"].items():
        parts = {part: tensors[f"{name}.{part}"].float() for part in ("W_enc", "b_enc", "W_dec", "b_dec")}
        saes[name] = SAE(**parts, k=spec.get("k"))
    return saes, config


def site_acts(model: TransformerBridge, tokens: Int[Tensor, "batch pos"], hook: str) -> Float[Tensor, "batch pos d"]:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name == hook)
    return cache[hook]


def run_with_edit(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"], hook: str, edit: Edit,
    where: Bool[Tensor, "batch pos"],
) -> Float[Tensor, "batch pos vocab"]:
    """Logits when the activations at `hook` are replaced by `edit(acts)` at the positions `where`."""

    def replace(acts: Tensor, hook) -> Tensor:
        changed = acts.clone()
        changed[where] = edit(acts[where])
        return changed

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook, replace)])


def move_log_probs(logits: Float[Tensor, "*shape vocab"]) -> Float[Tensor, "*shape move"]:
    """log p(t) of the four move tokens, in the order of `grid_walks.MOVES`, from the full softmax."""
    return logits.log_softmax(-1)[..., gw.FIRST_MOVE_ID : gw.FIRST_MOVE_ID + len(gw.MOVES)]


def move_losses(logits: Float[Tensor, "batch pos vocab"], walks: gw.GridWalks) -> Float[Tensor, "n"]:
    """Cross-entropy of the actual next move at every position a move follows."""
    where = walks.next_move != gw.IGNORE
    return -move_log_probs(logits)[where].gather(-1, walks.next_move[where][:, None])[:, 0]


def splice_losses(
    model: TransformerBridge, walks: gw.GridWalks, hook: str, sae: SAE
) -> tuple[Float[Tensor, "n"], Float[Tensor, "n"], Float[Tensor, "n"]]:
    """Per-position move losses: clean, with the SAE's reconstruction spliced in at `hook`, and with
    the site zero-ablated (SAELens's baseline), at every labelled position (not `<bos>`)."""
    where = walks.cell != gw.IGNORE
    with torch.no_grad():
        clean = model(walks.tokens, return_type="logits")
    spliced = run_with_edit(model, walks.tokens, hook, lambda acts: sae(acts[:, None])[1][:, 0], where)
    ablated = run_with_edit(model, walks.tokens, hook, torch.zeros_like, where)
    return tuple(move_losses(logits, walks) for logits in (clean, spliced, ablated))  # type: ignore[return-value]


def mean_by_cell(
    acts: Float[Tensor, "n units"], cell: Int[Tensor, "n"]
) -> Float[Tensor, "units cells"]:
    """Each unit's mean activation on each of the 25 cells: a unit drawn as a picture of the grid."""
    onehot = F.one_hot(cell, gw.SIZE**2).float()
    return ((onehot.T @ acts) / onehot.sum(0).clamp_min(1)[:, None]).T


def legal_set_variables(walks: gw.GridWalks) -> tuple[Bool[Tensor, "batch pos 9"], list[str]]:
    """Which set of moves is legal: the interior, one of the four edges or one of the four corners.

    This is what the model needs to know to predict the next move, so it is the variable a
    latent the model uses is most likely to track. Names list the legal moves, e.g. "UDR" (the
    left edge, x = 0).
    """
    weights = 2 ** torch.arange(len(gw.MOVES))
    code = (walks.legal.long() * weights).sum(-1)
    # Every set a walker can face: all four moves minus at most one horizontal and one vertical.
    sets = sorted({15 - h - v for h in (0, 4, 8) for v in (0, 1, 2)})
    labels = torch.stack([code == value for value in sets], -1) & (walks.cell != gw.IGNORE)[..., None]
    names = ["".join(move for bit, move in enumerate(gw.MOVES) if value >> bit & 1) for value in sets]
    return labels, names


def ground_truth_score(f1: Float[Tensor, "units variables"]) -> Float[Tensor, ""]:
    """How many of the known variables some unit detects: the best unit's F1 for each variable
    (`sae.best_f1`), averaged over the variables. A dictionary that found the variables scores
    near 1 whatever else its units do; one that found something else scores low, however clean
    its units look."""
    return f1.max(0).values.mean()
