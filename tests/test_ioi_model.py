"""The IOI data and the shipped `ioi-3l` model (Chapter 6).

Fast tests: the data's guarantees (held-out pairs and templates never reach training, clean and
corrupted prompts line up), the tokenizer, a few training steps, and the shipped model's headline
metrics on held-out data. The slow test retrains from scratch for three seeds.
"""

from __future__ import annotations

import os
import random
import re

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from mi_course.data import ioi  # noqa: E402
from mi_course.train import ioi_3l  # noqa: E402


def _rows_as_text(tokens: torch.Tensor) -> list[str]:
    pad, bos = ioi.TOKEN_ID[ioi.PAD], ioi.TOKEN_ID[ioi.BOS]
    return [" ".join(ioi.VOCAB[t] for t in row.tolist() if t not in (pad, bos)) for row in tokens]


def _template_regex(template: str) -> re.Pattern:
    """A template as a regex over words, names and fillers as wildcards."""
    parts = [r"\S+" if word.startswith("[") else re.escape(word) for word in template.split()]
    return re.compile(r"^" + " ".join(parts) + r"\b")


def test_language_meets_the_issue_sizes():
    assert len(ioi.TRAIN_TEMPLATES) >= 15 and len(ioi.HELDOUT_TEMPLATES) >= 3
    assert len(ioi.NAMES) >= 50 and len(set(ioi.NAMES)) == len(ioi.NAMES)
    assert not set(ioi.TRAIN_TEMPLATES) & set(ioi.HELDOUT_TEMPLATES)
    assert len(set(ioi.VOCAB)) == len(ioi.VOCAB)


def test_prompts_are_seeded_and_aligned():
    a = ioi.ioi_prompts(64, seed=3, corruption="s2")
    b = ioi.ioi_prompts(64, seed=3, corruption="s2")
    assert torch.equal(a.clean, b.clean) and torch.equal(a.corrupted, b.corrupted)
    rows = torch.arange(len(a))
    p = a.positions
    assert torch.equal(a.clean[rows, p["IO"]], a.io) and torch.equal(a.clean[rows, p["S1"]], a.s)
    assert torch.equal(a.clean[rows, p["S2"]], a.s)
    assert (a.clean[rows, p["end"]] == ioi.TOKEN_ID["to"]).all()
    # "s2": only S2 differs, and it becomes a third name
    differs = a.clean != a.corrupted
    assert differs.sum(1).eq(1).all() and differs[rows, p["S2"]].all()
    assert ((a.corrupted[rows, p["S2"]] != a.io) & (a.corrupted[rows, p["S2"]] != a.s)).all()
    assert a.abba.any() and (~a.abba).any()
    assert (p["IO"][a.abba] < p["S1"][a.abba]).all() and (p["IO"][~a.abba] > p["S1"][~a.abba]).all()


def test_abc_corruption_replaces_all_three_names():
    a = ioi.ioi_prompts(32, seed=4, corruption="abc")
    rows = torch.arange(len(a))
    for key in ("IO", "S1", "S2"):
        assert (a.corrupted[rows, a.positions[key]] != a.clean[rows, a.positions[key]]).all()
    changed = a.clean != a.corrupted
    assert changed.sum(1).eq(3).all()
    corrupt_names = a.corrupted[rows][:, None, :].gather(
        2, torch.stack([a.positions[k] for k in ("IO", "S1", "S2")], 1)[:, None, :]
    )[:, 0]
    assert all(len(set(row.tolist())) == 3 for row in corrupt_names)


def test_heldout_pairs_and_templates_never_reach_training():
    rng = random.Random(0)
    texts = [t for _ in range(20) for t in _rows_as_text(ioi.training_batch(rng, 64, ioi_3l.N_CTX, ioi_3l.MIX))]
    heldout = ioi.heldout_pairs()
    names = set(ioi.NAMES)
    for text in texts:
        present = sorted({w for w in text.split() if w in names})
        assert not any(frozenset((x, y)) in heldout for i, x in enumerate(present) for y in present[i + 1 :]), text
    regexes = [_template_regex(t) for t in ioi.HELDOUT_TEMPLATES]
    assert not any(r.match(text) for r in regexes for text in texts)
    prompts = ioi.ioi_prompts(50, seed=1, pairs="heldout")
    assert all(frozenset(ioi.VOCAB[i] for i in (io, s)) in heldout for io, s in zip(prompts.io.tolist(), prompts.s.tolist()))


def test_training_batch_mixes_sentence_kinds():
    texts = _rows_as_text(ioi.training_batch(random.Random(1), 256, ioi_3l.N_CTX, ioi_3l.MIX))
    assert any(t.endswith("them .") for t in texts)
    assert any(t.split()[-2] in ioi.NAMES and t.split()[-3] == "to" for t in texts)
    assert len(set(texts)) == len(texts)


def test_bad_arguments_get_clear_messages():
    with pytest.raises(ValueError, match="template_ids"):
        ioi.ioi_prompts(4, template_ids=[99])
    with pytest.raises(ValueError, match="n must be"):
        ioi.ioi_prompts(0)
    with pytest.raises(ValueError, match="order must be"):
        ioi.ioi_prompts(4, order="ABAB")
    with pytest.raises(ValueError, match="unknown sentence kinds"):
        ioi.training_batch(random.Random(0), 8, 32, {"poems": 1.0})
    with pytest.raises(ValueError, match="too short"):
        ioi.training_batch(random.Random(0), 8, 10)


def test_tokenizer_matches_the_generator(tmp_path):
    tokenizer = ioi.build_tokenizer(tmp_path / "tok")
    prompts = ioi.ioi_prompts(8, seed=2)
    for text, row, end in zip(prompts.texts, prompts.clean, prompts.positions["end"].tolist()):
        assert tokenizer(text)["input_ids"] == row[: end + 1].tolist()


def test_a_few_training_steps_save_a_loadable_model(tmp_path):
    from mi_course.models.checkpoint import load_checkpoint

    metrics = ioi_3l.train(seed=0, out_dir=tmp_path / "run", steps=3, progress=False)
    assert set(ioi_3l.TARGETS) <= set(metrics)
    model = load_checkpoint(tmp_path / "run")
    assert model.to_tokens("Then , Mary and John went to the store .").shape == (1, 11)


@pytest.fixture(scope="module")
def shipped():
    from mi_course import load_model

    return load_model(ioi_3l.NAME, device="cpu")


def test_shipped_model_meets_release_metrics_on_heldout_data(shipped):
    metrics = ioi_3l.evaluate(shipped)
    assert ioi_3l.missed_targets(metrics) == [], metrics


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retraining_reaches_release_metrics(seed, tmp_path):
    metrics = ioi_3l.train(seed=seed, out_dir=tmp_path, progress=False)
    assert ioi_3l.missed_targets(metrics) == [], metrics
