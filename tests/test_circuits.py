"""The circuit tools of `mi_course.circuits` and `mi_course.induction_phase` on small random
models: each decomposition sums to what it decomposes, each ablation touches only what it
should, and the scores take their known values on constructed inputs."""

import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from mi_course import circuits
from mi_course.data.repeated_tokens import repeated_tokens
from mi_course.induction import score_heads
from mi_course.induction_phase import in_context_learning_score, phase_change_series, transition_window
from mi_course.models import load_model, snapshot_steps



def _model(**overrides) -> TransformerBridge:
    """A tiny randomly initialised bridge with non-zero biases, so bias terms are exercised."""
    settings = dict(d_model=16, d_head=4, n_heads=3, n_layers=2, n_ctx=12, d_vocab=20,
                    attn_only=True, normalization_type=None, seed=0)
    model = TransformerBridge.boot_native(TransformerBridgeConfig(**{**settings, **overrides}), device="cpu").eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def model() -> TransformerBridge:
    return _model()


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(20, (3, 10), generator=torch.Generator().manual_seed(2))


def test_per_token_loss_matches_the_models_own(model, tokens):
    with torch.no_grad():
        logits = model(tokens)
        own = model(tokens, return_type="loss", loss_per_token=True)
    ours = circuits.per_token_loss(logits, tokens)
    assert ours.shape == (3, 9)
    torch.testing.assert_close(ours, own)


@pytest.mark.parametrize("overrides", [{}, {"attn_only": False, "d_mlp": 32, "normalization_type": "LN"}],
                         ids=["attn-only, no LN", "MLPs and LayerNorm"])
def test_residual_stack_splits_the_correct_logit_exactly(overrides, tokens):
    model = _model(**overrides)
    stack = circuits.residual_stack(model, tokens)
    n = model.cfg.n_layers * model.cfg.n_heads
    assert len(stack.labels) == stack.vectors.shape[0] == 2 + n + (0 if model.cfg.attn_only else 2) + 1
    with torch.no_grad():
        logits = model(tokens)
        directions = circuits.correct_token_directions(model.W_U, tokens, centre=False)
        parts = circuits.logit_attribution(stack.vectors[:, :, :-1], directions)
        correct = logits[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
        torch.testing.assert_close(parts.sum(0) + model.b_U[tokens[:, 1:]], correct, atol=1e-5, rtol=1e-5)


def test_centred_attribution_is_the_logit_minus_the_mean_logit(model, tokens):
    stack = circuits.residual_stack(model, tokens)
    with torch.no_grad():
        logits = model(tokens)[:, :-1]
        parts = circuits.logit_attribution(stack.vectors[:, :, :-1], circuits.correct_token_directions(model.W_U, tokens))
        b_U = model.b_U - model.b_U.mean()
    relative = logits.gather(-1, tokens[:, 1:, None]).squeeze(-1) - logits.mean(-1)
    torch.testing.assert_close(parts.sum(0) + b_U[tokens[:, 1:]], relative, atol=1e-5, rtol=1e-5)


def test_head_logit_attribution_agrees_with_the_residual_stack(model, tokens):
    stack = circuits.residual_stack(model, tokens)
    _, cache = model.run_with_cache(tokens)
    z = torch.stack([cache[circuits.z_hook_name(layer)] for layer in range(2)])
    with torch.no_grad():
        per_head = circuits.head_logit_attribution(z, model.W_O, model.W_U, tokens)
        directions = circuits.correct_token_directions(model.W_U, tokens, centre=False)
        from_stack = circuits.logit_attribution(stack.vectors[2:8, :, :-1], directions)
    torch.testing.assert_close(per_head.permute(0, 3, 1, 2).flatten(0, 1), from_stack, atol=1e-5, rtol=1e-5)


def test_ablate_z_replaces_only_the_chosen_heads_in_each_copy():
    z = torch.randn(2 * 3, 4, 5, 2)
    ablate = torch.tensor([[True, False, False, False, False], [False, False, True, False, True]])
    replacement = torch.randn(4, 5, 2)
    out = circuits.ablate_z(z, ablate, replacement).unflatten(0, (2, 3))
    z = z.unflatten(0, (2, 3))
    for copy, heads in ((0, [0]), (1, [2, 4])):
        kept = [h for h in range(5) if h not in heads]
        assert torch.equal(out[copy][:, :, kept], z[copy][:, :, kept])
        assert torch.equal(out[copy][:, :, heads], replacement[:, heads].expand(3, -1, -1, -1))


def test_ablation_losses_clean_row_and_a_layer1_ablation(model, tokens):
    ablate = torch.cat([torch.zeros(1, 2, 3, dtype=torch.bool), circuits.single_head_ablations(2, 3)])
    losses = circuits.ablation_losses(model, tokens, ablate)
    assert losses.shape == (7, 3, 9)
    with torch.no_grad():
        clean = model(tokens, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(losses[0], clean)
    assert not torch.allclose(losses[1 + 3 + 1], clean)
    # Zero-ablating one head by hand (a separate forward pass) gives the batched copy's loss.
    def zero_head(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z
    with torch.no_grad():
        by_hand = model.run_with_hooks(tokens, fwd_hooks=[(circuits.z_hook_name(1), zero_head)])
    torch.testing.assert_close(losses[1 + 3 + 1], circuits.per_token_loss(by_hand, tokens))


def test_mean_ablation_with_the_batch_mean_of_a_single_row_changes_nothing(model, tokens):
    row = tokens[:1]
    replacement = circuits.mean_z(model, row)
    losses = circuits.ablation_losses(model, row, circuits.single_head_ablations(2, 3), replacement)
    with torch.no_grad():
        clean = model(row, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(losses, clean.expand_as(losses), atol=1e-5, rtol=1e-5)


def test_ablation_losses_rejects_a_mask_of_the_wrong_shape(model, tokens):
    with pytest.raises(ValueError, match="ablate must have shape"):
        circuits.ablation_losses(model, tokens, torch.zeros(2, 3, 3, dtype=torch.bool))


def test_copying_score_of_identity_and_shifted_circuits():
    assert circuits.copying_score(torch.eye(7)).item() == 1.0
    assert circuits.copying_score(torch.eye(7).roll(1, dims=-1)).item() == 0.0
    W_E = torch.randn(9, 9)
    identity_ov = circuits.ov_circuit(W_E, torch.eye(9), torch.eye(9), torch.linalg.inv(W_E))
    assert circuits.copying_score(identity_ov).item() == 1.0


def test_ov_circuit_of_the_model_matches_its_factored_matrix(model):
    with torch.no_grad():
        ours = circuits.ov_circuit(model.W_E, model.W_V, model.W_O, model.W_U)
        theirs = (model.W_E @ model.OV @ model.W_U).AB
    assert ours.shape == (2, 3, 20, 20)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_qk_circuit_gives_the_models_attention_scores(model, tokens):
    """Layer 0's scores are the QK circuit of the embeddings plus positions (plus biases)."""
    _, cache = model.run_with_cache(tokens)
    with torch.no_grad():
        x = cache["hook_embed"][0] + cache["hook_pos_embed"][0]
        scores = circuits.qk_circuit(x, model.W_Q[0], model.W_K[0], x)
        q, k = cache["blocks.0.attn.hook_q"][0], cache["blocks.0.attn.hook_k"][0]
        expected = torch.einsum("qhd,khd->hqk", q - model.b_Q[0], k - model.b_K[0])
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-4)


def test_composition_score_properties():
    generator = torch.Generator().manual_seed(3)
    A = torch.randn(1, 8, 8, generator=generator)
    projection = torch.diag(torch.tensor([1.0] * 3 + [0.0] * 5))[None]
    assert circuits.composition_scores(projection, projection).item() == pytest.approx(3**-0.5)
    orthogonal = torch.diag(torch.tensor([0.0] * 3 + [1.0] * 5))[None]
    assert circuits.composition_scores(projection, orthogonal).item() == 0.0
    assert circuits.composition_scores(A * 10, A).item() == pytest.approx(circuits.composition_scores(A, A).item())
    rank_one = torch.outer(torch.randn(8, generator=generator), torch.randn(8, generator=generator))[None]
    reader = rank_one.transpose(-1, -2) / rank_one.norm()
    assert circuits.composition_scores(rank_one, reader).item() == pytest.approx(1.0, abs=1e-6)


def test_all_composition_scores_only_pairs_earlier_with_later_heads(model):
    with torch.no_grad():
        scores = {kind: circuits.all_composition_scores(model, kind) for kind in "QKV"}
        ov, qk = circuits.ov_matrices(model), circuits.qk_matrices(model)
    for kind, s in scores.items():
        assert s.shape == (2, 3, 2, 3)
        assert (s[1, :, :, :] == 0).all() and (s[:, :, 0] == 0).all(), kind
        assert ((s[0, :, 1] > 0) & (s[0, :, 1] <= 1)).all(), kind
    k_pair = (ov[0, 2] @ qk[1, 1].T).norm() / (ov[0, 2].norm() * qk[1, 1].norm())
    assert scores["K"][0, 2, 1, 1].item() == pytest.approx(k_pair.item(), rel=1e-5)


def test_random_composition_baseline_is_about_one_over_sqrt_d_model():
    baseline = circuits.random_composition_baseline(64, 16, n=10)
    assert baseline.shape == (100,)
    assert baseline.mean().item() == pytest.approx(1 / 8, rel=0.1)


def test_in_context_learning_score_and_transition_window():
    loss = torch.linspace(4.0, 1.0, 60).expand(5, -1)
    assert in_context_learning_score(loss, early=10, late=50) == pytest.approx(-3.0 * 40 / 59, abs=1e-5)
    with pytest.raises(ValueError):
        in_context_learning_score(loss, early=50, late=10)
    steps = [0, 10, 20, 40, 80]
    assert transition_window(steps, torch.tensor([0.0, 0.05, 0.09, 0.8, 1.0])) == (20, 80)
    assert transition_window(steps, torch.tensor([0.0, 0.05, 0.09, 0.95, 1.0])) == (20, 40)
    assert transition_window(steps, torch.tensor([4.0, 2.0, 1.5, 1.0, 0.5])) == (0, 80)
    assert transition_window(steps, torch.tensor([4.0, 3.9, 0.6, 0.55, 0.5])) == (10, 20)
    with pytest.raises(ValueError):
        transition_window(steps, torch.ones(5))


@pytest.mark.skipif(len(snapshot_steps("attn-only-2l")) < 2, reason="attn-only-2l ships no training snapshots")
def test_phase_change_series_ends_at_the_shipped_model():
    """The last snapshot is the released model (stored in float16): same scores, to 0.01."""
    model = load_model("attn-only-2l", device="cpu")
    tokens = repeated_tokens(model.tokenizer, 16, 25, seed=0)
    series = phase_change_series("attn-only-2l", tokens, 25, tokens, device="cpu")
    assert series.steps == sorted(series.steps) and series.steps[0] == 0
    assert all(len(values) == len(series.steps) for values in series[1:])
    final = score_heads(model, tokens, 25)
    assert series.induction[-1].item() == pytest.approx(final.induction.max().item(), abs=0.01)
    assert series.previous_token[-1].item() == pytest.approx(final.previous_token.max().item(), abs=0.01)


# --- agreement with TransformerLens 4.3 itself (an independent oracle) --------------------------


@pytest.fixture(scope="module")
def attn_only_2l():
    return load_model("attn-only-2l", device="cpu")


@pytest.mark.parametrize("kind", ["Q", "K", "V"])
def test_composition_scores_equal_transformerlens(attn_only_2l, kind):
    with torch.no_grad():
        ours = circuits.all_composition_scores(attn_only_2l, kind)
        theirs = attn_only_2l.all_composition_scores(kind)
    assert theirs.shape == ours.shape == (2, 4, 2, 4)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_head_dla_and_head_ablation_equal_transformerlens(attn_only_2l):
    """Per-head direct logit attribution against `ActivationCache.stack_head_results` +
    `logit_attrs`, and zero-ablation of each head against TransformerLens's own head patching
    (`patching.get_act_patch_attn_head_out_all_pos` from an all-zero z cache)."""
    from transformer_lens import ActivationCache, patching

    model = attn_only_2l
    tokens = torch.randint(3, model.cfg.d_vocab, (4, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        per_head, labels = cache.stack_head_results(layer=-1, return_labels=True)
        theirs = cache.logit_attrs(per_head[:, :, :-1], tokens=tokens[:, 1:])
    stack = circuits.residual_stack(model, tokens)
    heads = [stack.labels.index(label) for label in labels]
    directions = circuits.correct_token_directions(model.W_U, tokens, centre=False)
    ours = circuits.logit_attribution(stack.vectors[heads, :, :-1], directions)
    torch.testing.assert_close(ours, theirs.detach(), atol=1e-5, rtol=0)

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    zeros = ActivationCache({k: torch.zeros_like(v) if k.endswith("hook_z") else v for k, v in cache.items()}, model)
    theirs = patching.get_act_patch_attn_head_out_all_pos(
        model, tokens, zeros, lambda logits: circuits.per_token_loss(logits, tokens).mean()
    )
    ablations = circuits.single_head_ablations(n_layers, n_heads)
    ours = circuits.ablation_losses(model, tokens, ablations).mean(dim=(1, 2)).view(n_layers, n_heads)
    torch.testing.assert_close(ours, theirs.detach(), atol=1e-5, rtol=0)


def test_head_dla_adds_up_to_the_logit_difference_on_a_layernorm_model():
    """On the shipped IOI model (LayerNorm before the unembedding): every head's direct logit
    attribution plus the other parts equals logit(IO) - logit(S) at the end of each prompt."""
    from mi_course.data import ioi

    model = load_model("ioi-3l", device="cpu")
    assert model.cfg.normalization_type == "LN"
    prompts = ioi.ioi_prompts(40, seed=3)
    rows, end = torch.arange(len(prompts)), prompts.positions["end"]
    with torch.no_grad():
        logits = model(prompts.clean)[rows, end]
    diff = logits.gather(1, prompts.io[:, None])[:, 0] - logits.gather(1, prompts.s[:, None])[:, 0]
    stack = circuits.residual_stack(model, prompts.clean)
    direction = (model.W_U[:, prompts.io] - model.W_U[:, prompts.s]).T
    parts = torch.einsum("cbm,bm->cb", stack.vectors[:, rows, end], direction)
    bias = model.b_U[prompts.io] - model.b_U[prompts.s]
    torch.testing.assert_close(parts.sum(0) + bias, diff, atol=1e-4, rtol=0)
    heads = [i for i, label in enumerate(stack.labels) if label.startswith("L") and "H" in label]
    assert len(heads) == model.cfg.n_layers * model.cfg.n_heads and parts[heads].abs().sum() > 1
