"""A lean forward pass for patch sweeps: the arithmetic of a TransformerLens 4 native model,
without the bridge's per-module machinery, computing only what a patch sweep's metric reads.

`mi_course.patching.patch_sweep` runs thousands of patched copies of a small batch. Through
`TransformerBridge.run_with_hooks` each pass goes through a wrapper per module and a hook point
per activation, and computes the logits of every position, while the metric usually reads one
position per prompt. `LeanForward` runs the same computation (same weights, same order of
operations up to float rounding) with a callback only at the hooks a sweep patches, and, when
told which positions the metric reads (`keep`), computes the last block's queries, MLP, final
LayerNorm and unembedding only there: in a causal model nothing else reaches those logits.

It covers the architectures of the course's native models (`boot_native`, float32: standard
positions, LayerNorm / LNPre / none, plain MLP with GELU or ReLU, or attention only);
`LeanForward.build` returns None for anything else (and for a bridge in compatibility mode), and
the sweep falls back to the bridge's own forward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable
from weakref import WeakKeyDictionary

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

Hook = Callable[[Tensor], Tensor]
# Per-layer hook points the lean pass provides, with the axis of the (query) position counted
# from the right of the activation where the last block computes only some positions:
# resid-like [pos, d_model], per head [pos, head, d_head], pattern [head, dest, src]. The
# block's input, keys and values keep every position (None).
LAYER_SITES: dict[str, int | None] = {
    "hook_resid_pre": None, "attn.hook_q": 3, "attn.hook_k": None, "attn.hook_v": None,
    "attn.hook_pattern": 2, "attn.hook_z": 3, "hook_attn_out": 2, "hook_resid_mid": 2,
    "hook_mlp_out": 2, "hook_resid_post": 2,
}
EMBED_SITES = ("hook_embed", "hook_pos_embed")
# Where in a block a run can resume, in order: its input, the heads' outputs z, the attention
# output, the MLP output, the block's output. A site's stage is the latest stage a run patching
# it can resume from; STATE_AT lists the activations (hook suffixes) resuming there needs.
STAGES: dict[str, int] = {
    "hook_resid_pre": 0, "attn.hook_q": 0, "attn.hook_k": 0, "attn.hook_v": 0, "attn.hook_pattern": 0,
    "attn.hook_z": 1, "hook_attn_out": 2, "hook_resid_mid": 2, "hook_mlp_out": 3, "hook_resid_post": 4,
}
STATE_AT: dict[int, tuple[str, ...]] = {
    0: ("resid_pre",), 1: ("resid_pre", "z"), 2: ("resid_pre", "attn_out"), 3: ("resid_mid", "mlp_out"),
    4: ("resid_post",),
}
STATE_HOOKS = {
    "resid_pre": "hook_resid_pre", "z": "attn.hook_z", "attn_out": "hook_attn_out", "resid_mid": "hook_resid_mid",
    "mlp_out": "hook_mlp_out", "resid_post": "hook_resid_post",
}
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu,
}


# The position axis, counted from the right, of every activation the lean pass provides (for
# a pattern [head, dest, src]: the destination, the position it changes).
POSITION_AXIS: dict[str, int] = {
    **{site: 2 for site in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")},
    **{site: 3 for site in ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z")},
    "attn.hook_pattern": 2, **{site: 2 for site in EMBED_SITES},
}


def site_of(name: str) -> tuple[int, str] | None:
    """(layer, site) of a per-layer hook name the lean pass provides, else None."""
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2] in LAYER_SITES:
        return int(parts[1]), parts[2]
    return None


def before(name: str, activation_shape: torch.Size, last: int) -> Tensor:
    """A mask, broadcastable to an activation at hook `name` (without its batch axis), of the
    positions up to `last`: in a causal model nothing after `last` reaches the logits there."""
    site = site_of(name)
    axis = POSITION_AXIS[site[1] if site else name]
    shape = [1] * len(activation_shape)
    shape[-axis] = activation_shape[-axis]
    return (torch.arange(activation_shape[-axis]) <= last).view(shape)


def keep_positions(tensor: Tensor, name: str, keep: Tensor) -> Tensor:
    """`tensor` (an activation at hook `name`, or a mask or source broadcastable to it) cut to
    the query positions `keep`, as the lean pass computes them in the last block."""
    site = site_of(name)
    axis = LAYER_SITES[site[1]] if site else None
    if axis is None or tensor.dim() < axis or tensor.shape[-axis] == 1:
        return tensor
    return tensor.index_select(tensor.dim() - axis, keep.to(tensor.device))


class LeanForward:
    """The forward pass of a supported native bridge, from its own weights (shared, not copied)."""

    def __init__(self, model: TransformerBridge) -> None:
        cfg = model.cfg
        self.w = _weights(model)
        self.n_layers, self.n_heads, self.d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.attn_only, self.eps = cfg.attn_only, cfg.eps
        self.norm = None if cfg.normalization_type is None else cfg.normalization_type.upper()
        self.scale = cfg.attn_scale if cfg.use_attn_scale and cfg.attn_scale > 0 else cfg.d_head**0.5
        self.act = ACTIVATIONS.get((cfg.act_fn or "gelu").lower())

    @classmethod
    def build(cls, model: TransformerBridge, names: Iterable[str]) -> LeanForward | None:
        """A lean pass for `model` if it supports the model and every hook in `names`, else None."""
        cfg = model.cfg
        supported = (
            type(getattr(model, "original_model", None)).__name__ == "NativeModel"
            and not getattr(model, "compatibility_mode", False)
            and model.original_model.tok_embed.weight.dtype == torch.float32  # the bridge upcasts others
            and (cfg.normalization_type is None or cfg.normalization_type.upper() in ("LN", "LNPRE"))
            and (cfg.positional_embedding_type or "standard").lower() == "standard"
            and cfg.attention_dir == "causal"
            and cfg.n_key_value_heads in (None, cfg.n_heads)
            and not cfg.gated_mlp and not cfg.final_rms
            and cfg.attn_scores_soft_cap <= 0 and cfg.output_logits_soft_cap <= 0
            and (cfg.attn_only or (cfg.act_fn or "gelu").lower() in ACTIVATIONS)
            and all(name in EMBED_SITES or _provides(site_of(name), cfg.attn_only) for name in names)
        )
        return cls(model) if supported else None

    def _norm(self, x: Tensor, prefix: str) -> Tensor:
        # The bridge's LayerNorm, operation for operation (F.layer_norm rounds differently):
        # centre, divide by sqrt(mean square + eps), then scale and shift.
        if self.norm is None:
            return x
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        if self.norm == "LN":
            x = x * self.w[prefix + ".weight"] + self.w[prefix + ".bias"]
        return x

    def _linear(self, x: Tensor, prefix: str) -> Tensor:
        return F.linear(x, self.w[prefix + ".weight"], self.w.get(prefix + ".bias"))

    def embed(self, tokens: Int[Tensor, "rows pos"], hooks: dict[str, Hook]) -> Float[Tensor, "rows pos d_model"]:
        """Token plus position embeddings (the residual stream before block 0)."""
        embed = _call(hooks, "hook_embed", F.embedding(tokens, self.w["tok_embed.weight"]))
        pos = _call(hooks, "hook_pos_embed", self.w["pos.weight"][: tokens.shape[1]].expand_as(embed))
        return embed + pos

    def run(
        self,
        state: dict[str, Tensor],
        start: int,
        stage: int,
        hooks: dict[str, Hook],
        keep: Int[Tensor, " keep"] | None = None,
    ) -> Float[Tensor, "rows pos d_vocab"]:
        """Resume a run inside block `start` at `stage` (STAGES) from `state`, its activations
        there (`STATE_AT[stage]`), and return the logits; with `keep`, the last block and the
        logits at positions `keep` only (the others are 0, or, when `keep` is one position, a
        view of that position's logits: either way only the `keep` positions are meaningful).

        Every activation between the start and the logits passes through `hooks[name]` if
        present. Stage 0 starts at the block's input, so `run({"resid_pre": embed(...)}, 0, 0,
        hooks)` is the whole forward pass."""
        w, H, dh = self.w, self.n_heads, self.d_head
        resid = state[STATE_AT[stage][0]]
        rows, n_pos, _ = resid.shape
        cut = False
        for layer in range(start, self.n_layers):
            at = stage if layer == start else 0
            last = cut = keep is not None and layer == self.n_layers - 1
            name, p = f"blocks.{layer}.", f"layers.{layer}."
            if at <= 2:
                if at == 0:
                    resid = _call(hooks, name + "hook_resid_pre", resid)
                    normed = self._norm(resid, p + "ln1")
                    query_in = normed[:, keep] if last else normed
                    q = self._linear(query_in, p + "attn.q").view(rows, -1, H, dh)
                    q = _call(hooks, name + "attn.hook_q", q)
                    k = _call(hooks, name + "attn.hook_k", self._linear(normed, p + "attn.k").view(rows, n_pos, H, dh))
                    v = _call(hooks, name + "attn.hook_v", self._linear(normed, p + "attn.v").view(rows, n_pos, H, dh))
                    future = w[p + "attn.causal_mask"][:n_pos, :n_pos]
                    future = future[keep] if last else future
                    scores = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)) / self.scale
                    # Causal rows always keep their diagonal, so no row is fully masked: no NaN to clear.
                    pattern = F.softmax(scores.masked_fill_(future, float("-inf")), dim=-1)
                    pattern = _call(hooks, name + "attn.hook_pattern", pattern)
                    z = torch.matmul(pattern, v.transpose(1, 2)).transpose(1, 2)
                elif at == 1:
                    z = state["z"][:, keep] if last else state["z"]
                if at <= 1:
                    z = _call(hooks, name + "attn.hook_z", z)
                    attn_out = self._linear(z.reshape(rows, z.shape[1], -1), p + "attn.o")
                else:
                    attn_out = state["attn_out"][:, keep] if last else state["attn_out"]
                attn_out = _call(hooks, name + "hook_attn_out", attn_out)
                resid = (resid[:, keep] if last else resid) + attn_out
            elif last:
                resid = resid[:, keep]
            if not self.attn_only and at <= 3:
                if at == 3:
                    mlp_out = state["mlp_out"][:, keep] if last else state["mlp_out"]
                else:
                    # As in the bridge, hook_resid_mid is the MLP's input (the second LayerNorm's):
                    # a patch there changes what the MLP reads, not the residual stream around it.
                    mlp_in = _call(hooks, name + "hook_resid_mid", resid)
                    hidden = self.act(self._linear(self._norm(mlp_in, p + "ln2"), p + "mlp.fc_in"))
                    mlp_out = self._linear(hidden, p + "mlp.fc_out")
                resid = resid + _call(hooks, name + "hook_mlp_out", mlp_out)
            resid = _call(hooks, name + "hook_resid_post", resid)
        if keep is not None and not cut:
            resid = resid[:, keep]
        logits = self._linear(self._norm(resid, "ln_out"), "head")
        if keep is None:
            return logits
        if len(keep) == 1:  # a view that shows the one computed position everywhere: no copy
            return logits.expand(rows, n_pos, logits.shape[-1])
        full = logits.new_zeros(rows, n_pos, logits.shape[-1])
        full[:, keep] = logits
        return full


_WEIGHTS: WeakKeyDictionary = WeakKeyDictionary()


def _weights(model: TransformerBridge) -> dict[str, Tensor]:
    """The native model's parameters and buffers by their own names, looked up once per model
    and device (the tensors themselves, so training or loading weights in place is seen)."""
    embedding = model.original_model.tok_embed.weight
    key = (embedding.device, embedding.dtype)
    if _WEIGHTS.get(model, (None,))[0] != key:
        native = model.original_model
        tensors = {**dict(native.named_parameters()), **dict(native.named_buffers())}
        _WEIGHTS[model] = key, {name.replace("._original_component", ""): tensor for name, tensor in tensors.items()}
    return _WEIGHTS[model][1]


def _provides(site: tuple[int, str] | None, attn_only: bool) -> bool:
    # An attention-only bridge has no hook_resid_mid or hook_mlp_out.
    return site is not None and not (attn_only and site[1] in ("hook_resid_mid", "hook_mlp_out"))


def _call(hooks: dict[str, Hook], name: str, act: Tensor) -> Tensor:
    hook = hooks.get(name)
    return act if hook is None else hook(act)
