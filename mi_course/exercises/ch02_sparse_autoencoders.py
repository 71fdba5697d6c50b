"""Chapter 2 exercises: sparse autoencoders on toy data with ground truth, then on `gridwalk-3l`.

Every case is built from `seed` and is small enough to grade in milliseconds. Decoder rows in
the cases are deliberately *not* unit-norm and decoder biases are non-zero, so conventions that
only matter away from the trained, normalised case (decoder-norm weighting, subtracting b_dec)
still decide the answer.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from mi_course import sae as ref
from mi_course.grading import Case, Exercise, Mistake, register
from mi_course.sae import SAE


def _gen(seed: int, offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * seed + offset)


def _random_sae(g: torch.Generator, instances: int, d_in: int, d_sae: int) -> SAE:
    """Weights of no particular training: decoder rows of assorted norms, a non-zero b_dec."""
    W_dec = torch.randn(instances, d_sae, d_in, generator=g) * (0.5 + torch.rand(instances, d_sae, 1, generator=g))
    W_enc = torch.randn(instances, d_in, d_sae, generator=g) / d_in**0.5
    b_enc = 0.3 * torch.randn(instances, d_sae, generator=g)
    b_dec = torch.randn(instances, d_in, generator=g)
    return SAE(W_enc, b_enc, W_dec, b_dec)


# --- 1. forward pass ---------------------------------------------------------------------------------


def _forward_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, (batch, instances, d_in, d_sae) in enumerate([(7, 3, 5, 8), (1, 1, 4, 6), (20, 2, 3, 12)]):
        g = _gen(seed, offset)
        sae = _random_sae(g, instances, d_in, d_sae)
        x = torch.randn(batch, instances, d_in, generator=g) + 2.0
        label = f"batch {batch}, {instances} instances, d_in {d_in}, d_sae {d_sae}" + (" (one row)" if batch == 1 else "")
        cases.append(Case(args=(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec), label=label))
    return cases


def _forward_no_centering(x, W_enc, b_enc, W_dec, b_dec):
    latents = torch.relu(torch.einsum("bid,ids->bis", x, W_enc) + b_enc)
    return latents, torch.einsum("bis,isd->bid", latents, W_dec) + b_dec


def _forward_no_relu(x, W_enc, b_enc, W_dec, b_dec):
    latents = ref.encoder_preacts(x, W_enc, b_enc, b_dec)
    return latents, torch.einsum("bis,isd->bid", latents, W_dec) + b_dec


def _forward_no_output_bias(x, W_enc, b_enc, W_dec, b_dec):
    latents = torch.relu(ref.encoder_preacts(x, W_enc, b_enc, b_dec))
    return latents, torch.einsum("bis,isd->bid", latents, W_dec)


register(Exercise(
    id="ch02.sae_forward",
    title="The SAE forward pass, vectorised over instances",
    reference=ref.sae_forward,
    cases=_forward_cases,
    mistakes=(
        Mistake("decoder bias not subtracted", _forward_no_centering,
                "The decoder bias is the SAE's origin: subtract b_dec from x before the encoder."),
        Mistake("no ReLU", _forward_no_relu,
                "Latents are non-negative: apply a ReLU to the encoder's pre-activations."),
        Mistake("decoder bias not added back", _forward_no_output_bias,
                "The reconstruction lives where x lives: add b_dec back after the decoder."),
    ),
))


# --- 2. loss -----------------------------------------------------------------------------------------


def _loss_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, (batch, instances, d_in, d_sae) in enumerate([(9, 3, 4, 6), (1, 2, 3, 5)]):
        g = _gen(seed, offset)
        sae = _random_sae(g, instances, d_in, d_sae)
        x = torch.randn(batch, instances, d_in, generator=g)
        latents, recon = sae(x)
        l1 = torch.rand(instances, generator=g) + 0.1
        cases.append(Case(args=(x, latents, recon, sae.W_dec, l1), label=f"batch {batch}, {instances} instances, "
                          "decoder rows of assorted norms"))
    return cases


def _loss_plain_l1(x, latents, recon, W_dec, l1_coeff):
    return (x - recon).pow(2).sum(-1).mean(0) + l1_coeff * latents.abs().sum(-1).mean(0)


def _loss_mean_over_dims(x, latents, recon, W_dec, l1_coeff):
    return (x - recon).pow(2).mean(-1).mean(0) + l1_coeff * (latents * W_dec.norm(dim=-1)).sum(-1).mean(0)


def _loss_sum_over_batch(x, latents, recon, W_dec, l1_coeff):
    return (x - recon).pow(2).sum(-1).sum(0) + l1_coeff * (latents * W_dec.norm(dim=-1)).sum(-1).sum(0)


register(Exercise(
    id="ch02.sae_loss",
    title="Reconstruction + L1 weighted by decoder norms",
    reference=ref.sae_loss,
    cases=_loss_cases,
    mistakes=(
        Mistake("L1 without decoder norms", _loss_plain_l1,
                "Weight each latent's |f_j| by the norm of its decoder row: otherwise the SAE can "
                "shrink f_j and grow d_j and get sparsity for free."),
        Mistake("squared error averaged over dimensions", _loss_mean_over_dims,
                "The reconstruction term is the squared error *summed* over d_in (||x - x_hat||^2), "
                "then averaged over the batch."),
        Mistake("summed over the batch", _loss_sum_over_batch,
                "Average both terms over the batch, so the loss does not grow with the batch size."),
    ),
))


# --- 3. metrics ---------------------------------------------------------------------------------------


def _metric_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, (batch, instances, d_in, shift) in enumerate([(50, 3, 6, 4.0), (8, 1, 2, 0.5), (30, 2, 5, 10.0)]):
        g = _gen(seed, offset)
        x = torch.randn(batch, instances, d_in, generator=g) + shift
        recon = x + 0.5 * torch.randn(batch, instances, d_in, generator=g) * torch.rand(instances, 1, generator=g)
        cases.append(Case(args=(x, recon), label=f"batch {batch}, {instances} instances, data centred at {shift}"))
    return cases


def _ev_about_zero(x, recon):
    return 1 - (x - recon).pow(2).sum((0, -1)) / x.pow(2).sum((0, -1))


def _ev_per_row(x, recon):
    return (1 - (x - recon).pow(2).sum(-1) / (x - x.mean(0)).pow(2).sum(-1)).mean(0)


register(Exercise(
    id="ch02.explained_variance",
    title="Fraction of variance explained (SAELens's definition)",
    reference=ref.explained_variance,
    cases=_metric_cases,
    mistakes=(
        Mistake("variance about zero", _ev_about_zero,
                "Measure the variance about the *mean* input, not about zero: data far from the origin "
                "would make any SAE that outputs the mean look perfect."),
        Mistake("ratio per input", _ev_per_row,
                "Sum the squared errors and the squared deviations over the whole batch first, then "
                "take one ratio; a ratio per input is dominated by inputs near the mean."),
    ),
))


def _sparsity_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, (batch, instances, d_sae) in enumerate([(40, 3, 10), (1, 2, 6), (25, 1, 16)]):
        g = _gen(seed, offset)
        on = torch.rand(batch, instances, d_sae, generator=g) < torch.rand(instances, d_sae, generator=g) * 0.6
        latents = torch.where(on, torch.rand(batch, instances, d_sae, generator=g) * 3, 0.0)
        latents[..., 0] = 0.0  # latent 0 is dead in every case
        label = f"batch {batch}, {instances} instances, {d_sae} latents" + (" (one row)" if batch == 1 else "")
        cases.append(Case(args=(latents,), label=label))
    return cases


def _l0_as_fraction(latents):
    l0, dead = ref.l0_and_dead(latents)
    return l0 / latents.shape[-1], dead


def _l0_as_l1(latents):
    return latents.abs().sum(-1).mean(0), ref.l0_and_dead(latents)[1]


def _dead_per_input(latents):
    return ref.l0_and_dead(latents)[0], (latents == 0).float().mean((0, -1))


register(Exercise(
    id="ch02.l0_and_dead",
    title="L0 and the fraction of dead latents",
    reference=ref.l0_and_dead,
    cases=_sparsity_cases,
    mistakes=(
        Mistake("L0 as a fraction", _l0_as_fraction,
                "L0 is a count: the mean *number* of non-zero latents per input, not a fraction of d_sae."),
        Mistake("L0 as L1", _l0_as_l1,
                "Count the non-zero latents; do not add up their values (that is the L1 norm)."),
        Mistake("dead counted per input", _dead_per_input,
                "A latent is dead when it is zero on *every* input of the batch; the fraction of zero "
                "entries is something else (1 - density)."),
    ),
))


# --- 4. recovering known features ---------------------------------------------------------------------


def _recovery_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, (instances, d_sae, n_features, d_in) in enumerate([(3, 12, 8, 6), (1, 5, 5, 3), (2, 20, 6, 10)]):
        g = _gen(seed, offset)
        features = ref.random_unit_features(n_features, d_in, g)
        # Some latents are noisy, scaled copies of features, some point the opposite way.
        W_dec = torch.randn(instances, d_sae, d_in, generator=g)
        copies = min(d_sae, n_features) - 1
        W_dec[:, :copies] = 3 * features[:copies] + 0.4 * torch.randn(instances, copies, d_in, generator=g)
        W_dec[:, -1] = -2 * features[-1]
        cases.append(Case(args=(W_dec, features), label=f"{instances} instances, {d_sae} latents, {n_features} "
                          f"features in R^{d_in}; one latent points opposite a feature"))
    return cases


def _mmcs_wrong_axis(W_dec, features):
    return ref.decoder_cosines(W_dec, features).max(-1).values.mean(-1)


def _mmcs_unnormalised(W_dec, features):
    return (W_dec @ features.T).max(-2).values.mean(-1)


def _mmcs_abs(W_dec, features):
    return ref.decoder_cosines(W_dec, features).abs().max(-2).values.mean(-1)


register(Exercise(
    id="ch02.mmcs",
    title="Mean max cosine similarity to the true features",
    reference=ref.mmcs,
    cases=_recovery_cases,
    mistakes=(
        Mistake("maximum over features", _mmcs_wrong_axis,
                "For each *true feature*, take the best latent, then average over features; the other "
                "way round scores how many latents look like some feature."),
        Mistake("no normalisation", _mmcs_unnormalised,
                "Cosine similarity: divide decoder rows and features by their norms first."),
        Mistake("absolute cosine", _mmcs_abs,
                "Latents are non-negative, so a decoder row pointing opposite a feature cannot "
                "represent it: keep the sign."),
    ),
))


def _match_cases(seed: int = 0) -> list[Case]:
    g = _gen(seed, 0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    basis = q.T                                   # orthonormal rows, randomly rotated
    features = basis[:4]
    # Latent 0 is the closest latent to both features 0 and 1 (cosines 0.74 and 0.67); latents 1
    # and 2 are each a little further (0.64) from one of them. Greedy gives latent 0 to both.
    W_dec = torch.stack([
        basis[0] + 0.9 * basis[1],
        basis[0] + 1.2 * basis[4],
        basis[1] + 1.2 * basis[5],
        basis[2] + 0.2 * basis[4],
        basis[3] + 0.2 * basis[5],
        basis[4] - basis[5],
    ])
    cases = [Case(args=(W_dec, features), label="6 latents, 4 features; one latent is closest to two features")]
    g = _gen(seed, 1)
    features = ref.random_unit_features(5, 5, g)
    cases.append(Case(args=(features[torch.randperm(5, generator=g)] * 2, features),
                      label="5 latents, 5 features: a permutation (square)"))
    g = _gen(seed, 2)
    cases.append(Case(args=(torch.randn(9, 4, generator=g), ref.random_unit_features(3, 4, g)),
                      label="9 random latents, 3 features"))
    return cases


def _match_greedy(W_dec, features):
    cos = ref.decoder_cosines(W_dec, features).T
    best = cos.max(-1)
    return best.values, best.indices


def _match_minimised(W_dec, features):
    cos = ref.decoder_cosines(W_dec, features).T.double()
    rows, cols = linear_sum_assignment(cos.numpy())
    latent = torch.as_tensor(cols[rows.argsort()], dtype=torch.long)
    return cos[torch.arange(len(features)), latent].float(), latent


register(Exercise(
    id="ch02.hungarian_match",
    title="One-to-one (Hungarian) match of features to latents",
    reference=ref.hungarian_match,
    cases=_match_cases,
    mistakes=(
        Mistake("greedy, not one-to-one", _match_greedy,
                "Each latent may be matched to one feature only: solve the assignment problem "
                "(scipy.optimize.linear_sum_assignment) instead of taking each feature's best latent."),
        Mistake("minimised the cosine", _match_minimised,
                "linear_sum_assignment minimises by default: ask it to maximise the cosine "
                "(maximize=True, or negate the matrix)."),
    ),
))


# --- 5. resampling dead latents --------------------------------------------------------------------------


def _resample_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, (batch, instances, d_in, d_sae) in enumerate([(32, 2, 5, 8), (12, 1, 3, 4)]):
        g = _gen(seed, offset)
        sae = _random_sae(g, instances, d_in, d_sae)
        dead = torch.rand(instances, d_sae, generator=g) < 0.4
        dead[0, 0], dead[0, 1] = True, False
        if instances > 1:
            dead[-1] = False  # an instance with nothing to resample
        x = torch.randn(batch, instances, d_in, generator=g)
        cases.append(Case(args=(sae, dead, x), kwargs={"seed": seed + offset},
                          label=f"batch {batch}, {instances} instances, {int(dead.sum())} dead of {d_sae * instances}"))
    return cases


def _validate_resample(case: Case, out: object) -> str | None:
    sae, dead, x = case.args
    if not isinstance(out, SAE) or out.shape != sae.shape:
        return f"return an SAE of the same shape {sae.shape} (use dataclasses.replace)"
    live = ~dead
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        if not torch.isfinite(getattr(out, name)).all():
            return f"{name} holds NaN or inf"
    if not (torch.equal(out.W_dec[live], sae.W_dec[live]) and torch.equal(out.b_enc[live], sae.b_enc[live])
            and torch.equal(out.W_enc.transpose(1, 2)[live], sae.W_enc.transpose(1, 2)[live])
            and torch.equal(out.b_dec, sae.b_dec)):
        return "a live latent (or b_dec) changed: resample the dead latents only"
    new_rows = out.W_dec[dead]
    if not torch.allclose(new_rows.norm(dim=-1), torch.ones(len(new_rows)), atol=1e-4):
        return "a resampled decoder row is not a unit vector"
    centred = ref._unit(x.transpose(0, 1) - sae.b_dec[:, None])                # [inst, batch, d_in]
    aligned = torch.einsum("isd,ibd->isb", ref._unit(out.W_dec), centred).max(-1).values
    if (aligned[dead] < 1 - 1e-4).any():
        return "a resampled decoder row is not the direction of one of the inputs minus b_dec"
    if (out.b_enc[dead] != 0).any():
        return "a resampled latent's encoder bias is not zero"
    enc = out.W_enc.transpose(1, 2)[dead]
    if (torch.nn.functional.cosine_similarity(enc, new_rows, dim=-1) < 1 - 1e-4).any():
        return "a resampled latent's encoder column does not point along its new decoder row"
    expected = ref.resample_dead(sae, dead, x, seed=0).W_enc.transpose(1, 2)[dead].norm(dim=-1)
    if not torch.allclose(enc.norm(dim=-1), expected, rtol=1e-3):
        return "a resampled encoder column has the wrong norm (0.2 x the mean norm of the live encoder columns)"
    return None


def _resample_all(sae: SAE, dead: Tensor, x: Tensor, *, seed: int) -> SAE:
    return ref.resample_dead(sae, torch.ones_like(dead), x, seed=seed)


def _resample_unnormalised(sae: SAE, dead: Tensor, x: Tensor, *, seed: int) -> SAE:
    out = ref.resample_dead(sae, dead, x, seed=seed)
    scale = torch.where(dead, (x - sae.b_dec).norm(dim=-1).mean(0)[:, None] + 1, 1.0)[..., None]
    return SAE(out.W_enc, out.b_enc, out.W_dec * scale, out.b_dec)


def _resample_encoder_kept(sae: SAE, dead: Tensor, x: Tensor, *, seed: int) -> SAE:
    out = ref.resample_dead(sae, dead, x, seed=seed)
    return SAE(sae.W_enc, sae.b_enc, out.W_dec, out.b_dec)


register(Exercise(
    id="ch02.resample_dead",
    title="Resample dead latents towards badly reconstructed inputs",
    reference=ref.resample_dead,
    cases=_resample_cases,
    validate=_validate_resample,
    seed_arg="seed",
    handed_out=("mi_course.sae.encoder_preacts",),  # SAE.encode, which the answer may call, uses it
    mistakes=(
        Mistake("live latents resampled too", _resample_all,
                "Only the latents marked dead get new directions; the live ones are doing a job."),
        Mistake("decoder row not normalised", _resample_unnormalised,
                "Normalise the chosen input (minus b_dec) to a unit vector before using it as a decoder row."),
        Mistake("encoder left as it was", _resample_encoder_kept,
                "Reset the dead latent's encoder too: its column along the new direction (scaled down) "
                "and its encoder bias to zero, or it stays dead."),
    ),
))


# --- 6. TopK ---------------------------------------------------------------------------------------


def _topk_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, (batch, instances, d_sae, k) in enumerate([(6, 2, 10, 3), (1, 1, 5, 1), (4, 3, 8, 8)]):
        g = _gen(seed, offset)
        pre = torch.randn(batch, instances, d_sae, generator=g)
        pre[..., 0] = -5.0  # a large negative pre-activation: never active
        label = f"batch {batch}, {instances} instances, {d_sae} latents, k={k}" + (" (k = d_sae)" if k == d_sae else "")
        cases.append(Case(args=(pre, k), label=label))
    return cases


def _topk_no_relu(preacts, k):
    values, indices = preacts.topk(k, dim=-1)
    return torch.zeros_like(preacts).scatter(-1, indices, values)


def _topk_by_magnitude(preacts, k):
    _, indices = preacts.abs().topk(k, dim=-1)
    return torch.zeros_like(preacts).scatter(-1, indices, torch.relu(preacts.gather(-1, indices)))


def _topk_over_batch(preacts, k):
    values, indices = preacts.topk(min(k, preacts.shape[0]), dim=0)
    return torch.zeros_like(preacts).scatter(0, indices, torch.relu(values))


register(Exercise(
    id="ch02.topk_latents",
    title="TopK activation (Gao et al. 2024)",
    reference=ref.topk_latents,
    cases=_topk_cases,
    mistakes=(
        Mistake("no ReLU", _topk_no_relu,
                "When fewer than k pre-activations are positive, the kept negative ones must become 0."),
        Mistake("largest magnitude", _topk_by_magnitude,
                "Keep the k *largest* pre-activations, not the largest in absolute value."),
        Mistake("top k over the batch", _topk_over_batch,
                "Each input keeps its own k latents: take the top k along the latent dimension."),
    ),
))


# --- 7. on the transformer: loss recovered, detection, removing a latent -----------------------------


def _recovered_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, n in enumerate([40, 1, 15]):
        g = _gen(seed, offset)
        clean = torch.rand(n, generator=g) + 0.5
        ablated = clean + torch.rand(n, generator=g) * 2
        ablated[0] = clean[0] + 1e-3  # a position where ablation barely matters
        spliced = clean + (ablated - clean) * torch.rand(n, generator=g) * 0.5
        cases.append(Case(args=(clean, spliced, ablated), label=f"{n} positions" + (" (one)" if n == 1 else "")))
    return cases


def _recovered_per_position(clean, spliced, ablated):
    return ((ablated - spliced) / (ablated - clean)).mean().item()


def _recovered_inverted(clean, spliced, ablated):
    return ((spliced.mean() - clean.mean()) / (ablated.mean() - clean.mean())).item()


register(Exercise(
    id="ch02.loss_recovered",
    title="CE loss recovered when the SAE is spliced in",
    reference=ref.loss_recovered,
    cases=_recovered_cases,
    mistakes=(
        Mistake("ratio per position", _recovered_per_position,
                "Average the losses over positions first and take one ratio: where ablating barely "
                "changes the loss, a per-position ratio explodes."),
        Mistake("fraction lost", _recovered_inverted,
                "That is the fraction of the loss gap the SAE *loses*: 1 should mean the SAE costs nothing."),
    ),
))


def _f1_cases(seed: int = 0) -> list[Case]:
    g = _gen(seed, 0)
    n = 60
    labels = torch.rand(n, 3, generator=g) < torch.tensor([0.2, 0.5, 0.05])
    sparse = torch.where(labels[:, 0] & (torch.rand(n, generator=g) < 0.8), torch.rand(n, generator=g) + 1, 0.0)
    dense = labels[:, 1].float() + torch.randn(n, generator=g)
    rounded = (torch.rand(n, generator=g) * 4).floor()  # many ties
    cases = [Case(args=(torch.stack([sparse, dense, rounded], 1), labels),
                  label="60 inputs, 3 units (sparse, dense, ties), 3 variables")]
    g = _gen(seed, 1)
    labels = torch.zeros(5, 1, dtype=torch.bool)
    labels[1] = True
    cases.append(Case(args=(torch.tensor([[0.0], [2.0], [0.0], [2.0], [1.0]]), labels),
                      label="5 inputs, one unit with tied values, one variable"))
    return cases


def _f1_ties_ignored(acts, labels):
    values, order = acts.T.sort(-1, descending=True)
    predicted = torch.arange(1, acts.shape[0] + 1, dtype=torch.float32)
    scores = []
    for column in labels.T.float():
        scores.append((2 * column[order].cumsum(-1) / (predicted + column.sum())).max(-1).values)
    return torch.stack(scores, -1)


def _f1_at_zero(acts, labels):
    fired = (acts > 0).float()
    true_positives = fired.T @ labels.float()
    return 2 * true_positives / (fired.sum(0)[:, None] + labels.float().sum(0))


register(Exercise(
    id="ch02.best_f1",
    title="Each unit as a detector of each variable: best F1",
    reference=ref.best_f1,
    cases=_f1_cases,
    mistakes=(
        Mistake("ties split", _f1_ties_ignored,
                "A threshold cannot separate equal activations: only cut after the last of a group of "
                "tied values."),
        Mistake("threshold at zero only", _f1_at_zero,
                "Try every threshold the unit's values allow, not only 'fires at all'."),
    ),
))


def _remove_cases(seed: int = 0) -> list[Case]:
    cases = []
    for offset, (n, d_in, d_sae, latent) in enumerate([(10, 5, 8, 2), (1, 3, 4, 0), (6, 4, 12, 11)]):
        g = _gen(seed, offset)
        sae = _random_sae(g, 1, d_in, d_sae)
        x = torch.randn(n, d_in, generator=g) + sae.b_dec[0]
        cases.append(Case(args=(x, sae, latent), label=f"{n} inputs, d_in {d_in}, {d_sae} latents, latent {latent}"))
    return cases


def _remove_without_error(x, sae, latent):
    latents, recon = sae(x[:, None])
    return recon[:, 0] - latents[:, 0, latent, None] * sae.W_dec[0, latent]


def _remove_uncentred(x, sae, latent):
    latents = torch.relu(x @ sae.W_enc[0] + sae.b_enc[0])
    return x - latents[:, latent, None] * sae.W_dec[0, latent]


def _remove_unit_direction(x, sae, latent):
    latents = sae.encode(x[:, None])[:, 0]
    direction = sae.W_dec[0, latent] / sae.W_dec[0, latent].norm()
    return x - latents[:, latent, None] * direction


register(Exercise(
    id="ch02.remove_latent",
    title="Remove one latent, keep the SAE's error term",
    reference=ref.remove_latent,
    cases=_remove_cases,
    handed_out=("mi_course.sae.encoder_preacts",),  # SAE.encode, which the answer may call, uses it
    mistakes=(
        Mistake("error term dropped", _remove_without_error,
                "Start from x, not from the reconstruction: replacing x by x_hat also removes the SAE's "
                "error term, a much larger change than the one latent."),
        Mistake("decoder bias not subtracted", _remove_uncentred,
                "Compute f_i(x) with the SAE's own encoder, which subtracts b_dec first."),
        Mistake("unit direction", _remove_unit_direction,
                "The latent writes f_i(x) * d_i with d_i its decoder row as stored; do not rescale d_i."),
    ),
))


# --- optional: a dictionary that fools MMCS -------------------------------------------------------


MAX_FEATURE_COSINE, MIN_MMCS, MAX_MATCH = 0.75, 0.9, 0.6


def _fool_cases(seed: int = 0) -> list[Case]:
    sizes = [(4, 6, 6), (6, 8, 10), (2, 2, 3)]
    g = _gen(seed, 0)
    start = int(torch.randint(len(sizes), (1,), generator=g))
    return [Case(args=sizes[(start + i) % len(sizes)], label=f"n_features {n}, d_in {d}, d_sae {s}")
            for i, (n, d, s) in enumerate(sizes)]


def _validate_fool(case: Case, out: object) -> str | None:
    n_features, d_in, d_sae = case.args
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
        return "return a tuple (W_dec, features) of two tensors"
    W_dec, features = (t.float() for t in out)
    if W_dec.shape != (d_sae, d_in) or features.shape != (n_features, d_in):
        return f"W_dec must have shape ({d_sae}, {d_in}) and features ({n_features}, {d_in})"
    if not (torch.isfinite(W_dec).all() and torch.isfinite(features).all()) or (W_dec.norm(dim=-1) == 0).any():
        return "W_dec and features must be finite, with no zero decoder row"
    if not torch.allclose(features.norm(dim=-1), torch.ones(n_features), atol=1e-4):
        return "the features must be unit vectors"
    cos = (features @ features.T).fill_diagonal_(-1)
    if cos.max() > MAX_FEATURE_COSINE + 1e-5:
        return f"two features are near copies (cosine {cos.max():.2f} > {MAX_FEATURE_COSINE}): they must be distinct"
    score = ref.mmcs(W_dec[None], features).item()
    if score < MIN_MMCS:
        return f"MMCS is {score:.3f}, below {MIN_MMCS}: the dictionary must look good to MMCS"
    matched = ref.hungarian_match(W_dec, features)[0].mean().item()
    if matched > MAX_MATCH:
        return f"the one-to-one match is also high ({matched:.3f} > {MAX_MATCH}): MMCS is not fooled"
    return None


def _fool_copies(n_features, d_in, d_sae):
    features = torch.eye(d_in)[:1].repeat(n_features, 1)
    return torch.eye(d_in)[:1].repeat(d_sae, 1), features


def _fool_honest(n_features, d_in, d_sae):
    features = torch.eye(d_in)[:n_features]
    return torch.cat([features, -torch.eye(d_in)[torch.arange(d_sae - n_features) % d_in]]), features


register(Exercise(
    id="ch02.fool_mmcs",
    title="Optional: a dictionary with high MMCS that has not found the features",
    reference=ref.mmcs_counterexample,
    cases=_fool_cases,
    validate=_validate_fool,
    mistakes=(
        Mistake("features are copies", _fool_copies,
                "Copies of one feature make MMCS trivial: the features must be distinct directions."),
        Mistake("the dictionary found the features", _fool_honest,
                "Here every feature has a latent of its own, so the one-to-one match is high too; "
                "let one latent serve two features."),
    ),
))
