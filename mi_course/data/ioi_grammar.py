"""IOI sentences from a small grammar, with whole sentence structures and name pairs held out.

Wang et al. (2022) studied prompts such as "When Mary and John went to the store, John gave a
drink to" -> " Mary": the answer is the *indirect object* (IO), the name of the pair that is
not repeated; the repeated name is the *subject* (S). In their templates, and in a first
version of this course's data, S2 is always the last name before the answer and always the
subject of the last clause. A small model then needs no duplicate detection at all: "take the
pair and remove the most recent name" solves every prompt, and that is what such models learned.

This grammar breaks both confounds. A sentence is an *intro* clause that names the pair A and B,
an optional *middle* clause that mentions S again and/or a third name C, and a *final* clause
ending "... to" whose answer is IO. Every name but IO is mentioned at least twice, so the one
rule that holds in every sentence is *the answer is the name mentioned only once*. The final
clause's subject is S or C, S2 may be an object ("C talked with S"), and the last name before
the answer may be S or C: neither "remove the last name" nor "remove the final subject" works.

A *structure* is the tuple (intro, middle, final, who fills the final clause's name slots).
Some structures never occur in training (`HELDOUT_STRUCTURES`): three intros occur only in
held-out structures (their words occur elsewhere, in other orders), and two middle/final
combinations are never seen together. 10% of unordered name pairs never occur together in any
training row. Everything is seeded; the hold-outs are fixed properties of the language.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations, product
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from mi_course.data import ioi
from mi_course.data.ioi import BOS, NAMES, PAD, UNK

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# The names and the first places are ioi-3l's, so the two languages share their words.
PLACES: tuple[str, ...] = ioi.PLACES + ("cafe", "museum")

OBJECTS: tuple[str, ...] = (
    "drink", "ring", "bone", "basketball", "computer", "necklace", "book", "letter",
    "snack", "apple", "key", "hat", "ticket", "cake", "pen", "bag",
)
VERBS: tuple[str, ...] = ("gave", "handed", "sent", "threw", "passed", "brought", "showed", "offered")
DETERMINERS: tuple[str, ...] = ("a", "the")
ADVERBIALS: tuple[str, ...] = ("", "later ,", "then ,", "afterwards ,", "because it was late ,", "after a while ,")

# Slots: A, B (the pair, in ABBA or BABA order), S (the repeated member of the pair), C (a
# third name, always mentioned twice), X and Y (the final clause's names: S or C), P place,
# O object, V verb, D determiner, ADV adverbial (possibly empty).
INTROS: dict[str, str] = {
    "went": "A and B went to the P .",
    "when": "when A and B went to the P ,",
    "after_lunch": "after A and B had lunch at the P ,",
    "met": "A met B at the P .",
    "while": "while A and B were at the P ,",
    "working": "A and B were working at the P .",
    "found": "A and B found D O at the P .",
    # Only in held-out structures:
    "talked": "A talked with B at the P .",
    "where": "the P was where A and B had lunch , so",
    "visited": "A visited B at the P because it was late .",
}
HELDOUT_INTROS: frozenset[str] = frozenset({"talked", "where", "visited"})
MIDDLES: dict[str, str] = {
    "none": "",
    "tired": "S was tired .",
    "talk": "C talked with S .",
    "meet": "S met C at the P .",
    "buy": "S bought D O from C .",
    "there": "C was there too .",
}
FINALS: dict[str, str] = {
    "subject": "ADV X V D O to",
    "relative": "ADV X V the O that Y bought to",
    "passive": "ADV D O was V by X to",
}
# Middle/final pairs never seen together in training.
HELDOUT_COMBINATIONS: frozenset[tuple[str, str]] = frozenset({("buy", "relative"), ("talk", "passive")})

# Sentences with no IOI query. They carry every held-out intro's words in other orders, so
# held-out structures test new arrangements of known words. N and M are names.
NARRATIVE: tuple[str, ...] = (
    "N visited the P .",
    "the P was where N lived .",
    "N was tired , so N went to the P .",
    "N and M talked about the O .",
    "N had lunch with M .",
    "N was happy because it was late .",
    "it was late .",
    "N found D O .",
    "N bought the O at the P .",
    "N liked the O , so N bought it .",
    "the P was busy .",
    "N met M .",
)
# Nameless sentences that may open an IOI row: a distractor before the story starts.
OPENERS: tuple[str, ...] = ("", "", "", "it was late .", "the P was busy .", "it was a sunny day .")

_FUNCTION_WORDS = ("to", "it", "so", "sunny", "day", "a", "the", ".", ",")

TemplateSplit = Literal["train", "heldout"]
PairSplit = Literal["train", "heldout"]

HELDOUT_PAIR_FRACTION = 0.1
_HELDOUT_PAIR_SEED = 20260101  # fixed: the split is part of the language, not of a training run


def vocabulary() -> list[str]:
    """Every word of the language, specials first; a word's index is its token id."""
    slots = {"A", "B", "S", "C", "X", "Y", "N", "M", "P", "O", "V", "D", "ADV"}
    texts = [*INTROS.values(), *MIDDLES.values(), *FINALS.values(), *NARRATIVE, *OPENERS, *ADVERBIALS]
    words = [PAD, BOS, UNK, *NAMES, *PLACES, *OBJECTS, *VERBS, *DETERMINERS, *_FUNCTION_WORDS]
    words += [word for text in texts for word in text.split() if word not in slots]
    return list(dict.fromkeys(words))


VOCAB: tuple[str, ...] = tuple(vocabulary())
TOKEN_ID: dict[str, int] = {word: index for index, word in enumerate(VOCAB)}
NAME_IDS: Int[Tensor, "n_names"] = torch.tensor([TOKEN_ID[name] for name in NAMES])


def build_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Save this language's word-level tokenizer to `directory` and return it loaded from there."""
    from mi_course.data.word_tokenizer import build_word_tokenizer

    return build_word_tokenizer(VOCAB, directory, pad=PAD, bos=BOS, unk=UNK)


# --- structures ---------------------------------------------------------------------------------


def final_clause(final: str, x: str, y: str | None) -> str:
    """Final clause `final` with its slots X and Y (Y only in the relative clause) set to S or C."""
    clause = FINALS[final].replace("X", x)
    return clause if y is None else clause.replace("Y", y)


@dataclass(frozen=True)
class Structure:
    """One sentence structure: which intro, middle and final clause, and who fills X and Y."""

    intro: str
    middle: str
    final: str
    x: str  # "S" or "C"
    y: str | None  # "S" or "C" for the relative final clause, else None

    @property
    def template(self) -> str:
        """The structure as a template over slots, with X and Y resolved to S or C."""
        return " ".join(part for part in (INTROS[self.intro], MIDDLES[self.middle],
                                          final_clause(self.final, self.x, self.y)) if part)

    @property
    def name(self) -> str:
        roles = self.x + (self.y or "")
        return f"{self.intro}/{self.middle}/{self.final}/{roles}"


def _mentions(template: str) -> dict[str, int]:
    words = template.split()
    return {slot: words.count(slot) for slot in ("A", "B", "S", "C")}


def _valid(structure: Structure) -> bool:
    """S must be mentioned again after the intro, and C never or at least twice."""
    counts = _mentions(structure.template)
    return counts["S"] >= 1 and counts["C"] != 1


def all_structures() -> list[Structure]:
    """Every valid structure of the grammar, in a fixed order."""
    out = []
    for intro, middle, final in product(INTROS, MIDDLES, FINALS):
        for x in ("S", "C"):
            for y in ("S", "C") if final == "relative" else (None,):
                structure = Structure(intro, middle, final, x, y)
                if _valid(structure):
                    out.append(structure)
    return out


def is_heldout(structure: Structure) -> bool:
    return structure.intro in HELDOUT_INTROS or (structure.middle, structure.final) in HELDOUT_COMBINATIONS


STRUCTURES: tuple[Structure, ...] = tuple(all_structures())
TRAIN_STRUCTURES: tuple[Structure, ...] = tuple(s for s in STRUCTURES if not is_heldout(s))
# The held-out structures the release metrics are reported on, one per kind of novelty.
HELDOUT_STRUCTURES: dict[str, Structure] = {
    "talked (new intro)": Structure("talked", "none", "subject", "S", None),
    "where (new intro)": Structure("where", "none", "subject", "S", None),
    "visited + meet, C gives": Structure("visited", "meet", "subject", "C", None),
    "buy + relative (new pair)": Structure("when", "buy", "relative", "S", "C"),
    "talk + passive (new pair)": Structure("met", "talk", "passive", "C", None),
}
# Training structures in the classic IOI shape (S2 is the final subject and the last name):
CLASSIC_STRUCTURES: tuple[Structure, ...] = tuple(
    s for s in TRAIN_STRUCTURES if s.middle == "none" and s.final == "subject"
)


# --- names --------------------------------------------------------------------------------------


def heldout_pairs() -> frozenset[frozenset[str]]:
    """Unordered name pairs that never occur together anywhere in the training corpus."""
    pairs = [frozenset(pair) for pair in combinations(NAMES, 2)]
    chosen = random.Random(_HELDOUT_PAIR_SEED).sample(pairs, round(HELDOUT_PAIR_FRACTION * len(pairs)))
    return frozenset(chosen)


_HELDOUT_PAIRS = heldout_pairs()


def has_heldout_pair(names: list[str] | set[str]) -> bool:
    """Whether any two distinct names of `names` form a held-out pair."""
    return any(frozenset(pair) in _HELDOUT_PAIRS for pair in combinations(set(names), 2))


def _choose_names(rng: random.Random, count: int, pairs: PairSplit) -> list[str]:
    """`count` distinct names. "train": no two form a held-out pair. "heldout": the first two
    form a held-out pair (the others are unconstrained)."""
    while True:
        names = rng.sample(NAMES, count)
        if pairs == "heldout" and frozenset(names[:2]) in _HELDOUT_PAIRS:
            return names
        if pairs == "train" and not has_heldout_pair(names):
            return names


# --- filling a structure ------------------------------------------------------------------------


def _fill(template: str, names: dict[str, str], rng: random.Random) -> tuple[list[str], dict[str, list[int]]]:
    """The words of `template` with every slot filled, and where each name slot landed (slots
    A, B, S, C always; any other name slot of `names` too)."""
    words: list[str] = []
    where: dict[str, list[int]] = {slot: [] for slot in ("A", "B", "S", "C", *names)}
    for slot in template.split():
        if slot in names:
            where[slot].append(len(words))
            words.append(names[slot])
        elif slot == "P":
            words.append(rng.choice(PLACES))
        elif slot == "O":
            words.append(rng.choice(OBJECTS))
        elif slot == "V":
            words.append(rng.choice(VERBS))
        elif slot == "D":
            words.append(rng.choice(DETERMINERS))
        elif slot == "ADV":
            words.extend(rng.choice(ADVERBIALS).split())
        else:
            words.append(slot)
    return words, where


@dataclass(frozen=True)
class IOIPrompts:
    """A batch of IOI prompts ending just before the answer, right-padded with `<pad>`.

    `positions` index each row (with `<bos>` at 0): "IO", "S1" (the intro's S), "S2" (the last
    mention of S before the end), "C" (the last mention of C, or -1), "end" (the final "to",
    where IO is predicted). `corrupted` is the same row with every mention of S after the intro
    replaced by a fresh name (so nothing is repeated from the pair): the `s2` corruption of
    Wang et al. (2022), aligned token by token with `clean`.
    """

    clean: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"]
    io: Int[Tensor, "batch"]
    s: Int[Tensor, "batch"]
    positions: dict[str, Int[Tensor, "batch"]]
    structure: tuple[str, ...]
    abba: Bool[Tensor, "batch"]
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return self.clean.shape[0]


def _encode(words: list[str]) -> list[int]:
    return [TOKEN_ID[BOS]] + [TOKEN_ID[word] for word in words]


def _pad(rows: list[list[int]], length: int | None = None) -> Int[Tensor, "batch pos"]:
    return ioi.pad_rows(rows, TOKEN_ID[PAD], length)


def _sentence(
    structure: Structure, rng: random.Random, pairs: PairSplit, abba: bool, opener: bool
) -> tuple[list[str], dict[str, list[int]], dict[str, str]]:
    io, s, c = _choose_names(rng, 3, pairs)
    names = {"A": io if abba else s, "B": s if abba else io, "S": s, "C": c}
    prefix = rng.choice(OPENERS).replace("P", rng.choice(PLACES)).split() if opener else []
    words, where = _fill(structure.template, names, rng)
    where = {slot: [len(prefix) + i for i in spots] for slot, spots in where.items()}
    return prefix + words, where, {"IO": io, "S": s, "C": c}


def ioi_prompts(
    n: int,
    seed: int = 0,
    *,
    structures: list[Structure] | tuple[Structure, ...] | None = None,
    pairs: PairSplit = "heldout",
) -> IOIPrompts:
    """`n` IOI prompts (ABBA and BABA alternating) from `structures` (default: the held-out ones).

    `pairs="heldout"` makes (IO, S) a pair that never occurs in training; "train" a pair that
    does. Rows cycle through `structures` in order, so each gets n / len(structures) prompts.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if pairs not in ("train", "heldout"):
        raise ValueError(f"pairs must be 'train' or 'heldout', got {pairs!r}")
    pool = list(HELDOUT_STRUCTURES.values()) if structures is None else list(structures)
    if not pool:
        raise ValueError("structures is empty")
    rng = random.Random(seed)
    clean, corrupt, io_ids, s_ids, names, abbas, texts = [], [], [], [], [], [], []
    positions: dict[str, list[int]] = {"IO": [], "S1": [], "S2": [], "C": [], "end": []}
    for row in range(n):
        structure, abba = pool[row % len(pool)], row % 2 == 0
        words, where, who = _sentence(structure, rng, pairs, abba, opener=False)
        fresh = rng.choice([name for name in NAMES if name not in who.values()])
        corrupted = list(words)
        for spot in where["S"]:
            corrupted[spot] = fresh
        positions["IO"].append(1 + (where["A"] if abba else where["B"])[0])
        positions["S1"].append(1 + (where["B"] if abba else where["A"])[0])
        positions["S2"].append(1 + where["S"][-1])
        positions["C"].append(1 + where["C"][-1] if where["C"] else -1)
        positions["end"].append(len(words))
        clean.append(_encode(words))
        corrupt.append(_encode(corrupted))
        io_ids.append(TOKEN_ID[who["IO"]])
        s_ids.append(TOKEN_ID[who["S"]])
        names.append(structure.name)
        abbas.append(abba)
        texts.append(" ".join(words))
    return IOIPrompts(
        clean=_pad(clean), corrupted=_pad(corrupt), io=torch.tensor(io_ids), s=torch.tensor(s_ids),
        positions={key: torch.tensor(value) for key, value in positions.items()},
        structure=tuple(names), abba=torch.tensor(abbas), texts=tuple(texts),
    )


# --- the training corpus ------------------------------------------------------------------------

DEFAULT_MIX: dict[str, float] = {"ioi": 0.6, "narrative": 0.15, "repeat": 0.25}
_OTHER_WORDS = tuple(word for word in VOCAB if word not in (PAD, BOS, UNK, *NAMES))


def _ioi_row(rng: random.Random) -> list[str]:
    structure = rng.choice(TRAIN_STRUCTURES)
    words, _, who = _sentence(structure, rng, "train", rng.random() < 0.5, opener=True)
    return words + [who["IO"], "."]


def _narrative_row(rng: random.Random) -> list[str]:
    """One to three narrative sentences; their names come from one draw, so no held-out pair meets."""
    clauses = rng.randint(1, 3)
    names = _choose_names(rng, 2 * clauses, "train")
    words: list[str] = []
    for index in range(clauses):
        slots = {"A": names[2 * index], "B": names[2 * index + 1]}
        words += _fill(rng.choice(NARRATIVE).replace("N", "A").replace("M", "B"), slots, rng)[0]
    return words


def _repeat_row(rng: random.Random, n_ctx: int) -> list[str]:
    """A repeated segment, predictable only by induction (see `ioi.repeated_segment_row`); names
    come from four per row, none a held-out pair."""
    return ioi.repeated_segment_row(rng, n_ctx, _choose_names(rng, 4, "train"), _OTHER_WORDS)


def training_batch(
    rng: random.Random, batch_size: int, n_ctx: int, mix: dict[str, float] | None = None
) -> Int[Tensor, "batch n_ctx"]:
    """One batch of `<bos>`-started, `<pad>`-filled rows, one sample each, kinds drawn from `mix`.

    Only training structures and training name pairs occur. Loss belongs on every non-pad token.
    """
    mix = DEFAULT_MIX if mix is None else mix
    unknown = set(mix) - set(DEFAULT_MIX)
    if unknown:
        raise ValueError(f"unknown sample kinds {sorted(unknown)}; use {list(DEFAULT_MIX)}")
    makers = {"ioi": _ioi_row, "narrative": _narrative_row, "repeat": lambda r: _repeat_row(r, n_ctx)}
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=batch_size)
    rows = [_encode(makers[kind](rng)) for kind in kinds]
    if max(map(len, rows)) > n_ctx:
        raise ValueError(f"n_ctx={n_ctx} is too short for the longest row ({max(map(len, rows))} tokens)")
    return _pad(rows, n_ctx)


# --- the ABC distribution -----------------------------------------------------------------------


def abc_tokens(prompts: IOIPrompts, seed: int = 0) -> Int[Tensor, "batch pos"]:
    """Wang et al.'s ABC distribution, aligned token by token with `prompts.clean`: the same
    sentences with IO, S1 and S2 three distinct names, none of them the prompt's own.

    Built from the S2-corrupted prompts (whose later mentions of S already carry a fresh name),
    with IO and S1 replaced by two more names that occur nowhere in the row. Nothing is left
    for the model to answer with, so a head's mean output over these prompts carries the
    sentence's shape but no information about which name is the answer.
    """
    rng = random.Random(seed)
    tokens = prompts.corrupted.clone()
    for row in range(len(prompts)):
        present = set(tokens[row].tolist())
        fresh_io, fresh_s = rng.sample([TOKEN_ID[name] for name in NAMES if TOKEN_ID[name] not in present], 2)
        tokens[row, prompts.positions["IO"][row]] = fresh_io
        tokens[row, prompts.positions["S1"][row]] = fresh_s
    return tokens
