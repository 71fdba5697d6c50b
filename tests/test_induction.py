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


def test_planted_repeats_copy_the_segment_from_each_distance():
    from mi_course.induction import planted_repeats
    from mi_course.models import load_model

    tokenizer = load_model("attn-only-2l", device="cpu").tokenizer
    rows = planted_repeats(tokenizer, batch=3, seg_len=5, repeat_start=41, distances=[5, 20], seed=1)
    assert rows.shape == (2, 3, 61) and (rows[:, :, 0] == tokenizer.bos_token_id).all()
    assert torch.equal(rows[0, :, 41:46], rows[0, :, 36:41]) and torch.equal(rows[1, :, 41:46], rows[1, :, 21:26])
    outside = torch.ones(61, dtype=torch.bool)
    outside[41:46] = False
    assert torch.equal(rows[0][:, outside], rows[1][:, outside]), "the distances share the same random rows"
    assert all(len(set(row[1:41].tolist())) == 40 for row in rows[0]), "words are distinct outside the copy"
    with pytest.raises(ValueError, match="overlap"):
        planted_repeats(tokenizer, batch=1, seg_len=5, repeat_start=41, distances=[3])


def test_chapter3_phase_change_claims_fail_on_reversed_snapshots():
    """Chapter 3's phase-change cell, run on the real snapshot series and on the same series in
    reverse order (induction disappearing during training): the claims must reject the reverse."""
    from pathlib import Path
    from types import SimpleNamespace

    import nbformat

    from mi_course.data.repeated_tokens import content_token_ids, repeat_mix_batch, repeated_tokens
    from mi_course.induction_phase import PhaseChange, phase_change_series, transition_window
    from mi_course.models import load_model
    from mi_course.train.attn_only_2l import MIX

    notebook = nbformat.read(Path(__file__).parent.parent / "solutions" / "03_induction_heads.ipynb", as_version=4)
    cell = next(c.source for c in notebook.cells if "rise = (series.induction[-1]" in c.source)
    tokenizer = load_model("attn-only-2l", device="cpu").tokenizer
    rep = repeated_tokens(tokenizer, 64, 25, seed=0)
    natural = repeat_mix_batch(64, content_token_ids(tokenizer), tokenizer.bos_token_id,
                               torch.Generator().manual_seed(7), MIX)
    series = phase_change_series("attn-only-2l", rep, 25, natural, device="cpu")
    reversed_series = PhaseChange(series.steps, *(values.flip(0) for values in series[1:]))

    def run(s):
        exec(cell, {"series": s, "transition_window": transition_window,
                    "viz": SimpleNamespace(plot_phase_change=lambda *a, **k: None)})

    run(series)
    with pytest.raises(AssertionError, match="should rise"):
        run(reversed_series)
