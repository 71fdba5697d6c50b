"""The IOI grammar (`mi_course.data.ioi_grammar`) and its training module (`mi_course.train.ioi_4l`).

Fast tests: the hold-out guarantees (no held-out structure and no held-out name pair ever reaches
a training row), the one rule every sentence obeys (IO is the only name mentioned once), aligned
clean/corrupted prompts, and that a GPT-2 checkpoint boots into a TransformerBridge from local
files with no network wait. The shipped `ioi-4l` is the one seed of its recipe that met the release criteria (its model card
records the search): the slow test retrains three seeds against them and is marked xfail until
all three meet them. Round 2 of the search (`ioi_grammar_v2`): its hold-outs, its prompts, and a
digest test pinning every output of the shipped language that `ioi-4l` and Chapter 6 use. Round 3
(final-IO structures, IO inside the final clause): its hold-outs, checked with the names' roles,
its prompts, and digests pinning round 2's outputs.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")

from mi_course.data import ioi_grammar as g  # noqa: E402
from mi_course.data import ioi_grammar_v2 as v2  # noqa: E402
from mi_course.train import ioi_4l  # noqa: E402

NAME_SET = set(g.NAMES)


def _words(row: torch.Tensor) -> list[str]:
    special = {g.TOKEN_ID[g.PAD], g.TOKEN_ID[g.BOS]}
    return [g.VOCAB[t] for t in row.tolist() if t not in special]


def _row_regex(slots: list[str], answer: str, named: frozenset[str] = frozenset()) -> re.Pattern:
    """Template slots as a regex over a whole row: names, places, objects, verbs as wildcards,
    the adverbial as up to five optional words, an optional nameless opener in front, then the
    answer. A slot in `named` is a name whose later mentions must repeat its first one."""
    parts, seen = [], set()
    for slot in slots:
        if slot in named:
            parts.append(f"(?P={slot})" if slot in seen else f"(?P<{slot}>[A-Z][a-z]+)")
            seen.add(slot)
        elif slot in ("A", "B", "S", "C", "I"):
            parts.append(r"[A-Z][a-z]+")
        elif slot in ("P", "O", "V", "D"):
            parts.append(r"[a-z]+")
        elif slot == "ADV":
            parts.append(r"(?:[a-z,]+ ){0,5}")
        else:
            parts.append(re.escape(slot))
    body = " ".join(parts).replace("} ", "}")
    return re.compile(r"^(?:[a-z ]+ \. )?" + body + f" {answer} " + r"\.$")


def _structure_regex(structure: g.Structure) -> re.Pattern:
    """A structure as a regex over a whole row, whoever fills its name slots."""
    return _row_regex(structure.template.split(), r"[A-Z][a-z]+")


def _ioi_rows(n_batches: int = 12, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n_batches):
        batch = g.training_batch(rng, 64, ioi_4l.N_CTX, {"ioi": 1.0})
        rows += [" ".join(_words(row)) for row in batch]
    return rows


def test_language_sizes_and_vocabulary():
    assert len(set(g.VOCAB)) == len(g.VOCAB) and g.VOCAB[:3] == (g.PAD, g.BOS, g.UNK)
    assert len(g.NAMES) >= 50 and len(g.TRAIN_STRUCTURES) >= 100 and len(g.HELDOUT_STRUCTURES) >= 4
    # every word of every held-out structure occurs in training text too
    training_text = set(" ".join(_ioi_rows(4)).split())
    for _ in range(200):
        training_text |= set(g._narrative_row(random.Random(_)))
    heldout_words = {w for s in g.HELDOUT_STRUCTURES.values() for w in s.template.split() if w.islower() or not w.isalpha()}
    assert heldout_words <= training_text, heldout_words - training_text


def test_heldout_structures_are_disjoint_from_training():
    assert all(g.is_heldout(s) for s in g.HELDOUT_STRUCTURES.values())
    assert not any(g.is_heldout(s) for s in g.TRAIN_STRUCTURES)
    assert not set(g.HELDOUT_STRUCTURES.values()) & set(g.TRAIN_STRUCTURES)
    # the held-out intros never occur in any training structure
    assert not {s.intro for s in g.TRAIN_STRUCTURES} & g.HELDOUT_INTROS


def test_training_rows_never_use_a_heldout_structure():
    rows = _ioi_rows()
    heldout = [_structure_regex(s) for s in g.STRUCTURES if g.is_heldout(s)]
    training = [_structure_regex(s) for s in g.TRAIN_STRUCTURES]
    for row in rows:
        assert not any(r.match(row) for r in heldout), row
        assert any(r.match(row) for r in training), row  # the regexes do recognise structures


def test_heldout_pairs_never_meet_in_any_training_row():
    rng = random.Random(3)
    for _ in range(10):
        for row in g.training_batch(rng, 64, ioi_4l.N_CTX):
            names = {w for w in _words(row) if w in NAME_SET}
            assert not g.has_heldout_pair(names), names


@pytest.mark.parametrize("pairs", ["heldout", "train"])
def test_prompts_obey_the_rule_and_line_up(pairs):
    p = g.ioi_prompts(60, seed=5, pairs=pairs, structures=g.STRUCTURES[::7])
    rows = torch.arange(len(p))
    pos = p.positions
    assert torch.equal(p.clean[rows, pos["IO"]], p.io) and torch.equal(p.clean[rows, pos["S1"]], p.s)
    assert torch.equal(p.clean[rows, pos["S2"]], p.s) and (pos["S2"] > pos["S1"]).all()
    assert (p.clean[rows, pos["end"]] == g.TOKEN_ID["to"]).all()
    for row, io in zip(p.clean, p.io.tolist()):
        counts = Counter(t for t in row.tolist() if g.VOCAB[t] in NAME_SET)
        assert counts[io] == 1 and all(c >= 2 for t, c in counts.items() if t != io)
    heldout = [frozenset((g.VOCAB[a], g.VOCAB[b])) in g.heldout_pairs() for a, b in zip(p.io.tolist(), p.s.tolist())]
    assert all(heldout) if pairs == "heldout" else not any(heldout)
    # the corruption replaces S after the intro (S2 included) with one fresh name, nothing else
    differs = p.clean != p.corrupted
    assert differs[rows, pos["S2"]].all() and not differs[rows, pos["S1"]].any() and not differs[rows, pos["IO"]].any()
    assert p.abba.any() and (~p.abba).any()


def test_the_confounds_are_broken():
    """S2 is not always the last name before END, nor always the final clause's subject."""
    p = g.ioi_prompts(400, seed=6, structures=g.TRAIN_STRUCTURES)
    last_name = []
    for row, end in zip(p.clean, p.positions["end"].tolist()):
        names = [i for i, t in enumerate(row[:end].tolist()) if g.VOCAB[t] in NAME_SET]
        last_name.append(names[-1])
    s2_last = torch.tensor(last_name) == p.positions["S2"]
    assert 0.2 < s2_last.float().mean() < 0.8, s2_last.float().mean()
    assert {s.x for s in g.TRAIN_STRUCTURES} == {"S", "C"}


def test_prompts_are_seeded():
    a, b, c = g.ioi_prompts(20, seed=1), g.ioi_prompts(20, seed=1), g.ioi_prompts(20, seed=2)
    assert torch.equal(a.clean, b.clean) and a.texts == b.texts and not torch.equal(a.clean, c.clean)


def test_bad_arguments_get_clear_messages():
    with pytest.raises(ValueError, match="n must be"):
        g.ioi_prompts(0)
    with pytest.raises(ValueError, match="pairs must be"):
        g.ioi_prompts(4, pairs="new")
    with pytest.raises(ValueError, match="unknown sample kinds"):
        g.training_batch(random.Random(0), 8, 48, {"poems": 1.0})
    with pytest.raises(ValueError, match="too short"):
        g.training_batch(random.Random(0), 8, 12)


def test_tokenizer_matches_the_generator(tmp_path):
    tokenizer = g.build_tokenizer(tmp_path / "tok")
    p = g.ioi_prompts(8, seed=2)
    for text, row, end in zip(p.texts, p.clean, p.positions["end"].tolist()):
        assert tokenizer(text)["input_ids"] == row[: end + 1].tolist()


TINY = dict(n_layer=1, n_embd=32, n_head=2, n_inner=64)


def test_a_few_training_steps_report_every_release_metric():
    metrics = ioi_4l.train(seed=0, steps=2, progress=False, eval_prompts=10, **TINY)
    for label in g.HELDOUT_STRUCTURES:
        for pairs in ("heldout", "train"):
            assert 0 <= metrics[f"{label} | {pairs} pairs | acc"] <= 1
    assert ioi_4l.missed_targets(metrics)  # two steps of training meet nothing


def test_gpt2_checkpoint_boots_into_a_bridge_offline(tmp_path):
    """A GPT-2 checkpoint loads through `boot_transformers` with the Hugging Face model's own
    logits, and the load waits on no network (HF_HUB_OFFLINE unset, in a fresh process)."""
    from mi_course.models.checkpoint import load_checkpoint, load_random_init, save_gpt2_checkpoint

    hf = ioi_4l.fresh_gpt2(0, **TINY).eval()
    with torch.no_grad():  # the checkpoint stores float16: make the reference exactly representable
        for parameter in hf.parameters():
            parameter.copy_(parameter.half().float())
    save_gpt2_checkpoint(hf, g.build_tokenizer, tmp_path / "run")
    model = load_checkpoint(tmp_path / "run")
    tokens = g.ioi_prompts(4, seed=0).clean
    with torch.no_grad():
        assert torch.allclose(model(tokens), hf(tokens).logits, atol=1e-4)
        assert not torch.allclose(load_random_init(tmp_path / "run")(tokens), model(tokens), atol=1e-2)
    assert model.to_tokens(g.ioi_prompts(1, seed=0).texts[0])[0, 0].item() == g.TOKEN_ID[g.BOS]
    script = (
        "import time; import transformers, transformer_lens.model_bridge; "
        "from mi_course.models.checkpoint import load_checkpoint; t = time.perf_counter(); "
        f"load_checkpoint({str(tmp_path / 'run')!r}); print(time.perf_counter() - t)"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    seconds = float(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                   check=True).stdout.split()[-1])
    # the hub's retries alone take about 23 s; a local boot takes well under a second
    assert seconds < 10, f"loading took {seconds:.1f} s: something waits on the network"


def test_circuit_measurements_add_up_on_a_gpt2_checkpoint(tmp_path):
    """The card's circuit script on a tiny GPT-2 checkpoint: direct attribution parts add up to
    the logit difference (GPT-2 has LayerNorm), scores are fractions, one entry per head."""
    from mi_course.models.checkpoint import save_gpt2_checkpoint
    from mi_course.train import ioi_4l_circuit

    save_gpt2_checkpoint(ioi_4l.fresh_gpt2(1, **TINY), g.build_tokenizer, tmp_path / "run")
    result = ioi_4l_circuit.measure(tmp_path / "run", n=10, late=True, final_io=True)
    for label in ("held-out structures, held-out pairs", "classic training structures, held-out pairs",
                  "late held-out structures, held-out pairs", "final-IO held-out structures, held-out pairs"):
        total, diff = result[label]["dla_total_vs_logit_diff"]
        assert abs(total - diff) < 1e-3 and diff != 0
        assert len(result[label]["mean_ablation_effect"]) == 1 and len(result[label]["END->IO"][0]) == 2
    for key in ("copying", "negative_copying", "duplicate", "induction", "previous"):
        assert all(0 <= v <= 1 for row in result[key] for v in row)


def test_release_criteria_are_checked_per_heldout_structure():
    good = {f"{s} | {p} pairs | {k}": v for s in g.HELDOUT_STRUCTURES for p in ("heldout", "train")
            for k, v in (("acc", 0.99), ("logit diff", 5.0))}
    assert ioi_4l.missed_targets(good) == []
    label = next(iter(g.HELDOUT_STRUCTURES))
    bad = dict(good) | {f"{label} | heldout pairs | acc": 0.9}
    missed = ioi_4l.missed_targets(bad)
    assert any("accuracy 0.9" in m for m in missed) and any("below training pairs" in m for m in missed)


@pytest.mark.slow
@pytest.mark.xfail(reason="ioi-4l's recipe met the criteria on 1 of 3 seeds in the search "
                   "(mi_course/weights/ioi-4l/MODEL_CARD.md)", strict=False)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retraining_meets_the_release_criteria(seed, tmp_path):
    metrics = ioi_4l.train(seed=seed, out_dir=tmp_path, progress=False)
    assert ioi_4l.missed_targets(metrics) == [], metrics


def _digest(*parts) -> str:
    import hashlib

    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.numpy().tobytes() if isinstance(part, torch.Tensor) else repr(part).encode())
    return digest.hexdigest()[:16]


def _prompts_digest(p: g.IOIPrompts) -> str:
    return _digest(p.clean, p.corrupted, p.io, p.s, *[p.positions[k] for k in sorted(p.positions)],
                   p.structure, p.abba, p.texts)


def test_the_shipped_language_is_pinned():
    """The shipped ioi-4l and Chapter 6 depend on these exact outputs: the vocabulary (token ids),
    the structures and their split, the held-out pairs, evaluation prompts and training batches
    (digests recorded before any option was added to the generator)."""
    assert _digest(g.VOCAB) == "39f478d2d3a60ad4"
    assert _digest([s.name for s in g.STRUCTURES], [s.name for s in g.TRAIN_STRUCTURES],
                   sorted(g.HELDOUT_STRUCTURES.items()), [s.name for s in g.CLASSIC_STRUCTURES]) == "6f9f5f09f0eaa236"
    assert _digest(sorted(sorted(p) for p in g.heldout_pairs())) == "695e280a2706bc19"
    assert _prompts_digest(g.ioi_prompts(50, 1234)) == "4e5a960f7517fd91"
    assert _prompts_digest(g.ioi_prompts(50, 7, structures=g.TRAIN_STRUCTURES, pairs="train")) == "b571c23b2ed6aac6"
    assert _digest(g.training_batch(random.Random(0), 64, 48)) == "aa1f614fd6fdfc90"
    assert _digest(g.training_batch(random.Random(5), 32, 48, {"ioi": 0.5, "repeat": 0.5})) == "54a08a83da25fdfc"


# --- round 2 of the grammar (`ioi_grammar_v2`): composed intros, IO after the intro -------------


def _v2_rows(mix="late_induction", n_batches: int = 12, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(_words(row)) for _ in range(n_batches) for row in v2.training_batch(rng, 64, v2.N_CTX, mix)]


def test_v2_keeps_every_holdout_of_the_first_language():
    """No v2 training row has a held-out pair or matches a held-out structure of either language;
    composed intros never use the first language's held-out intros' phrasing."""
    rows = _v2_rows()
    heldout = [_structure_regex(s) for s in g.STRUCTURES if g.is_heldout(s)]
    heldout += [_structure_regex(s) for s in v2.LATE_STRUCTURES if v2.late_is_heldout(s)]
    for row in rows:
        assert not any(r.match(row) for r in heldout), row
        assert not g.has_heldout_pair({w for w in row.split() if w in NAME_SET}), row
    for intro in v2.COMPOSED_INTROS:
        assert "talked with B" not in intro and "visited" not in intro and "where" not in intro, intro
    late = [_structure_regex(s) for s in v2.LATE_TRAIN]
    assert sum(any(r.match(row) for r in late) for row in rows) > 100  # the regexes do see late rows
    assert all(v2.late_is_heldout(s) for s in v2.LATE_HELDOUT.values())
    assert not set(v2.LATE_HELDOUT.values()) & set(v2.LATE_TRAIN)


def test_v2_prompts_obey_the_rule_and_io_comes_after_the_intro():
    structures = [*v2.LATE_HELDOUT.values(), *v2.LATE_TRAIN[::50]]
    p = v2.ioi_prompts(60, seed=3, structures=structures, pairs="heldout")
    rows, pos = torch.arange(len(p)), p.positions
    assert torch.equal(p.clean[rows, pos["IO"]], p.io) and torch.equal(p.clean[rows, pos["S1"]], p.s)
    assert torch.equal(p.clean[rows, pos["S2"]], p.s) and (pos["S2"] > pos["S1"]).all()
    assert (pos["IO"] > pos["S1"]).all() and (p.clean[rows, pos["end"]] == g.TOKEN_ID["to"]).all()
    for row, io in zip(p.clean, p.io.tolist()):
        counts = Counter(t for t in row.tolist() if g.VOCAB[t] in NAME_SET)
        assert counts[io] == 1 and all(c >= 2 for t, c in counts.items() if t != io)
    differs = p.clean != p.corrupted
    assert differs[rows, pos["S2"]].all() and not differs[rows, pos["S1"]].any() and not differs[rows, pos["IO"]].any()
    assert all(frozenset((g.VOCAB[a], g.VOCAB[b])) in g.heldout_pairs() for a, b in zip(p.io.tolist(), p.s.tolist()))


def test_v2_training_rows_answer_with_the_name_mentioned_once():
    for row in _v2_rows({"classic": 1, "composed": 1, "late": 1}, n_batches=3):
        words = row.split()
        names = [w for w in words[:-2] if w in NAME_SET]
        assert words[-3] == "to" and names.count(words[-2]) == 1, row
        assert all(names.count(n) >= 2 for n in set(names) - {words[-2]}), row


def test_round2_recipe_reports_the_late_heldout_structures_too():
    options = ioi_4l.round2_options() | TINY | {"steps": 2}
    metrics = ioi_4l.train(seed=0, progress=False, eval_prompts=10, **options)
    labels = ioi_4l.heldout_labels(options["extra_heldout"])
    assert set(v2.LATE_HELDOUT) < set(labels) and set(g.HELDOUT_STRUCTURES) < set(labels)
    for label in labels:
        assert 0 <= metrics[f"{label} | heldout pairs | acc"] <= 1
    assert any(label in m for m in ioi_4l.missed_targets(metrics, labels) for label in v2.LATE_HELDOUT)


def test_round2_language_is_pinned():
    """Round 3 added structures and a mix to `ioi_grammar_v2`; round 2's structures, mixes and
    held-out prompts are unchanged (digests recorded before round 3)."""
    assert _digest([s.name for s in v2.LATE_STRUCTURES], [s.name for s in v2.LATE_TRAIN],
                   sorted((k, v.name) for k, v in v2.LATE_HELDOUT.items()), v2.COMPOSED_INTROS) == "56615a90ceb3a5be"
    for mix, digest in (("late", "fef0ee396446a199"), ("late_induction", "ea296124b81a9eec"),
                        ("late_heavy", "979d7aeeaaca80c7")):
        assert _digest(v2.training_batch(random.Random(3), 32, 48, mix)) == digest, mix
    assert _prompts_digest(v2.ioi_prompts(40, 1234, structures=list(v2.LATE_HELDOUT.values()))) == "a072dd27ab572826"
    assert list(v2.heldout_prompt_sets()) == list(v2.LATE_HELDOUT)
    # round 3's language and mix as its runs in the card were trained
    assert _digest([s.name for s in v2.FINAL_IO_TRAIN]) == "2e8b381c642aff01"
    assert _digest(v2.training_batch(random.Random(3), 32, 48, "final_io")) == "ed579ac60d90414b"


# --- round 3 (`ioi_grammar_v2`, final-IO structures): IO's one mention inside the final clause ---


def _named_regexes(structure) -> list[re.Pattern]:
    """Like `_structure_regex`, but a name slot's later mentions must repeat its first one and
    the answer must be IO's name, so structures with the same words but different name roles
    differ; one regex per order of the pair A, B (first language) or one (no A, B)."""
    orders = [{"A": "I", "B": "S"}, {"A": "S", "B": "I"}] if "A" in structure.template.split() else [{}]
    return [_row_regex([order.get(slot, slot) for slot in structure.template.split()], "(?P=I)",
                       frozenset({"S", "C", "I"})) for order in orders]


def test_final_io_holdouts_never_reach_training_rows():
    """No `final_io` training row matches a held-out structure of round 3, round 2 or the first
    language (names checked: who is mentioned where, not only the word order), or has a held-out pair."""
    rows = _v2_rows("final_io")
    heldout = [r for s in v2.FINAL_IO_STRUCTURES if v2.final_io_is_heldout(s) for r in _named_regexes(s)]
    heldout += [r for s in g.STRUCTURES if g.is_heldout(s) for r in _named_regexes(s)]
    heldout += [r for s in v2.LATE_STRUCTURES if v2.late_is_heldout(s) for r in _named_regexes(s)]
    for row in rows:
        assert not any(r.match(row) for r in heldout), row
        assert not g.has_heldout_pair({w for w in row.split() if w in NAME_SET}), row
    trained = [r for s in v2.FINAL_IO_TRAIN for r in _named_regexes(s)]
    assert sum(any(r.match(row) for r in trained) for row in rows) > 100  # the regexes do see final-IO rows
    assert all(v2.final_io_is_heldout(s) for s in v2.FINAL_IO_HELDOUT.values())
    for structure in v2.FINAL_IO_HELDOUT.values():  # and they would catch a held-out row
        p = v2.ioi_prompts(2, seed=0, structures=[structure], pairs="train")
        rows = [f"{text} {g.VOCAB[io]} ." for text, io in zip(p.texts, p.io.tolist())]
        assert all(any(r.match(row) for r in _named_regexes(structure)) for row in rows), rows
    assert set(v2.FINAL_IO_HELDOUT.values()) <= set(v2.FINAL_IO_STRUCTURES)
    assert not any("found I" in s.template for s in v2.FINAL_IO_TRAIN)


def test_final_io_prompts_obey_the_rule_and_io_is_in_the_final_clause():
    structures = [*v2.FINAL_IO_HELDOUT.values(), *v2.FINAL_IO_TRAIN[::10]]
    p = v2.ioi_prompts(60, seed=4, structures=structures, pairs="heldout")
    rows, pos = torch.arange(len(p)), p.positions
    assert torch.equal(p.clean[rows, pos["IO"]], p.io) and torch.equal(p.clean[rows, pos["S1"]], p.s)
    assert torch.equal(p.clean[rows, pos["S2"]], p.s) and (pos["S2"] > pos["S1"]).all()
    assert (p.clean[rows, pos["end"]] == g.TOKEN_ID["to"]).all()
    last_name_is_io = []
    for row, io, at, end in zip(p.clean, p.io.tolist(), pos["IO"].tolist(), pos["end"].tolist()):
        words = [g.VOCAB[t] for t in row[: end + 1].tolist()]
        assert "." not in words[at:], words  # IO's mention is in the final clause
        names = [w for w in words if w in NAME_SET]
        assert names.count(g.VOCAB[io]) == 1 and all(names.count(n) >= 2 for n in set(names) - {g.VOCAB[io]})
        last_name_is_io.append(names[-1] == g.VOCAB[io])
    assert any(last_name_is_io) and not all(last_name_is_io)  # the last name before END is IO only sometimes
    differs = p.clean != p.corrupted
    assert differs[rows, pos["S2"]].all() and not differs[rows, pos["S1"]].any() and not differs[rows, pos["IO"]].any()
    assert (differs.sum(1) == torch.tensor([s.template.split().count("S") - 1 for s in
                                            (structures[i % len(structures)] for i in range(len(p)))])).all()
    assert all(frozenset((g.VOCAB[a], g.VOCAB[b])) in g.heldout_pairs() for a, b in zip(p.io.tolist(), p.s.tolist()))


def test_final_io_training_rows_answer_with_the_name_mentioned_once():
    for row in _v2_rows({"final_io": 1}, n_batches=3):
        words = row.split()
        names = [w for w in words[:-2] if w in NAME_SET]
        assert words[-3] == "to" and names.count(words[-2]) == 1, row
        assert all(names.count(n) >= 2 for n in set(names) - {words[-2]}), row
        assert "." not in words[words.index(words[-2]):-1], row  # IO is in the final clause


def test_round3_recipe_reports_every_heldout_set():
    options = ioi_4l.round2_options(round3=True) | TINY | {"steps": 2}
    assert ioi_4l.ROUND3["mix"] == "final_io" and ioi_4l.ROUND3["n_embd"] == ioi_4l.ROUND2["n_embd"]
    metrics = ioi_4l.train(seed=0, progress=False, eval_prompts=10, **options)
    labels = ioi_4l.heldout_labels(options["extra_heldout"])
    assert set(v2.FINAL_IO_HELDOUT) | set(v2.LATE_HELDOUT) | set(g.HELDOUT_STRUCTURES) == set(labels)
    assert any(label in m for m in ioi_4l.missed_targets(metrics, labels) for label in v2.FINAL_IO_HELDOUT)
