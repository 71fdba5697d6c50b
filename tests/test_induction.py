"""Detector scores on hand-made attention patterns, where the right answer is known exactly."""

import pytest
import torch

from mi_course.induction import duplicate_token_scores, induction_scores, previous_token_scores

SEG = 5
POS = 2 * SEG + 1  # BOS + segment + segment


def _head_attending(key_of_query) -> torch.Tensor:
    """A (query, key) pattern: each query attends fully to key_of_query(q), or to BOS if None."""
    pattern = torch.zeros(POS, POS)
    for query in range(POS):
        key = key_of_query(query)
        pattern[query, 0 if key is None else key] = 1.0
    return pattern


@pytest.fixture
def patterns() -> torch.Tensor:
    """Layer 0: [previous-token, BOS-only]; layer 1: [duplicate-token, induction]; batch of 3."""
    second = lambda q: q >= SEG + 1  # noqa: E731  (queries in the second copy)
    heads = [
        [_head_attending(lambda q: q - 1 if q else None), _head_attending(lambda q: None)],
        [
            _head_attending(lambda q: q - SEG if second(q) else None),
            _head_attending(lambda q: q - SEG + 1 if second(q) else None),
        ],
    ]
    return torch.stack([torch.stack(layer) for layer in heads])[:, None].expand(2, 3, 2, POS, POS)


def test_each_detector_finds_its_head(patterns):
    # Query 1's previous token is BOS, where the other heads park their attention: 1 of 10 queries.
    torch.testing.assert_close(previous_token_scores(patterns), torch.tensor([[1.0, 0.1], [0.1, 0.1]]))
    torch.testing.assert_close(duplicate_token_scores(patterns, SEG), torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(induction_scores(patterns, SEG), torch.tensor([[0.0, 0.0], [0.0, 1.0]]))


def test_scores_ignore_the_leading_part(patterns):
    """Only the last 2*SEG positions count, whatever comes before the two copies."""
    padded = torch.zeros(*patterns.shape[:3], POS + 4, POS + 4)
    padded[..., 4:, 4:] = patterns
    torch.testing.assert_close(induction_scores(padded, SEG), induction_scores(patterns, SEG))


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, POS, POS), torch.zeros(2, 3, 2, POS, POS - 1)])
def test_wrong_shape_is_explained(bad):
    with pytest.raises(ValueError, match="layer, batch, head, query, key"):
        previous_token_scores(bad)


def test_segment_too_long_is_explained(patterns):
    with pytest.raises(ValueError, match="seg_len=6 does not fit"):
        induction_scores(patterns, 6)
