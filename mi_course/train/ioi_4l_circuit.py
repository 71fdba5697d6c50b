"""The circuit measurements in the ioi-4l card draft: `python -m mi_course.train.ioi_4l_circuit
CHECKPOINT_DIR [N_PROMPTS] [--late] [--final-io] > circuit.json`.

On held-out structures with held-out pairs, and on the classic training structures, per head:
attention from END to IO, S1, S2 and C and from S2 to S1 and S1+1; mean-ablation effects on
logit(IO) - logit(S) (`circuits.ablate_z`, replacement: the mean z of the S-corrupted prompts per
position); direct logit attribution from the package's exact decomposition
(`circuits.residual_stack`). Over the vocabulary: the copying score of Wang et al. (2022) and
duplicate-token, previous-token and induction scores on random tokens repeated once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mi_course import circuits, ioi_circuit
from mi_course.data import ioi_grammar as grammar
from mi_course.models.checkpoint import load_checkpoint


def _logit_diff(logits: Float[Tensor, "batch vocab"], p: grammar.IOIPrompts) -> Float[Tensor, "batch"]:
    return logits.gather(-1, p.io[:, None])[:, 0] - logits.gather(-1, p.s[:, None])[:, 0]


@torch.no_grad()
def prompt_measures(model, p: grammar.IOIPrompts) -> dict[str, Any]:
    """Attention roles, head mean-ablation effects and direct logit attribution on `p`."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    rows, end, pos = torch.arange(len(p)), p.positions["end"], p.positions
    logits, cache = model.run_with_cache(p.clean)
    diff = _logit_diff(logits[rows, end], p)
    patterns = torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(n_layers)], 1)

    def attention(query: Tensor, key: Tensor, keep: Tensor = rows) -> Tensor:
        return patterns[keep, :, :, query[keep], key[keep]].mean(0)

    out: dict[str, Any] = {"accuracy": (diff > 0).float().mean(), "logit_diff": diff.mean()}
    for name, query, key in (("END->IO", end, pos["IO"]), ("END->S1", end, pos["S1"]), ("END->S2", end, pos["S2"]),
                             ("S2->S1", pos["S2"], pos["S1"]), ("S2->S1+1", pos["S2"], pos["S1"] + 1)):
        out[name] = attention(query, key)
    has_c = rows[pos["C"] >= 0]
    if len(has_c):
        out["END->C"] = attention(end, pos["C"], has_c)
    stack = circuits.residual_stack(model, p.clean)
    direction = (model.W_U[:, p.io] - model.W_U[:, p.s]).T
    parts = torch.einsum("cbm,bm->c", stack.vectors[:, rows, end], direction) / len(p)
    out["dla"] = dict(zip(stack.labels, parts.tolist()))
    out["dla_total_vs_logit_diff"] = [parts.sum() + (model.b_U[p.io] - model.b_U[p.s]).mean(), diff.mean()]
    replacement = circuits.mean_z(model, p.corrupted)
    ablate = circuits.single_head_ablations(n_layers, n_heads)
    hooks = [(circuits.z_hook_name(layer), lambda z, hook, layer=layer: circuits.ablate_z(z, ablate[:, layer], replacement[layer]))
             for layer in range(n_layers)]
    ablated = model.run_with_hooks(p.clean.repeat(len(ablate), 1), fwd_hooks=hooks)
    ablated = ablated.unflatten(0, (len(ablate), len(p)))[:, rows, end]
    effects = torch.stack([_logit_diff(one, p).mean() for one in ablated]) - diff.mean()
    out["mean_ablation_effect"] = effects.view(n_layers, n_heads)
    return out


@torch.no_grad()
def copying_scores(model, top: int = 5) -> tuple[Float[Tensor, "layer head"], Float[Tensor, "layer head"]]:
    """Wang et al.'s copying score over the grammar's names (`ioi_circuit.name_copying_logits`):
    the fraction of names whose own logit is in the top `top` among names, and, negated, the
    negative copying score."""
    logits = ioi_circuit.name_copying_logits(model, torch.as_tensor(grammar.NAME_IDS)).cpu()
    own = torch.arange(len(grammar.NAME_IDS))[:, None]
    positive = (logits.topk(top, dim=-1).indices == own).any(-1).float().mean(-1)
    negative = ((-logits).topk(top, dim=-1).indices == own).any(-1).float().mean(-1)
    return positive, negative


@torch.no_grad()
def repeat_scores(model, n: int = 64, length: int = 15, seed: int = 0) -> dict[str, Tensor]:
    """Mean attention to the same token's earlier copy (duplicate), to the token after it
    (induction) and to the previous position, on random word strings repeated once."""
    generator = torch.Generator().manual_seed(seed)
    words = torch.randint(3, len(grammar.VOCAB), (n, length), generator=generator)
    tokens = torch.cat([torch.full((n, 1), grammar.TOKEN_ID[grammar.BOS]), words, words], 1)
    _, cache = model.run_with_cache(tokens)
    patterns = torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(model.cfg.n_layers)], 1)
    second = torch.arange(length + 1, 2 * length + 1)
    every = torch.arange(2, 2 * length + 1)
    return {
        "duplicate": patterns[:, :, :, second, second - length].mean((0, 3)),
        "induction": patterns[:, :, :, second, second - length + 1].mean((0, 3)),
        "previous": patterns[:, :, :, every, every - 1].mean((0, 3)),
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, Tensor):
        return [[round(v, 3) for v in row] for row in value.tolist()] if value.ndim == 2 else round(value.item(), 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return round(value, 4) if isinstance(value, float) else value


def measure(checkpoint: str | Path, n: int = 250, late: bool = False, final_io: bool = False) -> dict[str, Any]:
    """Every measurement of the card's circuit section for the model in `checkpoint`; `late`
    adds the held-out late structures of `ioi_grammar_v2` (IO mentioned after the intro),
    `final_io` its held-out final-IO structures (IO inside the final clause, round 3)."""
    torch.set_num_threads(1)
    model = load_checkpoint(checkpoint)
    sets = {
        "held-out structures, held-out pairs": grammar.ioi_prompts(n, 7, pairs="heldout"),
        "classic training structures, held-out pairs": grammar.ioi_prompts(
            n, 8, structures=grammar.CLASSIC_STRUCTURES, pairs="heldout"
        ),
    }
    from mi_course.data import ioi_grammar_v2

    if late:
        sets["late held-out structures, held-out pairs"] = ioi_grammar_v2.ioi_prompts(
            n, 9, structures=list(ioi_grammar_v2.LATE_HELDOUT.values()), pairs="heldout"
        )
    if final_io:
        sets["final-IO held-out structures, held-out pairs"] = ioi_grammar_v2.ioi_prompts(
            n, 10, structures=list(ioi_grammar_v2.FINAL_IO_HELDOUT.values()), pairs="heldout"
        )
    result: dict[str, Any] = {label: prompt_measures(model, p) for label, p in sets.items()}
    result["copying"], result["negative_copying"] = copying_scores(model)
    result |= repeat_scores(model)
    return _rounded(result)


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a not in ("--late", "--final-io")]
    print(json.dumps(measure(arguments[0], *(int(a) for a in arguments[1:2]), late="--late" in sys.argv,
                             final_io="--final-io" in sys.argv), indent=1))
