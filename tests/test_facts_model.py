"""The fact-recall model `facts-4l` and its data: the knowledge base and phrasings are what the
model card says; the shipped model loads offline and recalls facts in training and held-out
phrasings; a few training steps are deterministic; full retraining on three seeds meets the
release criteria (slow: about 5 minutes per seed on one free core)."""

import json

import pytest
import torch

from mi_course.data import facts
from mi_course.models import checkpoint, load_model
from mi_course.train import facts_4l, training_module
from mi_course.train.loop import fit, fresh_model

# --- data --------------------------------------------------------------------------------


def test_subjects_are_distinct_multi_token_and_share_their_name_tokens():
    subjects = facts.subjects()
    assert len(set(subjects)) == facts.N_SUBJECTS
    assert sorted({len(s) for s in subjects}) == [2, 3]
    assert sum(len(s) == 3 for s in subjects) == facts.N_THREE_TOKEN
    as_text = {" ".join(s) for s in subjects}
    assert not any(a != b and b.startswith(a + " ") for a in as_text for b in as_text), "no subject prefixes another"
    firsts = torch.tensor([facts.FIRST_NAMES.index(s[0]) for s in subjects]).bincount()
    assert firsts.min() >= 5, "every first name is shared by several subjects"


def test_knowledge_base_is_fixed_and_objects_belong_to_their_relation():
    kb = facts.knowledge_base()
    assert len(kb) == facts.N_SUBJECTS * len(facts.RELATIONS) and kb == facts.knowledge_base()
    assert all(fact.obj in facts.OBJECTS[fact.relation] for fact in kb)
    cities = {fact.obj for fact in kb if fact.relation == "city"}
    assert cities == set(facts.OBJECTS["city"]), "every object is used"


def test_phrasings_hold_out_one_per_relation_with_only_trained_words():
    trained_words = {w for ps in facts.PHRASINGS.values() for p in ps for w in p.split()}
    for relation, heldout in facts.HELDOUT_PHRASINGS.items():
        assert len(facts.PHRASINGS[relation]) == 7 and heldout not in facts.PHRASINGS[relation]
        assert set(heldout.split()) <= trained_words, heldout
        assert sum(not p.startswith("S ") for p in facts.PHRASINGS[relation]) >= 3
    # the data pair "job" and "profession" in one frame (the fix for the held-out job phrasing)
    assert {"the job S has is that of a", "the profession S has is that of a"} <= set(facts.PHRASINGS["job"])


def test_training_corpus_rows_and_positions():
    corpus = facts.training_corpus(seed=0)
    assert corpus.tokens.shape[0] == 2 * 7 * len(facts.knowledge_base())
    assert corpus.with_answers().shape[1] <= facts_4l.N_CTX
    row = 1  # the first fact's first phrasing after a filler
    words = [facts.VOCAB[i] for i in corpus.tokens[row, : corpus.length[row]]]
    fact = corpus.facts[row]
    assert words[0] == facts.BOS and words[1] in facts.FILLERS
    assert words[corpus.first_subject[row] : corpus.last_subject[row] + 1] == list(fact.subject)
    assert words[-2:] == ["lives", "in"] and facts.VOCAB[corpus.answer[row]] == fact.obj
    assert torch.equal(facts.training_corpus(0).tokens, corpus.tokens)
    assert not torch.equal(facts.training_corpus(1).tokens, corpus.tokens)


def test_swap_pairs_align_and_change_the_answer():
    clean, corrupt = facts.swap_pairs(50, seed=3)
    assert clean.tokens.shape == corrupt.tokens.shape and torch.equal(clean.subject_mask, corrupt.subject_mask)
    assert (clean.answer != corrupt.answer).all()
    differs = clean.tokens != corrupt.tokens
    assert not (differs & ~clean.subject_mask).any(), "only subject tokens differ"
    with pytest.raises(ValueError, match="same length"):
        facts.make_prompts(facts.knowledge_base()[:2], ["S lives in"])


# --- the shipped model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return load_model("facts-4l", device="cpu")


def test_shipped_model_loads_offline_with_its_card(model):
    directory = checkpoint.WEIGHTS_DIR / "facts-4l"
    assert not model.training and model.cfg.n_layers == 4 and not model.cfg.attn_only
    assert (directory / "MODEL_CARD.md").exists()
    assert checkpoint.directory_size(directory) < 1_500_000
    recorded = json.loads((directory / checkpoint.METRICS_FILE).read_text())
    assert not facts_4l.missed_targets(recorded), "the shipped metrics meet the release criteria"


def test_tokenizer_matches_the_generator(model):
    prompts = facts.phrasing_prompts(index=3)
    row = prompts.tokens[0, : prompts.length[0]]
    text = " ".join(facts.VOCAB[i] for i in row[1:])
    assert torch.equal(model.to_tokens(text)[0], row)


def test_shipped_model_recalls_facts_in_held_out_phrasings(model):
    subset = facts.knowledge_base()[::7]
    heldout = facts.phrasing_prompts(heldout=True, kb=subset)
    trained = facts.phrasing_prompts(index=0, kb=subset)
    assert facts_4l.recall(model, trained).float().mean() > 0.95
    assert facts_4l.recall(model, heldout).float().mean() > 0.9


# --- training ----------------------------------------------------------------------------


def test_a_few_steps_are_deterministic_and_not_releasable():
    def two_steps(seed: int) -> torch.Tensor:
        model = fresh_model(facts_4l.model_config(seed), facts.build_tokenizer)
        rows = facts.training_corpus(seed).with_answers()[:64]
        fit(model, lambda: rows, 2, facts_4l.LR, loss_fn=facts_4l.object_loss, progress=False)
        return torch.cat([tensor.flatten() for tensor in model.state_dict().values()])

    first, again, other = two_steps(0), two_steps(0), two_steps(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    untrained = fresh_model(facts_4l.model_config(0), facts.build_tokenizer).eval()
    loss = facts_4l.object_loss(untrained, facts.training_corpus(0).with_answers()[:256])
    assert 4.0 < loss.item() < 6.5, "about log(162) untrained"
    assert facts_4l.missed_targets({"train_phrasings_top1": 0.01, "heldout_phrasings_top1": 0.01})


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_retraining_meets_release_criteria(seed, tmp_path):
    module = training_module("facts-4l")
    metrics = module.train(seed=seed, out_dir=tmp_path, progress=False)
    assert not module.missed_targets(metrics), metrics
