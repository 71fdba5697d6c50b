"""Circuit tools: per-token loss, direct logit attribution, head ablation, QK/OV circuits and
composition scores (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits").

Reference implementations for Chapter 3 (induction heads) and Chapter 6 (IOI). Every function
treats all layers and heads at once. Conventions follow TransformerLens: weights act on row
vectors, so a head's OV matrix is `W_V @ W_O` and its QK matrix `W_Q @ W_K^T`, and per-head
tensors are stacked as `[layer, head, ...]`. Native TransformerLens 4 models have no
`hook_result`, so a head's output is computed here from `hook_z` and `W_O`.

Sections: loss; residual decomposition and direct logit attribution; ablation; OV and QK
circuits; composition scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

if TYPE_CHECKING:  # importing TransformerLens takes seconds; every chapter's checks import this module
    from transformer_lens import ActivationCache
    from transformer_lens.model_bridge import TransformerBridge

# --- loss ------------------------------------------------------------------------------------


def per_token_loss(
    logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos_minus_1"]:
    """Cross-entropy of each next-token prediction: entry j is the loss of predicting token j + 1.

    Kept per token (not averaged) because in-context learning shows up as *where* in the
    sequence the loss drops.
    """
    log_probs = logits[:, :-1].log_softmax(dim=-1)
    return -log_probs.gather(-1, tokens[:, 1:, None]).squeeze(-1)


# --- residual decomposition and direct logit attribution ----------------------------------------


def z_hook_name(layer: int) -> str:
    """The hook holding layer `layer`'s per-head attention-weighted values (before W_O)."""
    return f"blocks.{layer}.attn.hook_z"


def head_outputs(
    z: Float[Tensor, "layer batch pos head d_head"], W_O: Float[Tensor, "layer head d_head d_model"]
) -> Float[Tensor, "layer batch pos head d_model"]:
    """What each head writes into the residual stream: its z times its slice of W_O.

    A layer's attention output is the sum of these over heads plus b_O, which is what makes a
    per-head attribution exact.
    """
    return torch.einsum("lbphd,lhdm->lbphm", z, W_O)


class ResidualStack(NamedTuple):
    """The residual stream at the unembedding, split into additive parts.

    `vectors` sum (over the component axis) to what the unembedding reads, so projecting each
    part onto a logit direction splits that logit exactly. `labels` name the parts: "embed",
    "pos_embed", "L{l}H{h}" for every head, "L{l} mlp" for MLP layers, and "biases" (every
    attention output bias, plus the final LayerNorm's bias where there is one).
    """

    vectors: Float[Tensor, "component batch pos d_model"]
    labels: list[str]


def _final_norm(
    model: TransformerBridge, cache: ActivationCache, vectors: Float[Tensor, "component batch pos d_model"]
) -> tuple[Float[Tensor, "component batch pos d_model"], Float[Tensor, "d_model"] | None]:
    """Apply the final normalisation to each part with the scale frozen at its measured value.

    LayerNorm is linear once its scale is fixed: centre (LN, not RMSNorm), divide by the
    scale, multiply by the weight. Its bias is returned separately, as a part of its own.
    """
    kind = model.cfg.normalization_type
    if kind is None:
        return vectors, None
    scale = cache["ln_final.hook_scale"]
    if kind in ("LN", "LNPre"):
        vectors = vectors - vectors.mean(dim=-1, keepdim=True)
    vectors = vectors / scale
    module = model.ln_final._original_component
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if weight is not None:
        vectors = vectors * weight
    return vectors, bias


@torch.no_grad()
def residual_stack(model: TransformerBridge, tokens: Int[Tensor, "batch pos"]) -> ResidualStack:
    """Split the final residual stream of `model` on `tokens` into embeddings, heads, MLPs, biases.

    One forward pass; head outputs come from `hook_z` and `W_O`.
    """
    cfg = model.cfg
    names = {"hook_embed", "hook_pos_embed", "ln_final.hook_scale"}
    names |= {z_hook_name(layer) for layer in range(cfg.n_layers)}
    names |= {f"blocks.{layer}.hook_mlp_out" for layer in range(cfg.n_layers)}
    _, cache = model.run_with_cache(tokens.to(cfg.device), names_filter=lambda n: n in names)
    z = torch.stack([cache[z_hook_name(layer)] for layer in range(cfg.n_layers)])
    heads = head_outputs(z, model.W_O).permute(0, 3, 1, 2, 4).flatten(0, 1)
    parts = [cache["hook_embed"][None], cache["hook_pos_embed"].expand_as(cache["hook_embed"])[None], heads]
    labels = ["embed", "pos_embed"] + [f"L{l}H{h}" for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    if not cfg.attn_only:
        parts.append(torch.stack([cache[f"blocks.{layer}.hook_mlp_out"] for layer in range(cfg.n_layers)]))
        labels += [f"L{layer} mlp" for layer in range(cfg.n_layers)]
    vectors, final_bias = _final_norm(model, cache, torch.cat(parts))
    biases = model.b_O.sum(dim=0)
    if cfg.normalization_type is not None:
        biases = _final_norm(model, cache, biases.expand_as(cache["hook_embed"])[None])[0][0]
    if final_bias is not None:
        biases = biases + final_bias
    vectors = torch.cat([vectors, biases.expand_as(vectors[0])[None]])
    return ResidualStack(vectors, labels + ["biases"])


def correct_token_directions(
    W_U: Float[Tensor, "d_model vocab"], tokens: Int[Tensor, "batch pos"], centre: bool = True
) -> Float[Tensor, "batch pos_minus_1 d_model"]:
    """The unembedding direction of each next token (position j reads token j + 1).

    With `centre`, the mean unembedding is subtracted, so a projection is the token's logit
    *relative to the mean logit*: softmax ignores a shift shared by all logits, so the raw
    logit's share of a constant would be meaningless.
    """
    if centre:
        W_U = W_U - W_U.mean(dim=-1, keepdim=True)
    return W_U.T[tokens[:, 1:]]


def logit_attribution(
    vectors: Float[Tensor, "component batch pos d_model"], directions: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "component batch pos"]:
    """Each part's projection on a direction per position (a token's logit, a logit difference)."""
    return torch.einsum("cbpm,bpm->cbp", vectors, directions)


def head_logit_attribution(
    z: Float[Tensor, "layer batch pos head d_head"],
    W_O: Float[Tensor, "layer head d_head d_model"],
    W_U: Float[Tensor, "d_model vocab"],
    tokens: Int[Tensor, "batch pos"],
) -> Float[Tensor, "layer batch pos_minus_1 head"]:
    """Each head's direct contribution to the (raw) logit of the correct next token.

    Direct means through the residual stream straight to the unembedding, not via later heads.
    The last position predicts nothing inside the sequence, so it is dropped.
    """
    out = head_outputs(z[:, :, :-1], W_O)
    return torch.einsum("lbphm,bpm->lbph", out, correct_token_directions(W_U, tokens, centre=False))


# --- ablation --------------------------------------------------------------------------------


def ablate_z(
    z: Float[Tensor, "copies_times_batch pos head d_head"],
    ablate: Bool[Tensor, "copies head"],
    replacement: Float[Tensor, "pos head d_head"],
) -> Float[Tensor, "copies_times_batch pos head d_head"]:
    """Replace the z of the chosen heads, separately in each copy of the batch.

    The batch holds `copies` copies of the same rows, copy-major (`tokens.repeat(copies, 1)`),
    and copy c ablates the heads where `ablate[c]` is True: many ablations in one forward pass.
    A zero `replacement` is zero-ablation; the mean z over a reference batch is mean-ablation.
    """
    copies = ablate.shape[0]
    z = z.unflatten(0, (copies, -1))
    mask = ablate[:, None, None, :, None]
    return torch.where(mask, replacement.to(z.dtype), z).flatten(0, 1)


@torch.no_grad()
def mean_z(model: TransformerBridge, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "layer pos head d_head"]:
    """Every head's z averaged over the batch, per position: the mean-ablation replacement.

    Mean- rather than zero-ablation keeps the part of a head's output that does not depend on
    the input, so the measured damage is what the head does *for this input*.
    """
    names = {z_hook_name(layer) for layer in range(model.cfg.n_layers)}
    _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=lambda n: n in names)
    return torch.stack([cache[z_hook_name(layer)].mean(dim=0) for layer in range(model.cfg.n_layers)])


def single_head_ablations(n_layers: int, n_heads: int) -> Bool[Tensor, "layer_times_head layer head"]:
    """One ablation per head, in order L0H0, L0H1, ..., each knocking out that head alone."""
    return torch.eye(n_layers * n_heads, dtype=torch.bool).view(-1, n_layers, n_heads)


@torch.no_grad()
def ablation_losses(
    model: TransformerBridge,
    tokens: Int[Tensor, "batch pos"],
    ablate: Bool[Tensor, "copies layer head"],
    replacement: Float[Tensor, "layer pos head d_head"] | None = None,
) -> Float[Tensor, "copies batch pos_minus_1"]:
    """Per-token loss under each of several ablations, all in one batched forward pass.

    The batch is repeated once per ablation and each copy's heads are replaced by `replacement`
    (zeros, i.e. zero-ablation, when None). Include an all-False row for the clean loss.
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if ablate.ndim != 3 or tuple(ablate.shape[1:]) != (n_layers, n_heads):
        raise ValueError(f"ablate must have shape (copies, {n_layers}, {n_heads}), got {tuple(ablate.shape)}")
    tokens = tokens.to(model.cfg.device)
    ablate = ablate.to(model.cfg.device)
    if replacement is None:
        replacement = torch.zeros(n_layers, tokens.shape[1], n_heads, model.cfg.d_head, device=model.cfg.device)

    def hook_for(layer: int):
        return lambda z, hook: ablate_z(z, ablate[:, layer], replacement[layer])

    copies = ablate.shape[0]
    fwd_hooks = [(z_hook_name(layer), hook_for(layer)) for layer in range(n_layers)]
    logits = model.run_with_hooks(tokens.repeat(copies, 1), fwd_hooks=fwd_hooks)
    return per_token_loss(logits, tokens.repeat(copies, 1)).unflatten(0, (copies, -1))


# --- OV and QK circuits ------------------------------------------------------------------------


def ov_matrices(model: TransformerBridge) -> Float[Tensor, "layer head d_model d_model"]:
    """Each head's OV matrix W_V W_O: how what it attends to becomes what it writes."""
    return model.W_V @ model.W_O


def qk_matrices(model: TransformerBridge) -> Float[Tensor, "layer head d_model d_model"]:
    """Each head's QK matrix W_Q W_K^T: the bilinear form of its attention scores."""
    return model.W_Q @ model.W_K.transpose(-1, -2)


def ov_circuit(
    W_E: Float[Tensor, "vocab d_model"],
    W_V: Float[Tensor, "... d_model d_head"],
    W_O: Float[Tensor, "... d_head d_model"],
    W_U: Float[Tensor, "d_model vocab_out"],
) -> Float[Tensor, "... vocab vocab_out"]:
    """The full OV circuit W_E W_V W_O W_U: row t is how attending to token t moves the logits.

    Multiplied through the d_head bottleneck first, so all heads' vocab x vocab matrices cost
    little more than the matrices themselves.
    """
    return (W_E @ W_V) @ (W_O @ W_U)


def qk_circuit(
    queries: Float[Tensor, "n_query d_model"],
    W_Q: Float[Tensor, "... d_model d_head"],
    W_K: Float[Tensor, "... d_model d_head"],
    keys: Float[Tensor, "... n_key d_model"],
) -> Float[Tensor, "... n_query n_key"]:
    """Attention scores (before scaling and softmax) between every query and key vector.

    With token embeddings on both sides this is the direct QK circuit; with keys that an
    earlier head wrote (e.g. `W_E @ W_OV` of a previous-token head) it is K-composition.
    """
    return (queries @ W_Q) @ (keys @ W_K).transpose(-1, -2)


def copying_score(circuit: Float[Tensor, "... n n"]) -> Float[Tensor, "..."]:
    """Fraction of rows whose largest entry is on the diagonal.

    For an OV circuit: the fraction of tokens that, when attended to, raise their own logit
    most, i.e. how much of the vocabulary the head copies. For a QK circuit: the fraction of
    queries that attend most to a key holding the same token.
    """
    n = circuit.shape[-1]
    hits = circuit.argmax(dim=-1) == torch.arange(n, device=circuit.device)
    return hits.float().mean(dim=-1)


# --- composition scores ------------------------------------------------------------------------

CompositionKind = Literal["Q", "K", "V"]


def composition_scores(
    W_A: Float[Tensor, "a d_model d_model"], W_B: Float[Tensor, "b d_model d_model"]
) -> Float[Tensor, "a b"]:
    """||W_A[i] W_B[j]||_F / (||W_A[i]||_F ||W_B[j]||_F) for every pair (Elhage et al. 2021).

    1 means W_B reads exactly the subspace W_A writes to (with aligned singular vectors),
    near 0 that the two barely interact. Normalised, so it compares heads of any scale.
    """
    product = torch.einsum("aij,bjk->abik", W_A, W_B).flatten(-2).norm(dim=-1)
    return product / (W_A.flatten(-2).norm(dim=-1)[:, None] * W_B.flatten(-2).norm(dim=-1)[None, :])


def all_composition_scores(model: TransformerBridge, kind: CompositionKind) -> Float[Tensor, "layer head layer head"]:
    """Scores of every earlier head's OV output with every later head's Q, K or V input.

    Entry [l1, h1, l2, h2] measures how head (l2, h2) reads what (l1, h1) writes: through
    its queries (Q), keys (K) or values (V). Pairs with l1 >= l2 cannot compose and are 0.
    In the row-vector convention, K-composition is the norm of W_OV(1) W_QK(2)^T.
    """
    if kind not in ("Q", "K", "V"):
        raise ValueError(f"kind must be 'Q', 'K' or 'V', got {kind!r}")
    ov, qk = ov_matrices(model), qk_matrices(model)
    reader = {"Q": qk, "K": qk.transpose(-1, -2), "V": ov}[kind]
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    scores = composition_scores(ov.flatten(0, 1), reader.flatten(0, 1)).view(n_layers, n_heads, n_layers, n_heads)
    layer = torch.arange(n_layers, device=scores.device)
    earlier = (layer[:, None] < layer[None, :])[:, None, :, None]
    return scores * earlier


def random_composition_baseline(d_model: int, d_head: int, n: int = 15, seed: int = 0) -> Float[Tensor, "n_squared"]:
    """Composition scores of all n x n pairs of random rank-`d_head` matrices (Gaussian factors).

    A score means little on its own: two random matrices already score about 1/sqrt(d_model)
    (0.125 for d_model = 64, whatever d_head), so compare a trained head's score with this
    distribution.
    """
    generator = torch.Generator().manual_seed(seed)

    def low_rank() -> Tensor:
        return torch.randn(n, d_model, d_head, generator=generator) @ torch.randn(n, d_head, d_model, generator=generator)

    return composition_scores(low_rank(), low_rank()).flatten()
