"""Round 2 of the IOI grammar: composed intros, and sentences whose IO comes after the intro.

A search, not the shipped language: `ioi-4l` is trained on `mi_course.data.ioi_grammar`, and
nothing here changes that module's outputs. Two weaknesses of that language motivate this one
(`mi_course/weights/ioi-4l/MODEL_CARD.md`):

- IO is always in the intro and every later name is a non-answer, so "the intro's names minus
  the names mentioned later" solves every sentence with no duplicate detection; the shipped
  model's S-inhibition is a layer-0 head that picks later names by position. Here some sentences
  (*late* structures) name S (and perhaps C) in the intro and mention IO once, *after* it
  ("S went to the P . S met I at the P . S gave D O to"): only "the name mentioned once" holds
  in every sentence.
- New first clauses are what the shipped recipe fails on, and it saw only 7 intros. Here intros
  are *composed* from a lead word, a clause naming the pair and an ending (over a hundred), none
  of them one of the three held-out intros of the first language.

Same vocabulary and token ids as `ioi_grammar` (no new words), same held-out name pairs, and the
first language's held-out structures are still never produced. New held-out structures: every
late structure with the late intro `S_ALONE` or the IO clause `IO_CLAUSES["there"]`.

Round 3 adds *final-IO* structures (mix `final_io`): in every structure above the final clause
names only S or C, so the last name before the answer is never IO; here IO's one mention falls
inside the final clause ("S went to the P . then , S gave the O that I bought to"). Round 2's
structures, mixes and prompts are unchanged (pinned by a test of digests).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from itertools import product
from typing import Callable

import torch
from jaxtyping import Int
from torch import Tensor

from mi_course.data import ioi
from mi_course.data import ioi_grammar as g

# --- composed intros (the pair A, B in either order) --------------------------------------------

LEADS: dict[str, str] = {"": ".", "when": ",", "while": ",", "after": ",", "because": ","}
# Clauses naming the pair. Never "A talked with B", "A visited B" or "where A and B": those
# are the held-out intros of the first language.
PAIR_CLAUSES: tuple[str, ...] = (
    "A and B went to the P",
    "A and B were at the P",
    "A and B had lunch at the P",
    "A and B were working at the P",
    "A and B found D O at the P",
    "A and B bought D O at the P",
    "A and B talked about the O",
    "A and B were tired",
    "A and B were happy",
    "A and B liked the P",
    "A met B at the P",
    "A had lunch with B",
    "A went to the P with B",
    "A found B at the P",
    "A bought D O from B",
    "A was at the P with B",
)
ENDINGS: tuple[str, ...] = ("", "because it was late", "after a while")


def composed_intros() -> tuple[str, ...]:
    """Every composed intro: lead, pair clause, ending, then "." (no lead) or "," (a lead)."""
    out = []
    for (lead, stop), clause, ending in product(LEADS.items(), PAIR_CLAUSES, ENDINGS):
        if lead == "because" and ending == "because it was late":
            continue
        out.append(" ".join(part for part in (lead, clause, ending, stop) if part))
    return tuple(out)


COMPOSED_INTROS = composed_intros()

# --- late structures: IO's only mention comes after the intro -----------------------------------

# Intros without IO: S alone, or S with C (then C must come back later).
LATE_INTROS: dict[str, str] = {
    "went": "S went to the P .",
    "with_c": "S and C went to the P .",
    "when_with_c": "when S and C were at the P ,",
    "lunch": "S had lunch with C .",
    "working": "while S was working at the P ,",
    "found": "S found D O at the P .",
    # Only in held-out structures:
    "alone": "S was at the P .",
}
S_ALONE = "alone"
# The clause with IO's one mention (I); S may be mentioned again in it.
IO_CLAUSES: dict[str, str] = {
    "met": "S met I at the P .",
    "talk": "S talked with I .",
    "saw_s": "I met S at the P .",
    "bought": "S bought D O from I .",
    "lunch": "I had lunch with S .",
    # Only in held-out structures:
    "there": "I was there too .",
}
HELDOUT_IO_CLAUSE = "there"
# Before the final clause, optionally one of the first language's middles without IO.
LATE_MIDDLES: tuple[str, ...] = ("none", "tired", "talk", "there")


@dataclass(frozen=True)
class LateStructure:
    """A structure whose IO is mentioned once, after the intro."""

    intro: str
    io_clause: str
    middle: str
    final: str
    x: str
    y: str | None

    @property
    def template(self) -> str:
        final = g.final_clause(self.final, self.x, self.y)
        parts = (LATE_INTROS[self.intro], IO_CLAUSES[self.io_clause], g.MIDDLES[self.middle], final)
        return " ".join(part for part in parts if part)

    @property
    def name(self) -> str:
        return f"late:{self.intro}/{self.io_clause}/{self.middle}/{self.final}/{self.x}{self.y or ''}"


def _late_valid(structure: LateStructure) -> bool:
    words = structure.template.split()
    return words.count("I") == 1 and words.count("S") >= 2 and words.count("C") != 1


def late_structures() -> list[LateStructure]:
    out = []
    for intro, io_clause, middle, final in product(LATE_INTROS, IO_CLAUSES, LATE_MIDDLES, g.FINALS):
        for x in ("S", "C"):
            for y in ("S", "C") if final == "relative" else (None,):
                structure = LateStructure(intro, io_clause, middle, final, x, y)
                if _late_valid(structure):
                    out.append(structure)
    return out


def late_is_heldout(structure: LateStructure) -> bool:
    """Held out here, or a combination the first language holds out (the IO clause "bought"
    counts as its middle "buy")."""
    middle = "buy" if structure.io_clause == "bought" and structure.middle == "none" else structure.middle
    return (
        structure.intro == S_ALONE or structure.io_clause == HELDOUT_IO_CLAUSE
        or (middle, structure.final) in g.HELDOUT_COMBINATIONS
        or (structure.io_clause == "bought" and structure.final == "relative")
    )


LATE_STRUCTURES: tuple[LateStructure, ...] = tuple(late_structures())
LATE_TRAIN: tuple[LateStructure, ...] = tuple(s for s in LATE_STRUCTURES if not late_is_heldout(s))
LATE_HELDOUT: dict[str, LateStructure] = {
    "late: S alone, S met IO": LateStructure("alone", "met", "none", "subject", "S", None),
    "late: IO was there, C gives": LateStructure("with_c", "there", "tired", "subject", "C", None),
}

# --- final-IO structures (round 3): IO's only mention is inside the final clause -----------------

# In every structure above the final clause names only S or C, so the last name before the
# answer is never IO, and a head that reads the most recent names by position lets later layers
# subtract them. Here IO's one mention falls inside the final clause; the last name before END is
# IO in some of these clauses and S or C in others.
FINAL_IO_CLAUSES: dict[str, str] = {
    "relative": "ADV X V the O that I bought to",
    "met": "ADV X met I and V D O to",
    "passive": "ADV the O that I bought was V by X to",
    # Only in held-out structures:
    "found": "ADV X found I at the P and V D O to",
}
HELDOUT_FINAL_IO_CLAUSE = "found"
# Middle/final-IO pairs never seen together in training.
HELDOUT_FINAL_IO_COMBINATIONS: frozenset[tuple[str, str]] = frozenset({("talk", "relative")})


@dataclass(frozen=True)
class FinalIOStructure:
    """A structure whose intro names S (and perhaps C) and whose final clause holds IO's one mention."""

    intro: str  # a key of LATE_INTROS
    middle: str  # a key of the first language's MIDDLES
    final: str  # a key of FINAL_IO_CLAUSES
    x: str  # "S" or "C": the final clause's other name

    @property
    def template(self) -> str:
        parts = (LATE_INTROS[self.intro], g.MIDDLES[self.middle], FINAL_IO_CLAUSES[self.final].replace("X", self.x))
        return " ".join(part for part in parts if part)

    @property
    def name(self) -> str:
        return f"final-io:{self.intro}/{self.middle}/{self.final}/{self.x}"


def final_io_structures() -> list[FinalIOStructure]:
    out = []
    for intro, middle, final, x in product(LATE_INTROS, g.MIDDLES, FINAL_IO_CLAUSES, ("S", "C")):
        structure = FinalIOStructure(intro, middle, final, x)
        if _late_valid(structure):
            out.append(structure)
    return out


def final_io_is_heldout(structure: FinalIOStructure) -> bool:
    """Held out: the late intro `S_ALONE` (as in round 2), the final clause "found", a held-out
    middle/final pair, or a middle/final pair the first language holds out (the final-IO
    "relative" clause has the words of its "relative" final)."""
    pair = (structure.middle, structure.final)
    return (
        structure.intro == S_ALONE or structure.final == HELDOUT_FINAL_IO_CLAUSE
        or pair in HELDOUT_FINAL_IO_COMBINATIONS or pair in g.HELDOUT_COMBINATIONS
    )


FINAL_IO_STRUCTURES: tuple[FinalIOStructure, ...] = tuple(final_io_structures())
FINAL_IO_TRAIN: tuple[FinalIOStructure, ...] = tuple(s for s in FINAL_IO_STRUCTURES if not final_io_is_heldout(s))
FINAL_IO_HELDOUT: dict[str, FinalIOStructure] = {
    "final IO: S found IO (new clause)": FinalIOStructure("went", "none", "found", "S"),
    "final IO: talk + relative, C gives": FinalIOStructure("with_c", "talk", "relative", "C"),
    "final IO: S alone, passive": FinalIOStructure("alone", "tired", "passive", "S"),
}

# --- composed structures: a composed intro with the first language's middles and finals ---------


@dataclass(frozen=True)
class ComposedStructure:
    intro: str  # the intro's own text, over slots A, B, P, D, O
    middle: str
    final: str
    x: str
    y: str | None

    @property
    def template(self) -> str:
        final = g.final_clause(self.final, self.x, self.y)
        return " ".join(part for part in (self.intro, g.MIDDLES[self.middle], final) if part)

    @property
    def name(self) -> str:
        return f"composed:{self.intro}/{self.middle}/{self.final}/{self.x}{self.y or ''}"


def _random_composed(rng: random.Random) -> ComposedStructure:
    """A composed-intro structure whose middle/final part is a training one of the first language."""
    tail = rng.choice(g.TRAIN_STRUCTURES)
    return ComposedStructure(rng.choice(COMPOSED_INTROS), tail.middle, tail.final, tail.x, tail.y)


# --- sentences and prompts ----------------------------------------------------------------------

Structure = g.Structure | LateStructure | ComposedStructure | FinalIOStructure


def _sentence(
    structure: Structure, rng: random.Random, pairs: g.PairSplit, abba: bool, opener: bool
) -> tuple[list[str], dict[str, list[int]], dict[str, str]]:
    """Words of one sentence, where each role's mentions landed (keys IO, S, C), and the names."""
    io, s, c = g._choose_names(rng, 3, pairs)
    names = {"A": io if abba else s, "B": s if abba else io, "S": s, "C": c, "I": io}
    prefix = rng.choice(g.OPENERS).replace("P", rng.choice(g.PLACES)).split() if opener else []
    words, where = g._fill(structure.template, names, rng)
    where = {slot: [len(prefix) + i for i in spots] for slot, spots in where.items()}
    roles = {
        "IO": sorted(where["I"] + (where["A"] if abba else where["B"])),
        "S": sorted(where["S"] + (where["B"] if abba else where["A"])),
        "C": where["C"],
    }
    return prefix + words, roles, {"IO": io, "S": s, "C": c}


def ioi_prompts(
    n: int, seed: int = 0, *, structures: list[Structure] | tuple[Structure, ...], pairs: g.PairSplit = "heldout"
) -> g.IOIPrompts:
    """Like `ioi_grammar.ioi_prompts` for any structure of either language: S1 is S's first
    mention, S2 its last; the corruption replaces every later mention of S with a fresh name."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not structures:
        raise ValueError("structures is empty")
    rng = random.Random(seed)
    clean, corrupt, io_ids, s_ids, names, abbas, texts = [], [], [], [], [], [], []
    positions: dict[str, list[int]] = {"IO": [], "S1": [], "S2": [], "C": [], "end": []}
    for row in range(n):
        structure, abba = structures[row % len(structures)], row % 2 == 0
        words, roles, who = _sentence(structure, rng, pairs, abba, opener=False)
        fresh = rng.choice([name for name in g.NAMES if name not in who.values()])
        corrupted = list(words)
        for spot in roles["S"][1:]:
            corrupted[spot] = fresh
        positions["IO"].append(1 + roles["IO"][0])
        positions["S1"].append(1 + roles["S"][0])
        positions["S2"].append(1 + roles["S"][-1])
        positions["C"].append(1 + roles["C"][-1] if roles["C"] else -1)
        positions["end"].append(len(words))
        clean.append(g._encode(words))
        corrupt.append(g._encode(corrupted))
        io_ids.append(g.TOKEN_ID[who["IO"]])
        s_ids.append(g.TOKEN_ID[who["S"]])
        names.append(structure.name)
        abbas.append(abba)
        texts.append(" ".join(words))
    return g.IOIPrompts(
        clean=g._pad(clean), corrupted=g._pad(corrupt), io=torch.tensor(io_ids), s=torch.tensor(s_ids),
        positions={key: torch.tensor(value) for key, value in positions.items()},
        structure=tuple(names), abba=torch.tensor(abbas), texts=tuple(texts),
    )


def heldout_prompt_sets(final_io: bool = False) -> dict[str, Callable[[int, int, str], g.IOIPrompts]]:
    """This language's own held-out sets, for `ioi_4l.evaluate(extra_heldout=...)`: the late
    ones, and with `final_io` round 3's final-IO ones too."""
    chosen = LATE_HELDOUT | (FINAL_IO_HELDOUT if final_io else {})
    return {label: partial(_prompts_of, [s]) for label, s in chosen.items()}


def _prompts_of(structures: list[Structure], n: int, seed: int, pairs: str) -> g.IOIPrompts:
    return ioi_prompts(n, seed, structures=structures, pairs=pairs)


# --- the training corpus ------------------------------------------------------------------------

N_CTX = 48
REPEAT_LENGTH = 32  # a repeat row's length in words (the first language's rows fill n_ctx)
MIXES: dict[str, dict[str, float]] = {
    # classic: the first language's IOI rows; composed: composed intros; late: IO after the intro
    "late": {"classic": 0.3, "composed": 0.2, "late": 0.25, "narrative": 0.1, "repeat": 0.15},
    "late_induction": {"classic": 0.25, "composed": 0.2, "late": 0.2, "narrative": 0.1, "repeat": 0.1, "double": 0.15},
    "late_heavy": {"classic": 0.3, "composed": 0.25, "late": 0.25, "narrative": 0.05, "repeat": 0.05, "double": 0.1},
    # round 3: late_heavy with a fifth of the rows' IO inside the final clause
    "final_io": {"classic": 0.2, "composed": 0.2, "late": 0.2, "final_io": 0.2, "narrative": 0.05, "repeat": 0.05,
                 "double": 0.1},
}


def _ioi_row(rng: random.Random, structure: Structure) -> list[str]:
    words, _, who = _sentence(structure, rng, "train", rng.random() < 0.5, opener=True)
    return words + [who["IO"], "."]


def _double_row(rng: random.Random) -> list[str]:
    """Random words repeated once in full: induction and previous-token heads' favourite food."""
    half = rng.randint(6, REPEAT_LENGTH // 2)
    names = g._choose_names(rng, 4, "train")
    words = [rng.choice(names) if rng.random() < 0.3 else rng.choice(g._OTHER_WORDS) for _ in range(half)]
    return words + words


ROW_MAKERS: dict[str, Callable[[random.Random], list[str]]] = {
    "classic": lambda rng: _ioi_row(rng, rng.choice(g.TRAIN_STRUCTURES)),
    "composed": lambda rng: _ioi_row(rng, _random_composed(rng)),
    "late": lambda rng: _ioi_row(rng, rng.choice(LATE_TRAIN)),
    "final_io": lambda rng: _ioi_row(rng, rng.choice(FINAL_IO_TRAIN)),
    "narrative": g._narrative_row,
    "repeat": lambda rng: ioi.repeated_segment_row(rng, REPEAT_LENGTH + 1, g._choose_names(rng, 4, "train"), g._OTHER_WORDS),
    "double": _double_row,
}


def training_batch(
    rng: random.Random, batch_size: int, n_ctx: int = N_CTX, mix: dict[str, float] | str = "late"
) -> Int[Tensor, "batch pos"]:
    """One batch of `<bos>`-started rows, right-padded to the batch's longest row (at most
    `n_ctx`), kinds drawn from `mix` (a dict over `ROW_MAKERS` or a name in `MIXES`)."""
    mix = MIXES[mix] if isinstance(mix, str) else mix
    unknown = set(mix) - set(ROW_MAKERS)
    if unknown:
        raise ValueError(f"unknown sample kinds {sorted(unknown)}; use {list(ROW_MAKERS)}")
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=batch_size)
    rows = [g._encode(ROW_MAKERS[kind](rng)) for kind in kinds]
    if max(map(len, rows)) > n_ctx:
        raise ValueError(f"n_ctx={n_ctx} is too short for the longest row ({max(map(len, rows))} tokens)")
    return g._pad(rows)


def corpus(mix: dict[str, float] | str = "late") -> Callable[[random.Random, int, int], Tensor]:
    """A batch maker for `ioi_4l.train(corpus=...)`."""
    return partial(_corpus_batch, mix=mix)


def _corpus_batch(rng: random.Random, batch_size: int, n_ctx: int, mix: dict[str, float] | str) -> Tensor:
    return training_batch(rng, batch_size, n_ctx, mix)
