"""Word-level tokenizers for the course's synthetic languages.

A synthetic language has a fixed word list, so one word is one token and every analysis can
talk about words rather than sub-word pieces. The tokenizer is saved as an ordinary Hugging Face
tokenizer directory, because TransformerLens needs a tokenizer loaded from disk (an in-memory one
loses its name and fails inside `boot_native`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast


def build_word_tokenizer(
    words: Sequence[str], directory: str | Path, *, pad: str, bos: str, unk: str
) -> PreTrainedTokenizerFast:
    """Write a whitespace-splitting tokenizer whose ids are the positions of `words`, and load it.

    `words` must hold `pad`, `bos` and `unk`. Encoding text prepends `bos`, as a language model
    trained on `bos`-started rows expects.
    """
    vocab = {word: index for index, word in enumerate(words)}
    if len(vocab) != len(words):
        raise ValueError("the word list has duplicates; each word must have one id")
    missing = [token for token in (pad, bos, unk) if token not in vocab]
    if missing:
        raise ValueError(f"the word list lacks the special tokens {missing}")
    core = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=pad, bos_token=bos, unk_token=unk, eos_token=bos
    )
    directory = Path(directory).resolve()
    wrapped.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(str(directory))
