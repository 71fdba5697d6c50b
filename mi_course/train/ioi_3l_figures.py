"""Reproduce the circuit evidence in `ioi-3l`'s model card: `python -m mi_course.train.ioi_3l_figures
[CHECKPOINT_DIR]`.

Writes attention_roles.png, attribution_patching.png, path_patching.png and numbers.json to
`mi_course/weights/ioi-3l/figures/`. Direct logit attribution is the package's exact
decomposition (`circuits.residual_stack`: final LayerNorm scale *and* weight applied), so the
per-head numbers and the other parts add up to the logit difference. Every measurement uses the "s2" corruption (only S2 replaced by a fresh name), so a
change measures what depends on S being *repeated*. Effects are normalised:
(patched - clean) / (clean - corrupted) logit difference, so -1 means "as if corrupted".
This is the analysis behind the card, not library code; Chapter 6 teaches the same methods.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib
import torch
from jaxtyping import Float
from torch import Tensor

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mi_course import circuits  # noqa: E402
from mi_course.data import ioi  # noqa: E402
from mi_course.models.checkpoint import WEIGHTS_DIR, load_checkpoint  # noqa: E402

CHECKPOINT = WEIGHTS_DIR / "ioi-3l"
HERE = CHECKPOINT / "figures"
SENDER_RECEIVERS = ((2, 3), (2, 2))  # receivers for path patching: the heads whose patching at END matters most


def logit_diff(logits: Float[Tensor, "batch pos vocab"], p: ioi.IOIPrompts, copies: int = 1) -> Float[Tensor, "batch"]:
    """logit(IO) - logit(S) at END, for `copies` stacked copies of the prompt batch."""
    end, io, s = (t.repeat(copies) for t in (p.positions["end"], p.io, p.s))
    final = logits[torch.arange(len(end)), end]
    return final.gather(1, io[:, None])[:, 0] - final.gather(1, s[:, None])[:, 0]


def key_position(p: ioi.IOIPrompts, key: str) -> Tensor:
    if key == "BOS":
        return torch.zeros_like(p.positions["end"])
    if key == "S1+1":
        return p.positions["S1"] + 1
    return p.positions[key]


def attention_roles(cache, p: ioi.IOIPrompts, n_layers: int) -> dict[str, Tensor]:
    """Mean attention, per head, from a query position to a key position of each prompt."""
    rows = torch.arange(len(p))
    patterns = torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(n_layers)], 1)
    pairs = [("end", "IO"), ("end", "S1"), ("end", "S2"), ("end", "BOS"),
             ("S2", "S1"), ("S2", "IO"), ("S2", "S2"), ("S2", "S1+1")]
    return {f"{q}->{k}": patterns[rows, :, :, p.positions[q], key_position(p, k)].mean(0) for q, k in pairs}


def head_dla(model, p: ioi.IOIPrompts) -> tuple[Float[Tensor, "layer head"], dict[str, float]]:
    """Each head's direct effect on logit(IO) - logit(S) at END (mean over prompts), and the
    other parts of the same exact decomposition (embeddings, biases), from
    `circuits.residual_stack`."""
    rows, end = torch.arange(len(p)), p.positions["end"]
    stack = circuits.residual_stack(model, p.clean)
    direction = (model.W_U[:, p.io] - model.W_U[:, p.s]).T
    parts = torch.einsum("cbm,bm->c", stack.vectors[:, rows, end], direction) / len(p)
    by_label = dict(zip(stack.labels, parts.tolist()))
    heads = torch.tensor([[by_label[f"L{l}H{h}"] for h in range(model.cfg.n_heads)] for l in range(model.cfg.n_layers)])
    others = {label: value for label, value in by_label.items() if not label.startswith("L")}
    others["unembed bias"] = (model.b_U[p.io] - model.b_U[p.s]).mean().item()
    return heads, others


def head_token_effects(model, tokens, p: ioi.IOIPrompts, heads=("L2H3", "L2H2")) -> dict[str, dict[str, float]]:
    """Direct effect of each head in `heads` at END on the raw logit of the S2 token and of
    "them" (mean over prompts), from the same exact decomposition as `head_dla`."""
    rows, end = torch.arange(len(p)), p.positions["end"]
    stack = circuits.residual_stack(model, tokens)
    s2 = tokens[rows, p.positions["S2"]]
    them = model.W_U[:, ioi.TOKEN_ID[ioi.THEM]]
    effects = {}
    for head in heads:
        out = stack.vectors[stack.labels.index(head)][rows, end]
        effects[head] = {
            "S2 token": round((out * model.W_U[:, s2].T).sum(-1).mean().item(), 3),
            "them": round((out @ them).mean().item(), 3),
        }
    return effects


def head_patching(model, clean_cache, corrupt_cache, p, base, corrupt, where: str | None):
    """Patch each head's z from the corrupted run (at `where` or everywhere), one head per copy
    of the batch, all heads in one forward pass."""
    n_layers, n_heads, n = model.cfg.n_layers, model.cfg.n_heads, len(p)
    heads = torch.arange(n_heads)
    mask = torch.ones_like(p.clean, dtype=torch.bool)
    if where is not None:
        mask = torch.zeros_like(mask)
        mask[torch.arange(n), p.positions[where]] = True

    def hook(z, hook):
        layer = int(hook.name.split(".")[1])
        view = z.view(n_layers * n_heads, n, *z.shape[1:])
        chunk = view[layer * n_heads + heads, :, :, heads]  # head h in its own copy: (head, n, pos, d_head)
        patched = torch.where(mask[None, :, :, None], corrupt_cache[hook.name].permute(2, 0, 1, 3), chunk)
        view[layer * n_heads + heads, :, :, heads] = patched
        return z

    tokens = p.clean.repeat(n_layers * n_heads, 1)
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(circuits.z_hook_name(layer), hook) for layer in range(n_layers)])
    diff = logit_diff(logits, p, copies=n_layers * n_heads)
    return ((diff.view(n_layers, n_heads, n).mean(-1) - base) / (base - corrupt))


def path_patching(model, clean_cache, corrupt_cache, p, base, corrupt, receiver: tuple[int, int]):
    """Sender head -> receiver head at END: the sender's corrupted output reaches the receiver
    while every other head is frozen at its clean value; then only the receiver's new z (at END)
    is patched into a clean run. Every sender in its own copy of the batch: two forward passes."""
    n_heads, n, rows, end = model.cfg.n_heads, len(p), torch.arange(len(p)), p.positions["end"]
    r_layer, r_head = receiver
    copies = r_layer * n_heads  # sender k is head k % n_heads of layer k // n_heads
    s_layers, s_heads = torch.arange(copies) // n_heads, torch.arange(copies) % n_heads
    grabbed = {}

    def freeze(z, hook):
        layer = int(hook.name.split(".")[1])
        new = clean_cache[hook.name].repeat(copies, 1, 1, 1).view(copies, n, *z.shape[1:])
        ks = (s_layers == layer).nonzero().flatten()
        new[ks, :, :, s_heads[ks]] = corrupt_cache[hook.name][:, :, s_heads[ks]].permute(2, 0, 1, 3)
        if layer == r_layer:
            mine = z.view(copies, n, *z.shape[1:])
            new[..., r_head, :] = mine[..., r_head, :]
            grabbed["z"] = mine[:, rows, end, r_head].clone()
        return new.view(z.shape)

    def put(z, hook):
        z.view(copies, n, *z.shape[1:])[:, rows, end, r_head] = grabbed["z"]
        return z

    tokens = p.clean.repeat(copies, 1)
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(circuits.z_hook_name(layer), freeze) for layer in range(r_layer + 1)])
        logits = model.run_with_hooks(tokens, fwd_hooks=[(circuits.z_hook_name(r_layer), put)])
    diff = logit_diff(logits, p, copies=copies).view(r_layer, n_heads, n).mean(-1)
    return (diff - base) / (base - corrupt)


def grid(ax, mat: Tensor, title: str, lim: float | None = None, signed: bool = False) -> None:
    mat = torch.as_tensor(mat)
    im = ax.imshow(mat, cmap="RdBu" if signed else "Blues", vmin=-lim if signed else 0, vmax=lim)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(mat.shape[1]))
    ax.set_yticks(range(mat.shape[0]))
    for (i, j), value in zip([(i, j) for i in range(mat.shape[0]) for j in range(mat.shape[1])], mat.flatten()):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    plt.colorbar(im, ax=ax, fraction=0.046)


def main(checkpoint: str | Path = CHECKPOINT) -> None:
    torch.set_num_threads(1)
    model = load_checkpoint(checkpoint)
    numbers: dict = {}
    sets = {
        "training templates, held-out pairs": ioi.ioi_prompts(300, 11, templates="train", pairs="heldout", corruption="s2"),
        "held-out templates, held-out pairs": ioi.ioi_prompts(300, 12, templates="heldout", pairs="heldout", corruption="s2"),
    }
    for label, p in sets.items():
        with torch.no_grad():
            clean_logits, clean = model.run_with_cache(p.clean)
            corrupt_logits, corrupt = model.run_with_cache(p.corrupted)
        base, cbase = logit_diff(clean_logits, p).mean(), logit_diff(corrupt_logits, p).mean()
        att, (dla, other_parts) = attention_roles(clean, p, model.cfg.n_layers), head_dla(model, p)
        entry = {
            "clean_logit_diff": round(base.item(), 3),
            "corrupted_logit_diff": round(cbase.item(), 3),
            "attention": {k: v.tolist() for k, v in att.items()},
            "attention_corrupted": {k: v.tolist() for k, v in attention_roles(corrupt, p, model.cfg.n_layers).items()},
            "dla": dla.tolist(),
            "dla_other_parts": {k: round(v, 4) for k, v in other_parts.items()},
            "head_token_effects": {"clean": head_token_effects(model, p.clean, p),
                                   "corrupted": head_token_effects(model, p.corrupted, p)},
            "patching": {str(w): head_patching(model, clean, corrupt, p, base, cbase, w).tolist() for w in (None, "S2", "end")},
            "paths": {f"{r[0]}.{r[1]}": path_patching(model, clean, corrupt, p, base, cbase, r).tolist() for r in SENDER_RECEIVERS},
        }
        numbers[label] = entry
        print(label, json.dumps({k: entry[k] for k in ("clean_logit_diff", "corrupted_logit_diff", "dla", "dla_other_parts", "head_token_effects")}))
        if label.startswith("training"):
            fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
            for ax, (key, value) in zip(axes.flat, att.items()):
                grid(ax, value, f"attention {key}", lim=1)
            fig.suptitle(f"ioi-3l: mean attention ({label})")
            fig.tight_layout()
            fig.savefig(HERE / "attention_roles.png", dpi=72)
            plt.close(fig)
            fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
            grid(axes[0], dla, "direct logit attribution at END\n(logit IO - logit S)", lim=float(dla.abs().max()), signed=True)
            for ax, where in zip(axes[1:], ("None", "S2", "end")):
                place = "all positions" if where == "None" else f"{where} only"
                grid(ax, torch.tensor(entry["patching"][where]), f"patch head z from corrupted run\n({place}); -1 = fully broken", lim=1, signed=True)
            fig.tight_layout()
            fig.savefig(HERE / "attribution_patching.png", dpi=72)
            plt.close(fig)
            fig, axes = plt.subplots(1, len(SENDER_RECEIVERS), figsize=(9, 3.2))
            for ax, (key, value) in zip(axes, entry["paths"].items()):
                grid(ax, torch.tensor(value), f"path patching: sender -> {key} at END", lim=1, signed=True)
            fig.tight_layout()
            fig.savefig(HERE / "path_patching.png", dpi=72)
            plt.close(fig)
    (HERE / "numbers.json").write_text(json.dumps(numbers, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(*sys.argv[1:])
