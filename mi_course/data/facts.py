"""A synthetic knowledge base stated in a small word-level language: the data of `facts-4l`.

Causal tracing (Meng et al. 2022) asks where a language model stores a fact such as "Miles
Davis plays the trumpet". To ask that offline we need a model that recalls facts about subjects
spelled with several tokens, stated in several ways. This module builds such a world:

- 300 *subjects*, people named by 2 or 3 name tokens ("ada moss", "ben kai rook"): first names,
  middle names and family names come from separate pools, so no subject is a prefix of another,
  and every name token is shared by many subjects, so only the whole name identifies one;
- 5 *relations* (city, job, sport, language, pet), each with a one-token object drawn uniformly
  per subject from that relation's objects;
- for each relation, 7 *training phrasings* (three or more with the subject not first, e.g. "the
  town where S lives is") and 1 *held-out phrasing* that never occurs in training but uses only
  trained words, so recall on it measures whether the fact, not a sentence, was learned;
- each training sentence appears plainly and after a random 1-2 word *filler* ("well so"), so
  subject positions vary.

A prompt is `<bos>`, an optional filler, the phrasing with the subject filled in; the object is
the next token. The knowledge base is fixed (seed `KB_SEED`), so every model trained on it and
every chapter agree on the facts; the training seed only changes the fillers and batch order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"
FIRST_NAMES: tuple[str, ...] = (
    "ada", "ben", "cy", "dee", "eli", "fay", "gus", "hal", "ida", "jo", "kit", "lou",
    "max", "ned", "ola", "pia", "quin", "roy", "sue", "ted", "uma", "val", "wes", "zoe",
)
MIDDLE_NAMES: tuple[str, ...] = ("kai", "lee", "mae", "rae", "jay", "ray", "may", "sky")
FAMILY_NAMES: tuple[str, ...] = (
    "moss", "rook", "vale", "hart", "finch", "crane", "stone", "wolfe", "marsh", "pike", "reed", "frost",
    "lark", "birch", "brook", "dale", "fox", "glen", "holt", "knox", "lowe", "nash", "penn", "quill",
)
OBJECTS: dict[str, tuple[str, ...]] = {
    "city": ("paris", "rome", "tokyo", "cairo", "lima", "oslo", "delhi", "sydney", "boston", "madrid"),
    "job": ("doctor", "lawyer", "farmer", "teacher", "pilot", "baker", "nurse", "singer", "painter", "chef"),
    "sport": ("football", "tennis", "golf", "rugby", "hockey", "cricket", "boxing", "chess"),
    "language": ("french", "spanish", "german", "arabic", "hindi", "russian", "greek", "swahili"),
    "pet": ("cat", "dog", "parrot", "rabbit", "horse", "snake", "turtle", "hamster"),
}
RELATIONS: tuple[str, ...] = tuple(OBJECTS)
# "S" marks the subject; the object follows the last word. Each relation: 7 training phrasings
# (at least 3 with the subject not first), then the held-out one, whose words all occur in training.
# The word that names the relation in a held-out phrasing ("profession", "language", "home")
# occurs in training phrasings of a different shape, where no other word gives the relation away.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "city": (
        "S lives in", "S is at home in", "S is from the city of", "the town where S lives is",
        "the home of S is in", "S makes a home in", "the city of S is",
    ),
    "job": (
        "S works as a", "the job S has is that of a", "the profession S has is that of a", "by profession S is a",
        "the job of S is", "everyone knows that S works as a", "S is by profession a",
    ),
    "sport": (
        "S plays", "S is good at playing", "S likes to play", "the sport of S is",
        "the game S plays is", "on weekends S plays", "people say that S is good at",
    ),
    "language": (
        "S speaks", "S is fluent in", "the language that S writes is", "the mother tongue of S is",
        "the language S knows best is", "at home S speaks", "people say that S speaks",
    ),
    "pet": (
        "S has a pet", "S owns a", "S takes care of a", "the pet of S is a",
        "the animal S owns is a", "at home S keeps a", "everyone knows that S owns a",
    ),
}
HELDOUT_PHRASINGS: dict[str, str] = {
    "city": "S has a home in",
    "job": "the profession of S is",
    "sport": "the sport that S plays is",
    "language": "the language of S is",
    "pet": "the pet that S owns is a",
}
FILLERS: tuple[str, ...] = ("well", "so", "indeed", "now", "okay", "yes", "today", "then")
N_SUBJECTS, N_THREE_TOKEN, KB_SEED = 300, 100, 0
MAX_FILLER = 2


def _words() -> tuple[str, ...]:
    seen: dict[str, None] = {PAD: None, BOS: None, UNK: None}
    for group in (FIRST_NAMES, MIDDLE_NAMES, FAMILY_NAMES, *OBJECTS.values(), FILLERS):
        seen.update(dict.fromkeys(group))
    for phrasing in (*[p for ps in PHRASINGS.values() for p in ps], *HELDOUT_PHRASINGS.values()):
        seen.update(dict.fromkeys(word for word in phrasing.split() if word != "S"))
    return tuple(seen)


VOCAB: tuple[str, ...] = _words()
TOKEN_ID: dict[str, int] = {word: index for index, word in enumerate(VOCAB)}
SUBJECT_SLOT = "S"


@dataclass(frozen=True)
class Fact:
    """One fact: `subject` (2-3 words) has `obj` for `relation`."""

    subject: tuple[str, ...]
    relation: str
    obj: str


def subjects(seed: int = KB_SEED) -> list[tuple[str, ...]]:
    """The N_SUBJECTS distinct subjects: N_THREE_TOKEN of three name tokens, the rest of two."""
    rng = random.Random(seed)
    pairs = rng.sample([(f, l) for f in FIRST_NAMES for l in FAMILY_NAMES], N_SUBJECTS)
    middles = [rng.choice(MIDDLE_NAMES) for _ in range(N_THREE_TOKEN)]
    return [(first, middle, last) for (first, last), middle in zip(pairs, middles)] + pairs[N_THREE_TOKEN:]


def knowledge_base(seed: int = KB_SEED) -> list[Fact]:
    """Every fact: one object per (subject, relation), drawn uniformly; subject-major order."""
    rng = random.Random(seed + 1)
    return [
        Fact(subject, relation, rng.choice(OBJECTS[relation]))
        for subject in subjects(seed)
        for relation in RELATIONS
    ]


@dataclass(frozen=True)
class FactPrompts:
    """Right-padded prompts and where their parts sit.

    `tokens[i, :length[i]]` is `<bos>`, filler, the phrasing with the subject; the answer is
    `answer[i]`, the token after position `length[i] - 1` (`final`). `subject_mask` marks the
    subject's tokens; `last_subject` is the position of its last token.
    """

    tokens: Int[Tensor, "batch pos"]
    answer: Int[Tensor, " batch"]
    length: Int[Tensor, " batch"]
    subject_mask: Bool[Tensor, "batch pos"]
    facts: tuple[Fact, ...]

    @property
    def final(self) -> Int[Tensor, " batch"]:
        """The last prompt position, where the object is predicted."""
        return self.length - 1

    @property
    def last_subject(self) -> Int[Tensor, " batch"]:
        positions = torch.arange(self.tokens.shape[1]).expand_as(self.subject_mask)
        return torch.where(self.subject_mask, positions, -1).amax(-1)

    @property
    def first_subject(self) -> Int[Tensor, " batch"]:
        return self.subject_mask.int().argmax(-1)

    def with_answers(self) -> Int[Tensor, "batch pos"]:
        """`tokens` with the answer written after each prompt: training rows."""
        rows = torch.cat([self.tokens, torch.full_like(self.tokens[:, :1], TOKEN_ID[PAD])], dim=1)
        return rows.scatter(1, self.length[:, None], self.answer[:, None])


def prompt_words(fact: Fact, phrasing: str, filler: tuple[str, ...] = ()) -> tuple[list[str], list[bool]]:
    """The words of a prompt (with `<bos>`) and which of them belong to the subject."""
    words, is_subject = [BOS, *filler], [False] * (1 + len(filler))
    for word in phrasing.split():
        part = list(fact.subject) if word == SUBJECT_SLOT else [word]
        words += part
        is_subject += [word == SUBJECT_SLOT] * len(part)
    return words, is_subject


def make_prompts(
    facts: list[Fact], phrasings: list[str], fillers: list[tuple[str, ...]] | None = None
) -> FactPrompts:
    """Prompts stating `facts[i]` with `phrasings[i]` (after `fillers[i]`), right-padded with `<pad>`."""
    if len(phrasings) != len(facts) or (fillers is not None and len(fillers) != len(facts)):
        raise ValueError("facts, phrasings and fillers must have the same length")
    rows = [
        prompt_words(fact, phrasing, fillers[i] if fillers else ())
        for i, (fact, phrasing) in enumerate(zip(facts, phrasings))
    ]
    width = max(len(words) for words, _ in rows)
    pad = [PAD] * width
    tokens = torch.tensor([[TOKEN_ID[word] for word in (words + pad)[:width]] for words, _ in rows])
    mask = torch.tensor([(is_subject + [False] * width)[:width] for _, is_subject in rows])
    return FactPrompts(
        tokens=tokens,
        answer=torch.tensor([TOKEN_ID[fact.obj] for fact in facts]),
        length=torch.tensor([len(words) for words, _ in rows]),
        subject_mask=mask,
        facts=tuple(facts),
    )


def phrasing_prompts(heldout: bool = False, index: int | None = None, kb: list[Fact] | None = None) -> FactPrompts:
    """Every fact stated once per phrasing, with no filler: the training phrasings, only the
    one numbered `index`, or (`heldout=True`) the held-out phrasing."""
    kb = knowledge_base() if kb is None else kb
    chosen: dict[str, tuple[str, ...]] = {
        relation: (HELDOUT_PHRASINGS[relation],) if heldout
        else PHRASINGS[relation] if index is None else (PHRASINGS[relation][index],)
        for relation in RELATIONS
    }
    pairs = [(fact, phrasing) for fact in kb for phrasing in chosen[fact.relation]]
    return make_prompts([fact for fact, _ in pairs], [phrasing for _, phrasing in pairs])


def training_corpus(seed: int = 0) -> FactPrompts:
    """The training set: every fact in every training phrasing, once plainly and once after a
    1-2 word filler drawn with `seed` (2 x 1,500 x 7 = 21,000 prompts)."""
    rng = random.Random(seed)
    facts, phrasings, fillers = [], [], []
    for fact in knowledge_base():
        for phrasing in PHRASINGS[fact.relation]:
            filler = tuple(rng.choice(FILLERS) for _ in range(rng.randint(1, MAX_FILLER)))
            facts += [fact, fact]
            phrasings += [phrasing, phrasing]
            fillers += [(), filler]
    return make_prompts(facts, phrasings, fillers)


def build_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """The word-level tokenizer over VOCAB (`<pad>` 0, `<bos>` 1, `<unk>` 2)."""
    from mi_course.data.word_tokenizer import build_word_tokenizer

    return build_word_tokenizer(VOCAB, directory, pad=PAD, bos=BOS, unk=UNK)


def swap_pairs(n: int, seed: int = 0, heldout: bool = False) -> tuple[FactPrompts, FactPrompts]:
    """`n` clean/corrupted prompt pairs for activation patching: the same phrasing of the same
    relation (a training phrasing, or the held-out one), with two subjects of the same length
    whose objects differ. The pairs align position by position, so any site can be patched."""
    rng = random.Random(seed)
    by_relation: dict[str, list[Fact]] = {relation: [] for relation in RELATIONS}
    for fact in knowledge_base():
        by_relation[fact.relation].append(fact)
    clean, corrupt, phrasings = [], [], []
    while len(clean) < n:
        relation = rng.choice(RELATIONS)
        first, second = rng.sample(by_relation[relation], 2)
        if len(first.subject) != len(second.subject) or first.obj == second.obj:
            continue
        clean.append(first)
        corrupt.append(second)
        phrasings.append(HELDOUT_PHRASINGS[relation] if heldout else rng.choice(PHRASINGS[relation]))
    return make_prompts(clean, phrasings), make_prompts(corrupt, phrasings)
