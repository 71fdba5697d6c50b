"""Activation patching: which internal activations carry the difference between two inputs?

Run a model on a *clean* prompt ("ada moss lives in" -> paris) and on a *corrupted* one that
changes the answer (another subject, or the subject's embeddings drowned in noise). Then run it
again while copying one activation -- one head, one residual-stream vector at one position --
from one run into the other, and measure how far a metric (the logit difference between the
two answers, say) moves. *Denoising* copies a clean activation into the corrupted run: a site that
restores the answer on its own is **sufficient** to carry the difference. *Noising* copies a
corrupted activation into the clean run: a site whose corruption breaks the answer is
**necessary**. The two disagree exactly where components are redundant (an OR: either of two
heads suffices, so noising one changes nothing) or conjunctive (an AND: both are needed, so
denoising one changes nothing), which is why a careful study reports both (Heimersheim & Nanda
2024; Zhang & Nanda 2023). *Causal tracing* (Meng et al. 2022) is denoising with a noise
corruption of the subject's token embeddings. *Attribution patching* (Nanda 2023; Syed et al.
2023) replaces every patched run with one gradient: metric change ~ (a_clean - a_corrupt) .
d metric / d a, two forward passes and one backward pass for all sites at once, accurate where
the metric is close to linear in the activation.

One patched site per forward pass, as `transformer_lens.patching` does, costs a forward pass per
site. Here every patched variant is a copy of the batch, stacked along the batch dimension, so a
whole sweep is a few forward passes (one per starting point, cut into chunks of at most
`max_rows` rows), each starting where its patches start (see `patch_sweep`). The
generic core is `patch_sweep`: it takes, per hook, a boolean mask saying which elements each
variant copies from the source run. The named functions below only build those masks.

Conventions: hook names are TransformerLens's (`blocks.{L}.hook_resid_pre`, `blocks.{L}.attn.hook_z`).
A metric maps logits `[..., batch, pos, vocab]` to one value per leading index `[...]` (usually
an average over the batch), so it scores every stacked variant at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Literal, Mapping

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mi_course.patching_forward import STAGES, before, STATE_AT, STATE_HOOKS, LeanForward, keep_positions, site_of

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

Metric = Callable[[Float[Tensor, "... batch pos vocab"]], Float[Tensor, "..."]]
Edit = Callable[[Float[Tensor, "variant batch ..."]], Float[Tensor, "variant batch ..."]]
Direction = Literal["denoising", "noising"]
HeadActivation = Literal["z", "q", "k", "v", "pattern"]
DEFAULT_MAX_ROWS = 1024

# --- metrics ---------------------------------------------------------------------------------


def logit_diff(
    logits: Float[Tensor, "... batch pos vocab"],
    position: Int[Tensor, " batch"],
    correct: Int[Tensor, " batch"],
    wrong: Int[Tensor, " batch"],
) -> Float[Tensor, "..."]:
    """Mean over the batch of logit(correct) - logit(wrong) at each prompt's `position`.

    Linear in the logits and unbounded, so small patches show up and large ones do not
    saturate, unlike probability or accuracy (Heimersheim & Nanda 2024).
    """
    rows = torch.arange(logits.shape[-3], device=logits.device)
    at = logits[..., rows, position.to(logits.device), :]
    picked = at.gather(-1, torch.stack([correct, wrong], -1).to(logits.device).expand(*at.shape[:-1], 2))
    return (picked[..., 0] - picked[..., 1]).mean(-1)


def answer_prob(
    logits: Float[Tensor, "... batch pos vocab"], position: Int[Tensor, " batch"], answer: Int[Tensor, " batch"]
) -> Float[Tensor, "..."]:
    """Mean over the batch of the probability of `answer` at `position` (Meng et al.'s metric)."""
    rows = torch.arange(logits.shape[-3], device=logits.device)
    probs = logits[..., rows, position.to(logits.device), :].softmax(-1)
    return probs.gather(-1, answer.to(logits.device).expand(*probs.shape[:-1])[..., None])[..., 0].mean(-1)


def normalise(value: Tensor, clean: float | Tensor, corrupt: float | Tensor) -> Tensor:
    """(value - corrupt) / (clean - corrupt): 0 is the corrupted run's metric, 1 the clean run's."""
    return (value - corrupt) / (clean - corrupt)


# --- the generic core --------------------------------------------------------------------------


def cache_activations(
    model: TransformerBridge,
    tokens: Int[Tensor, "batch pos"],
    names: list[str],
    edits: Mapping[str, Edit] | None = None,
) -> dict[str, Tensor]:
    """The activations at hooks `names` on one run (with `edits` applied, as in `patch_sweep`)."""
    store: dict[str, Tensor] = {}

    def saver(name: str):
        # A bridge reports its own alias in `hook.name` (`blocks.0.hook_in`), so key by the asked name.
        def save(act: Tensor, hook) -> None:
            store[name] = act.detach().clone()

        return save

    edits = dict(edits or {})
    lean = LeanForward.build(model, [*names, *edits])
    with torch.no_grad():
        if lean is not None:  # the same arithmetic, without the bridge's machinery
            hooks = {name: _edit_hook(edit, 1) for name, edit in edits.items()}
            for name in names:
                hooks[name] = _saver(store, name, hooks.get(name))
            lean.run({"resid_pre": lean.embed(tokens.to(model.cfg.device), hooks)}, 0, 0, hooks)
            return {name: store[name].detach().clone() for name in names}
        hooks = [(name, _edit_hook(edit, 1)) for name, edit in edits.items()]
        model.run_with_hooks(tokens.to(model.cfg.device), fwd_hooks=hooks + [(name, saver(name)) for name in names])
    return store


def _edit_hook(edit: Edit, variants: int):
    def hook(act: Tensor, hook=None) -> Tensor:
        return edit(act.unflatten(0, (variants, -1))).flatten(0, 1)

    return hook


def patch_sweep(
    model: TransformerBridge,
    tokens: Int[Tensor, "batch pos"],
    source: Mapping[str, Tensor],
    masks: Mapping[str, Bool[Tensor, "variant ..."]],
    metric: Metric,
    *,
    edits: Mapping[str, Edit] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Float[Tensor, " variant"]:
    """The metric of every patched variant of one run, all variants stacked along the batch.

    The run is `model` on `tokens` (with `edits`, e.g. noise added to the embeddings, applied to
    every variant). Variant v replaces, at each hook `name` in `masks`, the elements where
    `masks[name][v]` is True by those of `source[name]` (the activations of the other run, shape
    `[batch, ...]`); `masks[name]` has shape `[variant, ...]` broadcastable to the activation
    without its batch axis. Rows are `variant x batch`, copy-major; they are cut into chunks of
    at most `max_rows` rows (at least one variant per chunk), so peak memory is that of one forward
    pass over `max_rows` rows, whatever the number of variants.

    What keeps a sweep cheap: everything before a variant's first patch computes the same thing
    in every variant, so its chunk starts there, from the unpatched run's activations (a sweep
    over the layers of an L-layer model costs about (L + 1) / 2L of the full forward passes).
    On the course's native models (`mi_course.patching_forward.LeanForward`; any other model
    runs through the bridge, starting at the first patched block) chunks run the same arithmetic
    without the bridge's per-module machinery and resume inside a block (a patch of z skips that
    block's attention); the metric is probed once on the unpatched run for the positions it reads
    (those whose logits it has a gradient for, checked by hiding every other position), and the
    last block and the unembedding are computed only there, since in a causal model nothing else
    reaches them; and a variant that copies only values equal to the run's own, or only at
    positions after the last one the metric reads, is not run: its metric is the unpatched run's.
    (A metric must therefore read the same positions whatever the logits, as any metric that
    indexes fixed positions does.)
    """
    n_variants = next(iter(masks.values())).shape[0]
    if any(mask.shape[0] != n_variants for mask in masks.values()):
        raise ValueError("every mask must have the same number of variants (its first axis)")
    tokens = tokens.to(model.cfg.device)
    edits = dict(edits or {})
    per_chunk = max(1, max_rows // tokens.shape[0])
    lean = LeanForward.build(model, [*masks, *edits])
    runner = _BridgeRun(model, tokens, edits) if lean is None else _LeanRun(lean, tokens, edits, metric, list(masks))
    # Where each variant's first patch sits (runner.rank); chunks never mix them, so each starts late.
    never = runner.rank(f"blocks.{model.cfg.n_layers}.hook_resid_pre")
    first = torch.stack([
        torch.where(mask.flatten(1).any(1), runner.rank(name), never) for name, mask in masks.items()
    ]).amin(0)
    values = torch.zeros(n_variants, device=model.cfg.device)
    if lean is not None:
        # A variant that copies only values equal to the run's own changes nothing: its metric
        # is the unpatched run's (exactly, as for a patched run whose activations come out equal).
        unchanged = runner.unchanged(source, masks).to(values.device)
        values[unchanged] = runner.unpatched_value.to(values.dtype)
        first = torch.where(unchanged.to(first.device), -1, first)
    with torch.no_grad():
        for rank in first[first >= 0].unique().tolist():
            group = (first == rank).nonzero()[:, 0]
            for chunk in group.split(per_chunk):
                patches = {name: mask[chunk].to(model.cfg.device) for name, mask in masks.items()}
                patches = {name: mask for name, mask in patches.items() if mask.any()}
                logits = runner.logits(rank if patches else 0, len(chunk), source, patches)
                values[chunk.to(values.device)] = metric(logits.unflatten(0, (len(chunk), -1))).to(values.dtype)
    return values


def _layer_of(name: str) -> int:
    """The block a hook belongs to (0 for hooks before the first block, such as `hook_embed`)."""
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blocks" else 0


class _BridgeRun:
    """Patched runs through the bridge's own forward pass (any model TransformerLens runs).

    A chunk starts at block `layer` from the run's residual stream before it (computed once,
    with the edits), or from the tokens. Edits inside blocks would be applied twice by a run that
    starts from an edited residual, so with such edits every chunk starts at 0."""

    def __init__(self, model: TransformerBridge, tokens: Tensor, edits: Mapping[str, Edit]) -> None:
        self.model, self.tokens, self.edits = model, tokens, edits
        self.enabled = all(not name.startswith("blocks.") for name in edits)
        self.resid: dict[str, Tensor] | None = None

    def rank(self, name: str) -> int:
        return _layer_of(name)

    def inputs(self, layer: int, copies: int) -> tuple[int, Tensor]:
        if layer == 0 or layer >= self.model.cfg.n_layers or not self.enabled:
            return 0, self.tokens.repeat(copies, 1)
        if self.resid is None:
            names = [f"blocks.{block}.hook_resid_pre" for block in range(1, self.model.cfg.n_layers)]
            self.resid = cache_activations(self.model, self.tokens, names, self.edits)
        return layer, self.resid[f"blocks.{layer}.hook_resid_pre"].repeat(copies, 1, 1)

    def logits(self, layer: int, copies: int, source: Mapping[str, Tensor], patches: dict[str, Tensor]) -> Tensor:
        start, inputs = self.inputs(layer, copies)
        hooks = [(name, _edit_hook(edit, copies)) for name, edit in self.edits.items() if _layer_of(name) >= start]
        hooks += [(name, _patch_hook(source[name], mask)) for name, mask in patches.items()]
        return self.model.run_with_hooks(inputs, fwd_hooks=hooks, start_at_layer=start or None)


class _LeanRun:
    """Patched runs through `LeanForward`, resuming inside the first patched block: a run whose
    first patch is a head's output z starts from the unpatched run's z there, skipping that
    block's attention; one that patches an MLP output skips that MLP. The last block and the
    logits are computed only at the positions `metric` reads (see `patch_sweep`)."""

    def __init__(
        self, lean: LeanForward, tokens: Tensor, edits: Mapping[str, Edit], metric: Metric, patched: list[str]
    ) -> None:
        self.lean, self.tokens, self.edits = lean, tokens, edits
        # Edits inside blocks would be applied twice by a run that resumes from edited states.
        self.enabled = all(not name.startswith("blocks.") for name in edits)
        hooks = {name: _edit_hook(edit, 1) for name, edit in edits.items()}
        self.state: dict[tuple[int, str], Tensor] = {}  # (block, activation): the unpatched run's
        for layer in range(lean.n_layers):
            for key, site in STATE_HOOKS.items():
                name = f"blocks.{layer}.{site}"
                hooks[name] = _saver(self.state, (layer, key), hooks.get(name))
        self.own: dict[str, Tensor] = {}  # the unpatched run's activations at the patched hooks
        for name in patched:
            hooks[name] = _saver(self.own, name, hooks.get(name))
        with torch.no_grad():
            unpatched = lean.run({"resid_pre": lean.embed(tokens, hooks)}, 0, 0, hooks)
            self.unpatched_value = metric(unpatched[None])[0]
        self.keep = _positions_read(metric, unpatched)

    def unchanged(self, source: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Bool[Tensor, " variant"]:
        """Per variant: does every element it copies equal the run's own, in every prompt, or
        sit after the last position the metric reads?"""
        changed = None
        for name, mask in masks.items():
            differs = (source[name].to(self.own[name].device) != self.own[name]).any(0)
            if self.keep is not None:
                differs = differs & before(name, differs.shape, int(self.keep.max())).to(differs.device)
            hit = (mask.to(differs.device) & differs).flatten(1).any(1)
            changed = hit if changed is None else changed | hit
        return ~changed

    def rank(self, name: str) -> int:
        site = site_of(name)
        return 0 if site is None else site[0] * len(STATE_AT) + STAGES[site[1]]

    def logits(self, rank: int, copies: int, source: Mapping[str, Tensor], patches: dict[str, Tensor]) -> Tensor:
        if not self.enabled or rank >= self.lean.n_layers * len(STATE_AT):
            rank = 0
        layer, stage = divmod(rank, len(STATE_AT))
        hooks = {name: _edit_hook(edit, copies) for name, edit in self.edits.items() if self.rank(name) >= rank}
        last = self.lean.n_layers - 1
        for name, mask in patches.items():
            patch_source = source[name]
            if self.keep is not None and _layer_of(name) == last and name.startswith("blocks."):
                mask = keep_positions(mask, name, self.keep)
                patch_source = keep_positions(patch_source, name, self.keep)
            hooks[name] = _patch_hook(patch_source, mask)
        if (layer, stage) == (0, 0):
            state = {"resid_pre": self.lean.embed(self.tokens.repeat(copies, 1), hooks)}
        else:
            state = {key: self.state[layer, key].repeat(copies, *[1] * (self.state[layer, key].dim() - 1))
                     for key in STATE_AT[stage]}
        return self.lean.run(state, layer, stage, hooks, keep=self.keep)


def _saver(store: dict, key, then: Callable | None = None) -> Callable[[Tensor], Tensor]:
    """A hook that applies `then` (if any) and keeps the result in `store[key]`."""

    def save(act: Tensor, hook=None) -> Tensor:
        act = act if then is None else then(act)
        store[key] = act
        return act

    return save


def _positions_read(metric: Metric, logits: Float[Tensor, "batch pos vocab"]) -> Int[Tensor, " keep"] | None:
    """The positions whose logits `metric` reads: those it has a gradient for, kept only if the
    metric gives the same value with every other position's logits set to NaN. None when it
    reads every position, or when the check fails (e.g. a metric without gradients)."""
    probe = logits.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = metric(probe[None])
        if not value.requires_grad:
            return None
        (grad,) = torch.autograd.grad(value.sum(), probe)
    keep = grad.ne(0).any(-1).any(0).nonzero()[:, 0]
    if len(keep) == 0 or len(keep) == logits.shape[1]:
        return None
    hidden = torch.full_like(logits, float("nan"))
    hidden[:, keep] = logits[:, keep]
    with torch.no_grad():
        same = torch.equal(metric(hidden[None]), value.detach())
    return keep if same else None


def _patch_hook(source: Tensor, mask: Bool[Tensor, "variant ..."]):
    def hook(act: Tensor, hook=None) -> Tensor:
        variants = act.unflatten(0, (mask.shape[0], -1))
        return torch.where(mask[:, None], source.to(act.dtype)[None], variants).flatten(0, 1)

    return hook


def one_hot_masks(
    hook_names: list[str], shape: tuple[int, ...], view: Callable[[Tensor], Tensor]
) -> dict[str, Bool[Tensor, "variant ..."]]:
    """One variant per (hook, element of `shape`), in row-major order: variant (i, j...) patches
    element (j...) at hook i. `view` reshapes `[variant, *shape]` masks to broadcast against the
    activation without its batch axis (e.g. add a trailing d_model axis)."""
    n_hooks, cells = len(hook_names), int(torch.tensor(shape).prod())
    eye = torch.eye(n_hooks * cells, dtype=torch.bool).view(n_hooks * cells, n_hooks, *shape)
    return {name: view(eye[:, i]) for i, name in enumerate(hook_names)}


def _runs(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    names: list[str],
    direction: Direction,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The tokens to run and the activations to patch in, for `direction`."""
    if direction not in ("denoising", "noising"):
        raise ValueError(f"direction must be 'denoising' or 'noising', got {direction!r}")
    if clean_tokens.shape != corrupt_tokens.shape:
        raise ValueError(
            f"clean and corrupt tokens differ in shape: {tuple(clean_tokens.shape)} vs {tuple(corrupt_tokens.shape)}"
        )
    run, other = (corrupt_tokens, clean_tokens) if direction == "denoising" else (clean_tokens, corrupt_tokens)
    return run, cache_activations(model, other, names)


# --- named sweeps ----------------------------------------------------------------------------


def resid_by_pos(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    direction: Direction = "denoising",
    stage: Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"] = "resid_pre",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Float[Tensor, "layer pos"]:
    """Patch one residual-stream vector (or sublayer output) at one (layer, position) per variant.

    Denoising runs the corrupted tokens and copies in clean activations; noising the reverse.
    Equals `transformer_lens.patching.get_act_patch_<stage>` for denoising. (On TransformerLens 4
    bridges `hook_resid_mid` is the input of the MLP's LayerNorm: patching it changes what the
    MLP reads, not the residual stream that bypasses the MLP.)
    """
    n_layers, n_pos = model.cfg.n_layers, clean_tokens.shape[1]
    names = [f"blocks.{layer}.hook_{stage}" for layer in range(n_layers)]
    run, source = _runs(model, clean_tokens, corrupt_tokens, names, direction)
    masks = one_hot_masks(names, (n_pos,), lambda mask: mask[..., None])
    return patch_sweep(model, run, source, masks, metric, max_rows=max_rows).view(n_layers, n_pos)


def every_sublayer(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    direction: Direction = "denoising",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Float[Tensor, "3 layer pos"]:
    """`resid_by_pos` for the residual stream before each block, the attention output and the
    MLP output, stacked in that order (as `transformer_lens.patching.get_act_patch_block_every`)."""
    return torch.stack([
        resid_by_pos(model, clean_tokens, corrupt_tokens, metric, direction, stage, max_rows)
        for stage in ("resid_pre", "attn_out", "mlp_out")
    ])


def head_hook_name(layer: int, activation: HeadActivation) -> str:
    """TransformerLens's hook for a per-head activation of layer `layer`."""
    return f"blocks.{layer}.attn.hook_{activation}"


def every_head(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    direction: Direction = "denoising",
    activation: HeadActivation = "z",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Float[Tensor, "layer head"]:
    """Patch one head's `activation` at every position per variant.

    `z` is the head's output before W_O (what `get_act_patch_attn_head_out_all_pos` patches);
    `q`, `k`, `v` and `pattern` isolate what changes where the head attends and what it moves.
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    names = [head_hook_name(layer, activation) for layer in range(n_layers)]
    run, source = _runs(model, clean_tokens, corrupt_tokens, names, direction)
    # Per-head vectors are [pos, head, d_head]; patterns are [head, dest, src].
    view = (lambda m: m[:, :, None, None]) if activation == "pattern" else (lambda m: m[:, None, :, None])
    masks = one_hot_masks(names, (n_heads,), view)
    return patch_sweep(model, run, source, masks, metric, max_rows=max_rows).view(n_layers, n_heads)


def every_head_by_pos(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    direction: Direction = "denoising",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Float[Tensor, "layer pos head"]:
    """Patch one head's output (z) at one position per variant
    (as `transformer_lens.patching.get_act_patch_attn_head_out_by_pos`)."""
    n_layers, n_heads, n_pos = model.cfg.n_layers, model.cfg.n_heads, clean_tokens.shape[1]
    names = [head_hook_name(layer, "z") for layer in range(n_layers)]
    run, source = _runs(model, clean_tokens, corrupt_tokens, names, direction)
    masks = one_hot_masks(names, (n_pos, n_heads), lambda mask: mask[..., None])
    return patch_sweep(model, run, source, masks, metric, max_rows=max_rows).view(n_layers, n_pos, n_heads)


# --- causal tracing ----------------------------------------------------------------------------

TRACE_SITES = {"hidden": "hook_resid_post", "mlp": "hook_mlp_out", "attn": "hook_attn_out"}


def subject_noise(
    model: TransformerBridge,
    subject_mask: Bool[Tensor, "batch pos"],
    embedding_std: float,
    scale: float = 3.0,
    samples: int = 8,
    seed: int = 0,
) -> Float[Tensor, "samples_times_batch pos d_model"]:
    """Gaussian noise with std `scale x embedding_std` at the subject positions, zero elsewhere:
    Meng et al.'s corruption (they use 3x the std of the subject embeddings), one draw per sample.
    Rows are sample-major: row s * batch + b is sample s of prompt b."""
    generator = torch.Generator().manual_seed(seed)
    batch, pos = subject_mask.shape
    noise = torch.randn(samples, batch, pos, model.cfg.d_model, generator=generator)
    return (noise * scale * embedding_std * subject_mask[None, :, :, None]).flatten(0, 1)


def subject_embedding_std(model: TransformerBridge, tokens: Int[Tensor, "batch pos"], subject_mask: Tensor) -> float:
    """The std of the token-embedding entries at the subject positions of `tokens`."""
    return model.W_E[tokens[subject_mask.bool()]].std().item()


def causal_trace(
    model: TransformerBridge,
    tokens: Int[Tensor, "batch pos"],
    noise: Float[Tensor, "samples_times_batch pos d_model"],
    metric: Metric,
    window: int = 1,
    direction: Direction = "denoising",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, Float[Tensor, "layer pos"]]:
    """Causal tracing (Meng et al. 2022): run `tokens` with `noise` added to the token embeddings
    (once per noise sample), restore the clean value of one state per variant, score `metric`
    (averaged over the samples). `direction="noising"` does the reverse: the clean run, with one
    state replaced by its value in the noised run.

    Returns, for each kind of state in TRACE_SITES (the block output "hidden", the MLP output,
    the attention output; no "mlp" for attention-only models), the metric with that state
    patched at (layer, position); MLP and attention outputs are patched over `window`
    consecutive layers centred on the layer (Meng et al. use 10 of GPT-2 XL's 48). Subtract the
    unpatched run's metric to get the indirect effect.
    """
    if direction not in ("denoising", "noising"):
        raise ValueError(f"direction must be 'denoising' or 'noising', got {direction!r}")
    samples = noise.shape[0] // tokens.shape[0]
    run = tokens.repeat(samples, 1)
    n_layers, n_pos = model.cfg.n_layers, tokens.shape[1]
    sites = {kind: hook for kind, hook in TRACE_SITES.items() if not (kind == "mlp" and model.cfg.attn_only)}
    names = [f"blocks.{layer}.{hook}" for hook in sites.values() for layer in range(n_layers)]
    noisy = {"hook_embed": lambda act: act + noise.to(act.device, act.dtype)[None]}
    if direction == "denoising":
        source, edits = cache_activations(model, run, names), noisy
    else:
        source, edits = cache_activations(model, run, names, edits=noisy), None

    def per_sample_mean(logits: Float[Tensor, "variant samples_times_batch pos vocab"]) -> Float[Tensor, " variant"]:
        return metric(logits.unflatten(1, (samples, -1))).mean(-1)

    results = {}
    for kind, hook in sites.items():
        site_names = [f"blocks.{layer}.{hook}" for layer in range(n_layers)]
        masks = one_hot_masks(site_names, (n_pos,), lambda mask: mask[..., None])
        if kind != "hidden" and window > 1:
            masks = _widen(masks, site_names, window)
        values = patch_sweep(model, run, source, masks, per_sample_mean, edits=edits, max_rows=max_rows)
        results[kind] = values.view(n_layers, n_pos)
    return results


def _widen(masks: dict[str, Tensor], names: list[str], window: int) -> dict[str, Tensor]:
    """Variant (layer l, pos p) patches p at every layer within window // 2 of l (clipped)."""
    stacked = torch.stack([masks[name] for name in names], 1)  # variant layer pos 1
    n_layers, half = len(names), window // 2
    variants = stacked.view(n_layers, -1, *stacked.shape[1:])  # layer' pos' layer pos 1
    near = (torch.arange(n_layers)[:, None] - torch.arange(n_layers)[None, :]).abs() <= half
    widened = variants.any(2, keepdim=True) & near[:, None, :, None, None]
    widened = widened.flatten(0, 1)
    return {name: widened[:, i] for i, name in enumerate(names)}


# --- attribution patching ---------------------------------------------------------------------


def attribution(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    names: list[str],
) -> dict[str, Tensor]:
    """Attribution patching (Nanda 2023): the first-order estimate of denoising each element of
    the activations at `names`, (a_clean - a_corrupt) * d metric / d a at the corrupted run.

    Returns, per hook, a tensor shaped like the activation without its batch axis (summed over
    the batch); sum it over the axes a patch would replace to estimate that patch.
    Two forward passes and one backward pass, however many sites.
    """
    clean = cache_activations(model, clean_tokens, names)
    store: dict[str, Tensor] = {}

    def keeper(name: str):
        def keep(act: Tensor, hook) -> Tensor:
            act.retain_grad()
            store[name] = act
            return act

        return keep

    with torch.enable_grad():
        logits = model.run_with_hooks(
            corrupt_tokens.to(model.cfg.device), fwd_hooks=[(name, keeper(name)) for name in names]
        )
        metric(logits[None])[0].backward()
    model.zero_grad(set_to_none=True)
    return {name: ((clean[name] - store[name].detach()) * store[name].grad).sum(0) for name in names}


def attribution_every_head(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
) -> Float[Tensor, "layer head"]:
    """Attribution-patching estimate of `every_head(..., "denoising", "z")` minus the corrupted
    run's metric."""
    names = [head_hook_name(layer, "z") for layer in range(model.cfg.n_layers)]
    scores = attribution(model, clean_tokens, corrupt_tokens, metric, names)
    return torch.stack([scores[name].sum((0, 2)) for name in names])


def attribution_resid_by_pos(
    model: TransformerBridge,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
) -> Float[Tensor, "layer pos"]:
    """Attribution-patching estimate of `resid_by_pos(...)` minus the corrupted run's metric."""
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    scores = attribution(model, clean_tokens, corrupt_tokens, metric, names)
    return torch.stack([scores[name].sum(-1) for name in names])
