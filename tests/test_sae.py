"""The SAE reference module on toy data with ground truth: the forward pass and loss follow their
definitions, metrics use SAELens's conventions, training recovers known features at a sensible
L1 (and not without one), TopK keeps k latents per instance, resampling touches only dead
latents, and the detector score handles ties."""

import pytest
import torch

from mi_course import sae as S


@pytest.fixture(scope="module")
def toy():
    features = S.random_unit_features(12, 8, torch.Generator().manual_seed(0))
    rng = torch.Generator().manual_seed(1)
    return features, lambda instances: (lambda: S.toy_activations(features, 256, 1 / 12, rng, instances))


def test_forward_subtracts_decoder_bias_and_reconstructs():
    sae = S.init_sae(2, 4, 6, torch.Generator().manual_seed(0), b_dec=torch.randn(2, 4))
    x = torch.randn(5, 2, 4)
    latents, recon = S.sae_forward(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec)
    expected = torch.relu(torch.einsum("bid,ids->bis", x - sae.b_dec, sae.W_enc) + sae.b_enc)
    assert torch.allclose(latents, expected) and (latents >= 0).all()
    assert torch.allclose(recon, torch.einsum("bis,isd->bid", latents, sae.W_dec) + sae.b_dec)
    assert torch.equal(sae(x)[0], latents)


def test_loss_weights_l1_by_decoder_norms():
    sae = S.init_sae(1, 3, 4, torch.Generator().manual_seed(0))
    x = torch.randn(6, 1, 3)
    latents, recon = sae(x)
    doubled = S.sae_loss(x, latents / 2, recon, sae.W_dec * 2, torch.tensor([1.0]))
    assert torch.allclose(doubled, S.sae_loss(x, latents, recon, sae.W_dec, torch.tensor([1.0]))), \
        "halving f and doubling d must cost the same"


def test_explained_variance_is_about_the_mean():
    x = torch.randn(100, 1, 5) + 50.0
    mean_only = x.mean(0, keepdim=True).expand_as(x)
    assert S.explained_variance(x, mean_only).abs().item() < 1e-4
    assert S.explained_variance(x, x).item() == 1.0


def test_l0_and_dead_count_latents():
    latents = torch.tensor([[[0.0, 1.0, 2.0]], [[0.0, 0.0, 3.0]]])
    l0, dead = S.l0_and_dead(latents)
    assert l0.item() == 1.5 and abs(dead.item() - 1 / 3) < 1e-6


def test_recovery_scores_of_exact_and_merged_dictionaries():
    features = S.random_unit_features(5, 8, torch.Generator().manual_seed(2))
    perm = torch.tensor([3, 0, 4, 1, 2])
    cos, latent = S.hungarian_match(3 * features[perm], features)
    assert torch.allclose(cos, torch.ones(5), atol=1e-5) and torch.equal(perm[latent], torch.arange(5))
    W_dec, feats = S.mmcs_counterexample(4, 6, 6)
    assert S.mmcs(W_dec[None], feats).item() >= 0.9 and S.hungarian_match(W_dec, feats)[0].mean() <= 0.6


def test_training_recovers_features_only_with_l1(toy):
    features, batches = toy
    start = S.init_sae(2, 8, 12, torch.Generator().manual_seed(3))
    trained, log = S.train_sae(start, batches(2), steps=600, l1_coeff=torch.tensor([0.0, 0.3]), progress=False)
    scores = S.mmcs(trained.W_dec, features)
    assert scores[1] >= 0.9 and scores[0] <= 0.8, f"MMCS without / with L1: {scores.tolist()}"
    assert log.l0.shape == (len(log.steps), 2) and log.l0[-1, 1] < log.l0[-1, 0]
    assert torch.allclose(trained.W_dec.norm(dim=-1), torch.ones(2, 12), atol=1e-5), "unit decoder rows"


def test_training_is_deterministic(toy):
    features, _ = toy
    runs = []
    for _ in range(2):
        rng = torch.Generator().manual_seed(9)
        start = S.init_sae(1, 8, 12, torch.Generator().manual_seed(3))
        runs.append(S.train_sae(start, lambda: S.toy_activations(features, 64, 0.1, rng), 20, 0.3, progress=False)[0])
    assert torch.equal(runs[0].W_dec, runs[1].W_dec)


def test_untrained_mutant_returns_the_initial_sae(toy, monkeypatch):
    monkeypatch.setenv("MI_COURSE_MUTANT", "untrained")
    start = S.init_sae(1, 8, 12, torch.Generator().manual_seed(3))
    trained, _ = S.train_sae(start, toy[1](1), steps=50, l1_coeff=0.3, progress=False)
    assert trained is start


def test_topk_keeps_k_per_instance():
    sae = S.init_sae(3, 6, 10, torch.Generator().manual_seed(0), k=(1, 2, 4))
    latents = sae.encode(torch.randn(20, 3, 6) * 3)
    counts = (latents > 0).sum(-1)
    assert (counts <= torch.tensor([1, 2, 4])).all() and (counts[:, 2] >= 1).any()
    assert torch.equal(sae.instance(1).encode(torch.ones(2, 1, 6)), S.topk_latents(
        S.encoder_preacts(torch.ones(2, 1, 6), sae.W_enc[1:2], sae.b_enc[1:2], sae.b_dec[1:2]), 2))


def test_resampling_touches_dead_latents_only():
    sae = S.init_sae(2, 4, 6, torch.Generator().manual_seed(0))
    dead = torch.zeros(2, 6, dtype=torch.bool)
    dead[0, [1, 4]] = True
    out = S.resample_dead(sae, dead, torch.randn(16, 2, 4), seed=0)
    assert torch.equal(out.W_dec[~dead], sae.W_dec[~dead]) and torch.equal(out.W_dec[1], sae.W_dec[1])
    assert not torch.equal(out.W_dec[dead], sae.W_dec[dead]) and (out.b_enc[dead] == 0).all()
    again = S.resample_dead(sae, dead, torch.randn(16, 2, 4, generator=torch.Generator().manual_seed(5)), seed=0)
    assert torch.allclose(again.W_dec[dead].norm(dim=-1), torch.ones(2))


def test_best_f1_respects_ties():
    acts = torch.tensor([[0.0], [2.0], [0.0], [2.0], [1.0]])
    labels = torch.tensor([[False], [True], [False], [False], [False]])
    assert abs(S.best_f1(acts, labels).item() - 2 / 3) < 1e-6, "2.0 twice: one true positive of two predicted"
