"""The repeated-token generators: shapes, determinism, and that repeats are where they should be."""

import pytest
import torch

from mi_course.data.repeated_tokens import RepeatMix, content_token_ids, repeat_mix_batch, repeated_tokens
from mi_course.train.attn_only_2l import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


def _longest_self_match(tokens: torch.Tensor, min_shift: int) -> torch.Tensor:
    """Per row, the most positions that equal the token `d` places back, over shifts d >= min_shift."""
    counts = [(tokens[:, d:] == tokens[:, :-d]).sum(-1) for d in range(min_shift, tokens.shape[1])]
    return torch.stack(counts, dim=-1).max(dim=-1).values


def test_content_ids_leave_out_specials(tokenizer):
    ids = content_token_ids(tokenizer)
    assert len(ids) == len(tokenizer) - 2
    assert not set(ids.tolist()) & set(tokenizer.all_special_ids)


def test_repeated_tokens_layout(tokenizer):
    tokens = repeated_tokens(tokenizer, batch=6, seg_len=12, seed=3)
    assert tokens.shape == (6, 25) and tokens.dtype == torch.long
    assert (tokens[:, 0] == tokenizer.bos_token_id).all()
    assert torch.equal(tokens[:, 1:13], tokens[:, 13:])
    first = tokens[:, 1:13]
    assert all(len(set(row.tolist())) == 12 for row in first), "tokens within a segment are distinct"
    assert not torch.isin(first, torch.tensor(tokenizer.all_special_ids)).any()


def test_repeated_tokens_seeded(tokenizer):
    same = repeated_tokens(tokenizer, 4, 10, seed=1), repeated_tokens(tokenizer, 4, 10, seed=1)
    assert torch.equal(*same)
    assert not torch.equal(same[0], repeated_tokens(tokenizer, 4, 10, seed=2))


def test_repeated_tokens_without_bos(tokenizer):
    tokens = repeated_tokens(tokenizer, 2, 5, prepend_bos=False)
    assert tokens.shape == (2, 10) and torch.equal(tokens[:, :5], tokens[:, 5:])


@pytest.mark.parametrize(
    "kwargs", [dict(batch=0, seg_len=5), dict(batch=2, seg_len=1), dict(batch=2, seg_len=10_000)]
)
def test_repeated_tokens_bad_input_is_explained(tokenizer, kwargs):
    with pytest.raises(ValueError, match="must be"):
        repeated_tokens(tokenizer, **kwargs)


def test_repeat_mix_rows(tokenizer):
    ids = content_token_ids(tokenizer)
    mix = RepeatMix(seq_len=60, min_seg=10, max_seg=25, p_repeat=0.75)
    tokens = repeat_mix_batch(400, ids, tokenizer.bos_token_id, torch.Generator().manual_seed(0), mix)
    assert tokens.shape == (400, 61)
    assert (tokens[:, 0] == tokenizer.bos_token_id).all()
    assert torch.isin(tokens[:, 1:], ids).all()
    repeating = (_longest_self_match(tokens[:, 1:], mix.min_seg) >= mix.min_seg).float().mean().item()
    assert 0.68 < repeating < 0.82, f"{repeating:.2f} of rows repeat a segment, expected about 0.75"


@pytest.mark.parametrize("p_repeat", [0.0, 1.0])
def test_repeat_mix_extremes(tokenizer, p_repeat):
    ids = content_token_ids(tokenizer)
    mix = RepeatMix(seq_len=40, min_seg=10, max_seg=20, p_repeat=p_repeat)
    tokens = repeat_mix_batch(64, ids, tokenizer.bos_token_id, torch.Generator().manual_seed(1), mix)
    longest = _longest_self_match(tokens[:, 1:], mix.min_seg)
    assert ((longest >= mix.min_seg) == bool(p_repeat)).all()


def test_repeat_mix_seeded(tokenizer):
    ids = content_token_ids(tokenizer)
    draw = lambda seed: repeat_mix_batch(8, ids, 0, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))


def test_repeat_mix_rejects_segments_that_do_not_fit():
    with pytest.raises(ValueError, match="2 \\* max_seg <= seq_len"):
        RepeatMix(seq_len=30, min_seg=10, max_seg=20)
