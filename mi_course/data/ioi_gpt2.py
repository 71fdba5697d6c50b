"""IOI prompts for GPT-2 small in the style of Wang et al. (2023): short templates, names,
places and objects that are single GPT-2 tokens, ABBA and BABA orders, an S2-corrupted twin and
the ABC distribution (three distinct names), all aligned token by token within a template.

Used by Chapter 6's online section and its `online` test; nothing here runs offline, since it
needs GPT-2's tokenizer.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch
from jaxtyping import Int
from torch import Tensor

from mi_course.data.ioi_grammar import IOIPrompts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# {A} {B}: the pair in the first clause; {S}: the repeated name; {P} place, {O} object.
TEMPLATES: tuple[str, ...] = (
    "Then, {A} and {B} went to the {P}. {S} gave a {O} to",
    "When {A} and {B} got a {O} at the {P}, {S} decided to give it to",
    "After {A} and {B} went to the {P}, {S} gave a {O} to",
    "While {A} and {B} were working at the {P}, {S} gave a {O} to",
    "Friends {A} and {B} found a {O} at the {P}. {S} gave it to",
)
NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "James", "Dan", "Sarah", "Mark", "Paul", "Michael", "David", "Lisa", "Kate",
    "Anne", "Laura", "Adam", "Alex", "Jack", "Jane", "Peter", "Chris", "Ryan", "Emma", "George", "Steve",
)
PLACES: tuple[str, ...] = ("store", "park", "school", "hospital", "office", "station", "house", "garden")
OBJECTS: tuple[str, ...] = ("drink", "ring", "book", "bone", "kiss", "basketball", "computer", "necklace")


def _single(tokenizer: PreTrainedTokenizerBase, words: tuple[str, ...]) -> list[str]:
    """The words that are one token after a space, as they appear mid-sentence."""
    return [word for word in words if len(tokenizer.encode(" " + word)) == 1]


def ioi_prompts(
    tokenizer: PreTrainedTokenizerBase, n: int, seed: int = 0
) -> tuple[IOIPrompts, Int[Tensor, "batch pos"]]:
    """`n` prompts cycling through the templates (ABBA and BABA alternating), `<|endoftext|>`
    first, and the aligned ABC tokens. Rows of one template have the same length."""
    rng = random.Random(seed)
    names, places, objects = _single(tokenizer, NAMES), _single(tokenizer, PLACES), _single(tokenizer, OBJECTS)
    encode = lambda text: tokenizer.encode(text)  # noqa: E731 - GPT-2's encoder adds no specials
    clean, corrupt, abc, io_ids, s_ids, abbas, texts, structures = [], [], [], [], [], [], [], []
    positions: dict[str, list[int]] = {"IO": [], "S1": [], "S2": [], "C": [], "end": []}
    for row in range(n):
        template, abba = TEMPLATES[row % len(TEMPLATES)], row % 2 == 0
        io, s, fresh, x, y = rng.sample(names, 5)
        place, obj = rng.choice(places), rng.choice(objects)
        rows = {}
        for kind, (a_name, b_name, s_name) in {
            "clean": ((io, s, s) if abba else (s, io, s)),
            "corrupt": ((io, s, fresh) if abba else (s, io, fresh)),
            "abc": ((x, y, fresh) if abba else (y, x, fresh)),
        }.items():
            before, after = template.split("{S}")
            first = encode(before.format(A=a_name, B=b_name, P=place, O=obj).rstrip(" ")) if before else []
            rest = encode(" " + s_name + after.format(P=place, O=obj))
            rows[kind] = [tokenizer.bos_token_id] + first + rest
            if kind == "clean":
                ids = rows[kind]
                s2 = 1 + len(first)
                s1 = next(i for i, t in enumerate(ids[:s2]) if t == ids[s2])
                io_pos = next(i for i, t in enumerate(ids[:s2]) if t == encode(" " + io)[0])
        clean.append(rows["clean"])
        corrupt.append(rows["corrupt"])
        abc.append(rows["abc"])
        io_ids.append(encode(" " + io)[0])
        s_ids.append(encode(" " + s)[0])
        for key, value in (("IO", io_pos), ("S1", s1), ("S2", s2), ("C", -1), ("end", len(rows["clean"]) - 1)):
            positions[key].append(value)
        abbas.append(abba)
        texts.append(tokenizer.decode(rows["clean"][1:]))
        structures.append(template)
    length = max(map(len, clean))
    pad = lambda rows: torch.tensor([r + [tokenizer.eos_token_id] * (length - len(r)) for r in rows])  # noqa: E731
    prompts = IOIPrompts(
        clean=pad(clean), corrupted=pad(corrupt), io=torch.tensor(io_ids), s=torch.tensor(s_ids),
        positions={key: torch.tensor(value) for key, value in positions.items()},
        structure=tuple(structures), abba=torch.tensor(abbas), texts=tuple(texts),
    )
    return prompts, pad(abc)
