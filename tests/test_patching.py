"""The batched patching module: equal to `transformer_lens.patching` on the same model and prompts
(to 1e-5), both directions, chunking, causal tracing and attribution patching on a small model,
and a toy where the first-order estimate is exact."""

import pytest
import torch

from mi_course import load_model
from mi_course import patching as P
from mi_course.data.repeated_tokens import repeated_tokens

SEG, BATCH = 5, 6


@pytest.fixture(scope="module")
def model():
    return load_model("attn-only-2l", device="cpu")


@pytest.fixture(scope="module")
def pair(model):
    """An induction pair: the corrupted rows have a different first copy, so the second copy's
    tokens cannot be predicted from it. Metric: logit difference of the clean vs corrupted
    continuation at the second-to-last position."""
    clean = repeated_tokens(model.tokenizer, BATCH, SEG, seed=0)
    corrupt = clean.clone()
    corrupt[:, 1 : 1 + SEG] = repeated_tokens(model.tokenizer, BATCH, SEG, seed=1)[:, 1 : 1 + SEG]
    position = torch.full((BATCH,), clean.shape[1] - 2)

    def metric(logits):
        return P.logit_diff(logits, position, clean[:, -1], corrupt[:, SEG])

    return clean, corrupt, metric


def _tl(function, model, clean, corrupt, metric):
    _, cache = model.run_with_cache(clean)
    return function(model, corrupt, cache, lambda logits: metric(logits[None])[0])


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda m, c, x, f: P.resid_by_pos(m, c, x, f), "get_act_patch_resid_pre"),
        (lambda m, c, x, f: P.resid_by_pos(m, c, x, f, stage="attn_out"), "get_act_patch_attn_out"),
        (lambda m, c, x, f: P.every_head(m, c, x, f), "get_act_patch_attn_head_out_all_pos"),
        (lambda m, c, x, f: P.every_head(m, c, x, f, activation="v"), "get_act_patch_attn_head_v_all_pos"),
        (lambda m, c, x, f: P.every_head(m, c, x, f, activation="pattern"), "get_act_patch_attn_head_pattern_all_pos"),
        (lambda m, c, x, f: P.every_head_by_pos(m, c, x, f, max_rows=50), "get_act_patch_attn_head_out_by_pos"),
    ],
)
def test_batched_sweeps_equal_transformer_lens(model, pair, ours, theirs, monkeypatch):
    import transformer_lens.patching as tlp

    monkeypatch.setenv("TQDM_DISABLE", "1")
    clean, corrupt, metric = pair
    expected = _tl(getattr(tlp, theirs), model, clean, corrupt, metric)
    got = ours(model, clean, corrupt, metric)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert expected.std() > 1e-3, "the comparison must not be between constants"


def test_noising_is_denoising_with_the_roles_swapped(model, pair):
    clean, corrupt, metric = pair
    noising = P.every_head(model, clean, corrupt, metric, direction="noising")
    swapped = P.every_head(model, corrupt, clean, metric, direction="denoising")
    torch.testing.assert_close(noising, swapped)
    with torch.no_grad():
        clean_value = metric(model(clean)[None])[0]
    # Patching the whole residual stream at the first layer replays the other run entirely.
    full = P.patch_sweep(
        model, corrupt, P.cache_activations(model, clean, ["blocks.0.hook_resid_pre"]),
        {"blocks.0.hook_resid_pre": torch.ones(1, 1, 1, dtype=torch.bool)}, metric,
    )
    torch.testing.assert_close(full[0], clean_value, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="direction"):
        P.every_head(model, clean, corrupt, metric, direction="both")


def test_chunking_does_not_change_the_result(model, pair):
    clean, corrupt, metric = pair
    whole = P.resid_by_pos(model, clean, corrupt, metric)
    chunked = P.resid_by_pos(model, clean, corrupt, metric, max_rows=1)  # one variant per pass
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=0)


def test_attribution_tracks_head_patching(model, pair):
    """The first-order estimate of every head's denoising effect from one backward pass."""
    clean, corrupt, metric = pair
    estimate = P.attribution_every_head(model, clean, corrupt, metric)
    with torch.no_grad():
        corrupt_value = metric(model(corrupt)[None])[0]
    actual = P.every_head(model, clean, corrupt, metric) - corrupt_value
    assert estimate.shape == actual.shape == (2, 4)
    correlation = torch.corrcoef(torch.stack([estimate.flatten(), actual.flatten()]))[0, 1]
    assert correlation > 0.5, f"attribution and patching disagree completely (r = {correlation:.2f})"


def test_causal_trace_restoring_everything_at_the_last_layer_recovers_the_clean_run(model, pair):
    clean, _, metric = pair
    subject = torch.zeros_like(clean, dtype=torch.bool)
    subject[:, 1 : 1 + SEG] = True
    std = P.subject_embedding_std(model, clean, subject)
    noise = P.subject_noise(model, subject, std, samples=2)
    assert noise.shape == (2 * BATCH, clean.shape[1], model.cfg.d_model)
    assert (noise[:, 0] == 0).all() and noise[:, 1:1 + SEG].std() == pytest.approx(3 * std, rel=0.1)
    traced = P.causal_trace(model, clean, noise, metric)
    assert set(traced) == {"hidden", "attn"}, "an attention-only model has no MLP outputs to restore"
    assert traced["hidden"].shape == (2, clean.shape[1])
    with torch.no_grad():
        clean_value = metric(model(clean)[None])[0]
    # The final position's block output at the last layer is all the metric reads.
    assert traced["hidden"][-1, -2].item() == pytest.approx(clean_value.item(), abs=1e-4)


def test_sublayer_sweep_and_tracing_on_the_fact_recall_model(monkeypatch):
    """On a model with MLPs: the three sublayer sweeps equal `get_act_patch_block_every`, and
    restoring the final block output at the last layer undoes the noise completely."""
    import transformer_lens.patching as tlp

    from mi_course.data import facts

    monkeypatch.setenv("TQDM_DISABLE", "1")
    recall_model = load_model("facts-4l", device="cpu")
    clean, corrupt = facts.swap_pairs(6, seed=1)

    def metric(logits):
        return P.logit_diff(logits, clean.final, clean.answer, corrupt.answer)

    expected = _tl(tlp.get_act_patch_block_every, recall_model, clean.tokens, corrupt.tokens, metric)
    got = P.every_sublayer(recall_model, clean.tokens, corrupt.tokens, metric)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

    kb = [fact for fact in facts.knowledge_base() if fact.relation == "city" and len(fact.subject) == 2][:6]
    aligned = facts.make_prompts(kb, ["the town where S lives is"] * len(kb))

    def prob(logits):
        return P.answer_prob(logits, aligned.final, aligned.answer)

    std = P.subject_embedding_std(recall_model, aligned.tokens, aligned.subject_mask)
    noise = P.subject_noise(recall_model, aligned.subject_mask, std, samples=2)
    traced = P.causal_trace(recall_model, aligned.tokens, noise, prob)
    assert set(traced) == {"hidden", "mlp", "attn"}
    with torch.no_grad():
        clean_prob = prob(recall_model(aligned.tokens)[None])[0]
    final = int(aligned.final[0])
    assert traced["hidden"][-1, final].item() == pytest.approx(clean_prob.item(), abs=1e-4)
    noised = traced["hidden"][0, 0]  # <bos> is never noised: restoring it changes nothing
    assert traced["hidden"][-1, final] - noised > 0.5, "restoring the last state undoes the noise"


# --- the lean forward pass behind the sweeps ---------------------------------------------------

SITES = ("hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern", "attn.hook_z",
         "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")


@pytest.mark.parametrize("name", ["attn-only-2l", "facts-4l"])
def test_lean_forward_computes_what_the_bridge_computes(name):
    """Every activation a sweep can patch, and the logits, as the bridge computes them; resuming
    inside a block from the bridge's own activations gives the same logits."""
    from mi_course.patching_forward import STATE_AT, STATE_HOOKS, LeanForward

    model = load_model(name, device="cpu")
    tokens = torch.randint(3, model.cfg.d_vocab, (4, 9), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)
    names = [f"blocks.{layer}.{site}" for layer in range(model.cfg.n_layers) for site in SITES if site in
             {key.split(".", 2)[2] for key in cache.keys() if key.startswith(f"blocks.{layer}.")}]
    lean = LeanForward.build(model, names)
    assert lean is not None
    seen = {}
    hooks = {hook: (lambda hook: lambda act: seen.setdefault(hook, act))(hook) for hook in names}
    with torch.no_grad():
        ours = lean.run({"resid_pre": lean.embed(tokens, hooks)}, 0, 0, hooks)
    torch.testing.assert_close(ours, logits, atol=1e-6, rtol=0)
    for hook in names:
        torch.testing.assert_close(seen[hook], cache[hook], atol=1e-6, rtol=0, msg=hook)
    keep = torch.tensor([2, 8])
    for stage, keys in STATE_AT.items():
        if all(f"blocks.1.{STATE_HOOKS[key]}" in names for key in keys):
            state = {key: cache[f"blocks.1.{STATE_HOOKS[key]}"] for key in keys}
            with torch.no_grad():
                resumed = lean.run(state, 1, stage, {}, keep=keep)
            torch.testing.assert_close(resumed[:, keep], logits[:, keep], atol=1e-5, rtol=1e-6)
            assert (resumed[:, :2] == 0).all(), "positions the metric does not read are not computed"
            with torch.no_grad():
                one = lean.run(state, 1, stage, {}, keep=keep[1:])
            torch.testing.assert_close(one[:, 8], logits[:, 8], atol=1e-5, rtol=1e-6)


def test_fact_model_head_and_mid_sweeps_equal_transformer_lens(monkeypatch):
    """LayerNorm, MLPs and runs that resume after a block's attention: every head (z), every head
    by position and the residual stream between attention and MLP, against TransformerLens."""
    import transformer_lens.patching as tlp

    from mi_course.data import facts

    monkeypatch.setenv("TQDM_DISABLE", "1")
    recall_model = load_model("facts-4l", device="cpu")
    clean, corrupt = facts.swap_pairs(4, seed=2)

    def metric(logits):
        return P.logit_diff(logits, clean.final, clean.answer, corrupt.answer)

    for ours, theirs in [
        (lambda: P.every_head(recall_model, clean.tokens, corrupt.tokens, metric),
         tlp.get_act_patch_attn_head_out_all_pos),
        (lambda: P.every_head_by_pos(recall_model, clean.tokens, corrupt.tokens, metric, max_rows=40),
         tlp.get_act_patch_attn_head_out_by_pos),
        (lambda: P.resid_by_pos(recall_model, clean.tokens, corrupt.tokens, metric, stage="resid_mid"),
         tlp.get_act_patch_resid_mid),
    ]:
        expected = _tl(theirs, recall_model, clean.tokens, corrupt.tokens, metric)
        torch.testing.assert_close(ours(), expected, atol=1e-5, rtol=0)


def test_sweeps_the_lean_pass_cannot_run_use_the_bridge(model, pair):
    """A hook the lean pass does not provide, a metric that reads every position and one without
    gradients: the sweep still equals one `run_with_hooks` per variant."""
    clean, corrupt, _ = pair

    def mean_logit(logits):
        return logits[..., 7].mean((-1, -2))

    def accuracy(logits):
        return (logits.argmax(-1) == clean).float().mean((-1, -2))

    name = "blocks.1.attn.q.hook_in"  # the queries' input: here the residual stream, for queries only
    source = P.cache_activations(model, clean, [name])
    n_pos = clean.shape[1]
    masks = {name: torch.eye(n_pos, dtype=torch.bool)[:, :, None]}
    for metric in (mean_logit, accuracy):
        got = P.patch_sweep(model, corrupt, source, masks, metric)
        for variant in range(n_pos):
            def patch(act, hook, variant=variant):
                act = act.clone()  # not in place: the same tensor feeds the keys and values
                act[:, variant] = source[name][:, variant]
                return act

            with torch.no_grad():
                logits = model.run_with_hooks(corrupt, fwd_hooks=[(name, patch)])
            assert got[variant] == pytest.approx(metric(logits[None])[0].item(), abs=1e-5)
        assert metric is accuracy or got.std() > 1e-3, "the comparison must not be between constants"
    lean_names = ["blocks.1.hook_resid_pre"]
    lean_source = P.cache_activations(model, clean, lean_names)
    lean_masks = {lean_names[0]: torch.eye(n_pos, dtype=torch.bool)[:, :, None]}
    by_lean = P.patch_sweep(model, corrupt, lean_source, lean_masks, accuracy)
    for variant in range(n_pos):
        def patch_resid(act, hook, variant=variant):
            act[:, variant] = lean_source[lean_names[0]][:, variant]
            return act

        with torch.no_grad():
            logits = model.run_with_hooks(corrupt, fwd_hooks=[(lean_names[0], patch_resid)])
        assert by_lean[variant] == pytest.approx(accuracy(logits[None])[0].item(), abs=1e-6)
