"""Indirect-object identification (IOI) data: prompt sets for analysis, a corpus for training.

Wang et al. (2022) studied sentences such as "When Mary and John went to the store, John gave
a drink to" -> " Mary": the answer is the *indirect object* (IO), the name that is not repeated;
the repeated name is the *subject* (S). This module builds the same task in a small word-level
language, so that a model small enough to ship with the course can learn it and Chapter 6 can
find its circuit offline.

Everything is seeded and built from fixed word lists, so the training script, the tests and
the chapter see the same language. Some name pairs and some templates are *held out*: they never
occur in the training corpus, so accuracy on them measures the task, not memorised sentences.

The training corpus is a language-modelling corpus, not a classification set. Besides IOI
sentences it holds
- "ABC" sentences, in which a third name gives the object and the sentence ends "to them":
  to choose between a name and "them" the model must notice whether the second-clause subject
  is a repeat, which rewards duplicate-detection machinery rather than a shallow shortcut;
- random word strings in which a segment recurs at a random place: copying signal with no
  positional regularity to exploit;
- short narrative sentences that use the words of the held-out templates in other orders.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"

NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Alice", "Bob",
    "Kate", "Anna", "Paul", "Mark", "Lisa", "Sara", "Jane", "Max", "Sam", "Ben",
    "Eric", "Ryan", "Adam", "Emma", "Lucy", "Rose", "Jack", "Luke", "Sean", "Carl",
    "Hugh", "Ivan", "Jill", "Nina", "Owen", "Pete", "Rita", "Ruth", "Saul", "Tina",
    "Vera", "Walt", "Zoe", "Greg", "Fred", "Beth", "Dora", "Gus", "Hank", "Iris",
    "Joan", "Kyle", "Leah", "Mona", "Neil", "Olga", "Phil", "Ross", "Todd", "Tara",
)
PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "station", "house",
    "park", "church", "market", "library", "beach", "farm",
)
OBJECTS: tuple[str, ...] = (
    "drink", "ring", "kiss", "bone", "basketball", "computer", "necklace", "book", "letter",
    "snack", "apple", "key", "hat", "ticket",
)

# Slots: [A] and [B] are the first-clause names, [S] the second-clause subject,
# [PLACE] and [OBJECT] fillers. The prompt ends just before the indirect object.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "Then , [A] and [B] went to the [PLACE] . [S] gave a [OBJECT] to",
    "Then , [A] and [B] had a lot of fun at the [PLACE] . [S] gave a [OBJECT] to",
    "When [A] and [B] got a [OBJECT] at the [PLACE] , [S] decided to give it to",
    "When [A] and [B] went to the [PLACE] , [S] gave the [OBJECT] to",
    "After [A] and [B] went to the [PLACE] , [S] gave a [OBJECT] to",
    "While [A] and [B] were working at the [PLACE] , [S] gave a [OBJECT] to",
    "Then , [A] and [B] were thinking about going to the [PLACE] . [S] wanted to give a [OBJECT] to",
    "Then , [A] and [B] had a long argument , and afterwards [S] said to",
    "After the lunch , [A] and [B] went to the [PLACE] . [S] gave a [OBJECT] to",
    "Friends [A] and [B] found a [OBJECT] at the [PLACE] . [S] gave it to",
    "[A] and [B] went to the [PLACE] . [S] handed the [OBJECT] to",
    "The [PLACE] [A] and [B] went to had a [OBJECT] . [S] gave it to",
    "Then , [A] and [B] met at the [PLACE] . [S] sent a [OBJECT] to",
    "When [A] and [B] arrived at the [PLACE] , [S] brought a [OBJECT] to",
    "After [A] and [B] left the [PLACE] , [S] threw a [OBJECT] to",
    "While [A] and [B] sat in the [PLACE] , [S] passed the [OBJECT] to",
)
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "Later , [A] and [B] walked to the [PLACE] . [S] gave a [OBJECT] to",
    "Once [A] and [B] reached the [PLACE] , [S] handed a [OBJECT] to",
    "[A] and [B] were cleaning the [PLACE] . Then , [S] threw the [OBJECT] to",
    "Since [A] and [B] stayed at the [PLACE] , [S] sent the [OBJECT] to",
)

# Narrative sentences: one or two names ([N], [M]) and no indirect object. They carry the
# held-out templates' words ("Later", "walked", "Once", ...) in other orders, so the held-out
# templates test new arrangements of known words rather than unknown words.
NARRATIVE_TEMPLATES: tuple[str, ...] = (
    "Later , [N] walked to the [PLACE] .",
    "Once [N] reached the [PLACE] , [N] found a [OBJECT] .",
    "[N] was cleaning the [PLACE] .",
    "Since [N] stayed at the [PLACE] , [N] was happy .",
    "[N] and [M] walked to the [PLACE] together .",
    "Then , [N] handed the [OBJECT] back .",
    "[N] sent a [OBJECT] and a [OBJECT] .",
    "[N] liked the [OBJECT] .",
    "[N] and [M] were cleaning the [OBJECT] .",
    "Later , [N] threw the [OBJECT] .",
    "[N] stayed at the [PLACE] and read a book .",
    "When [N] reached the [PLACE] , it was late .",
    "[N] and [M] had a lot of fun .",
)
THEM = "them"
_PUNCTUATION_AND_ENDINGS = (".", ",", THEM)

TemplateSplit = Literal["train", "heldout"]
PairSplit = Literal["train", "heldout"]
Corruption = Literal["abc", "s2"]

HELDOUT_PAIR_FRACTION = 0.1
_HELDOUT_PAIR_SEED = 20220101  # fixed: the split is part of the language, not of a training run


def _template_words(template: str) -> list[str]:
    return [word for word in template.split() if not word.startswith("[")]


def vocabulary() -> list[str]:
    """Every word of the language, specials first; a word's index is its token id."""
    words: list[str] = [PAD, BOS, UNK]
    templates = TRAIN_TEMPLATES + HELDOUT_TEMPLATES + NARRATIVE_TEMPLATES
    for word in [*NAMES, *PLACES, *OBJECTS, *_PUNCTUATION_AND_ENDINGS] + [
        w for t in templates for w in _template_words(t)
    ]:
        if word not in words:
            words.append(word)
    return words


VOCAB: tuple[str, ...] = tuple(vocabulary())
TOKEN_ID: dict[str, int] = {word: index for index, word in enumerate(VOCAB)}
NAME_IDS: Int[Tensor, "n_names"] = torch.tensor([TOKEN_ID[name] for name in NAMES])


def build_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Save this language's word-level tokenizer to `directory` and return it loaded from there."""
    from mi_course.data.word_tokenizer import build_word_tokenizer

    return build_word_tokenizer(VOCAB, directory, pad=PAD, bos=BOS, unk=UNK)


def heldout_pairs() -> frozenset[frozenset[str]]:
    """Unordered name pairs that never occur together anywhere in the training corpus."""
    pairs = [frozenset(pair) for pair in combinations(NAMES, 2)]
    chosen = random.Random(_HELDOUT_PAIR_SEED).sample(pairs, round(HELDOUT_PAIR_FRACTION * len(pairs)))
    return frozenset(chosen)


_HELDOUT_PAIRS = heldout_pairs()


def _has_heldout_pair(names: list[str]) -> bool:
    return any(frozenset(pair) in _HELDOUT_PAIRS for pair in combinations(set(names), 2))


def _fill(template: str, slots: dict[str, str], rng: random.Random) -> list[str]:
    """Replace each [SLOT] with its word; [PLACE] and [OBJECT] draw a fresh word each time."""
    words = []
    for word in template.split():
        if word == "[PLACE]":
            words.append(rng.choice(PLACES))
        elif word == "[OBJECT]":
            words.append(rng.choice(OBJECTS))
        else:
            words.append(slots.get(word, word))
    return words


def _encode(words: list[str]) -> list[int]:
    return [TOKEN_ID[BOS]] + [TOKEN_ID[word] for word in words]


def pad_rows(rows: list[list[int]], pad_id: int, length: int | None = None) -> Int[Tensor, "batch pos"]:
    """Token rows as one tensor, cut or filled with `pad_id` to `length` (default: the longest)."""
    length = length or max(len(row) for row in rows)
    out = torch.full((len(rows), length), pad_id, dtype=torch.long)
    for index, row in enumerate(rows):
        out[index, : len(row)] = torch.tensor(row[:length])
    return out


def _pad(rows: list[list[int]], length: int | None = None) -> Int[Tensor, "batch pos"]:
    return pad_rows(rows, TOKEN_ID[PAD], length)


# --- prompt sets for evaluation and analysis ------------------------------------------------


@dataclass(frozen=True)
class IOIPrompts:
    """A batch of IOI prompts with aligned corrupted versions and answer tokens.

    Rows are right-padded with `<pad>`; `positions["end"]` is each row's last real token, where
    the model predicts the indirect object. A clean row and its corrupted row have the same
    template, places and objects, so their tokens line up position by position (as activation
    patching needs).
    """

    clean: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"]
    io: Int[Tensor, "batch"]
    s: Int[Tensor, "batch"]
    positions: dict[str, Int[Tensor, "batch"]]
    template: Int[Tensor, "batch"]
    abba: Bool[Tensor, "batch"]
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return self.clean.shape[0]


def _choose_names(rng: random.Random, count: int, pairs: PairSplit) -> list[str]:
    """`count` distinct names; for `pairs="heldout"` the first two form a held-out pair."""
    while True:
        names = rng.sample(NAMES, count)
        is_heldout = frozenset(names[:2]) in _HELDOUT_PAIRS
        if pairs == "heldout" and is_heldout:
            return names
        if pairs == "train" and not _has_heldout_pair(names):
            return names


def ioi_prompts(
    n: int,
    seed: int = 0,
    *,
    templates: TemplateSplit = "heldout",
    pairs: PairSplit = "heldout",
    order: Literal["ABBA", "BABA", "both"] = "both",
    template_ids: list[int] | None = None,
    corruption: Corruption = "abc",
) -> IOIPrompts:
    """`n` IOI prompts, ABBA and BABA alternating when `order="both"`.

    `templates` picks the training or the held-out templates (`template_ids` narrows them to the
    given indices, e.g. one template so every prompt has the same positions); `pairs` picks name
    pairs used in training or held out from it. The corrupted version follows Wang et al. (2022):
    `corruption="abc"` replaces IO, S1 and S2 with three fresh, distinct names; `"s2"` replaces
    only S2, so the corrupted prompt differs from the clean one only in that S is not repeated.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    for argument, value, allowed in (
        ("templates", templates, ("train", "heldout")), ("pairs", pairs, ("train", "heldout")),
        ("order", order, ("ABBA", "BABA", "both")), ("corruption", corruption, ("abc", "s2")),
    ):
        if value not in allowed:
            raise ValueError(f"{argument} must be one of {allowed}, got {value!r}")
    pool = TRAIN_TEMPLATES if templates == "train" else HELDOUT_TEMPLATES
    ids = list(range(len(pool))) if template_ids is None else list(template_ids)
    if not ids or not all(0 <= i < len(pool) for i in ids):
        raise ValueError(f"template_ids must index the {len(pool)} {templates} templates, got {template_ids}")
    rng = random.Random(seed)
    clean_rows, corrupt_rows, io, s, chosen, abba, texts = [], [], [], [], [], [], []
    positions: dict[str, list[int]] = {"IO": [], "S1": [], "S2": [], "end": []}
    for row in range(n):
        template_id = ids[row % len(ids)] if template_ids is not None else rng.choice(ids)
        is_abba = order == "ABBA" or (order == "both" and row % 2 == 0)
        io_name, s_name = _choose_names(rng, 2, pairs)
        first, second = (io_name, s_name) if is_abba else (s_name, io_name)
        state = rng.getstate()
        words = _fill(pool[template_id], {"[A]": first, "[B]": second, "[S]": s_name}, rng)
        fresh = [name for name in rng.sample(NAMES, 5) if name not in (io_name, s_name)][:3]
        if corruption == "abc":
            slots = {"[A]": fresh[0], "[B]": fresh[1], "[S]": fresh[2]}
        else:
            slots = {"[A]": first, "[B]": second, "[S]": fresh[0]}
        rng.setstate(state)  # same places and objects in the corrupted prompt
        corrupt_words = _fill(pool[template_id], slots, rng)
        slot_words = pool[template_id].split()
        a_pos, b_pos, s_pos = (slot_words.index(slot) + 1 for slot in ("[A]", "[B]", "[S]"))
        positions["IO"].append(a_pos if is_abba else b_pos)
        positions["S1"].append(b_pos if is_abba else a_pos)
        positions["S2"].append(s_pos)
        positions["end"].append(len(words))
        clean_rows.append(_encode(words))
        corrupt_rows.append(_encode(corrupt_words))
        io.append(TOKEN_ID[io_name])
        s.append(TOKEN_ID[s_name])
        chosen.append(template_id)
        abba.append(is_abba)
        texts.append(" ".join(words))
    return IOIPrompts(
        clean=_pad(clean_rows),
        corrupted=_pad(corrupt_rows),
        io=torch.tensor(io),
        s=torch.tensor(s),
        positions={key: torch.tensor(value) for key, value in positions.items()},
        template=torch.tensor(chosen),
        abba=torch.tensor(abba),
        texts=tuple(texts),
    )


# --- the training corpus ----------------------------------------------------------------------

# The mix `ioi-3l` is trained on (see its model card for the search that chose it).
DEFAULT_MIX: dict[str, float] = {"ioi": 0.4, "abc_them": 0.3, "repeat": 0.2, "narrative": 0.1}
_OTHER_WORDS = tuple(word for word in VOCAB if word not in (PAD, BOS, UNK, *NAMES))


def _ioi_sentence(rng: random.Random) -> list[str]:
    io_name, s_name = _choose_names(rng, 2, "train")
    first, second = (io_name, s_name) if rng.random() < 0.5 else (s_name, io_name)
    template = rng.choice(TRAIN_TEMPLATES)
    return _fill(template, {"[A]": first, "[B]": second, "[S]": s_name}, rng) + [io_name, "."]


def _abc_them_sentence(rng: random.Random) -> list[str]:
    a, b, c = _choose_names(rng, 3, "train")
    template = rng.choice(TRAIN_TEMPLATES)
    return _fill(template, {"[A]": a, "[B]": b, "[S]": c}, rng) + [THEM, "."]


def _narrative_sentence(rng: random.Random) -> list[str]:
    n, m = _choose_names(rng, 2, "train")
    return _fill(rng.choice(NARRATIVE_TEMPLATES), {"[N]": n, "[M]": m}, rng)


def _repeat_sentence(rng: random.Random, n_ctx: int) -> list[str]:
    """Names (about a third of the words) come from four per row, so no held-out pair meets."""
    return repeated_segment_row(rng, n_ctx, _choose_names(rng, 4, "train"), _OTHER_WORDS)


def repeated_segment_row(
    rng: random.Random, n_ctx: int, names: Sequence[str], other_words: Sequence[str]
) -> list[str]:
    """Random words in which a segment recurs later at a random place: predictable only by
    induction. Random positions and lengths leave no positional shortcut."""
    length = n_ctx - 1
    words = [rng.choice(names) if rng.random() < 0.3 else rng.choice(other_words) for _ in range(length)]
    segment = rng.randint(3, length // 3)
    first = rng.randint(0, length - 2 * segment)
    second = rng.randint(first + segment, length - segment)
    words[second : second + segment] = words[first : first + segment]
    return words


def training_batch(
    rng: random.Random, batch_size: int, n_ctx: int, mix: dict[str, float] | None = None
) -> Int[Tensor, "batch n_ctx"]:
    """One batch of `<bos>`-started, `<pad>`-filled rows, one sentence each, kinds drawn from `mix`.

    Loss should be taken on every next token that is not `<pad>`.
    """
    mix = DEFAULT_MIX if mix is None else mix
    unknown = set(mix) - set(DEFAULT_MIX)
    if unknown:
        raise ValueError(f"unknown sentence kinds {sorted(unknown)}; use {list(DEFAULT_MIX)}")
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=batch_size)
    makers = {
        "ioi": _ioi_sentence,
        "abc_them": _abc_them_sentence,
        "narrative": _narrative_sentence,
        "repeat": lambda r: _repeat_sentence(r, n_ctx),
    }
    rows = [_encode(makers[kind](rng)) for kind in kinds]
    if max(len(row) for row in rows) > n_ctx:
        raise ValueError(f"n_ctx={n_ctx} is too short for the longest sentence ({max(map(len, rows))} tokens)")
    return _pad(rows, n_ctx)
