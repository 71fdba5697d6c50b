"""Chapter 7's one-direction DAS on `ioi-4l` (`mi_course.das`) and the split of a direction by what
a layer's output weights read (`illusions.split_direction`): the pairs change the answer and
nothing else, the split adds up, and on the shipped model the search does what the chapter says
(nothing where the whole MLP does nothing; more than the whole MLP in MLP1 at END)."""

from __future__ import annotations

import pytest
import torch

from mi_course import das, illusions
from mi_course.data import facts
from mi_course.data import ioi_grammar as grammar


def _mentions(tokens: torch.Tensor, name: torch.Tensor) -> torch.Tensor:
    return (tokens == name[:, None]).sum(1)


def test_the_source_names_the_base_subject_once_and_differs_only_where_s_came_back():
    prompts = grammar.ioi_prompts(40, seed=3)
    source = das.answer_swapped(prompts)
    changed = source != prompts.clean
    assert torch.equal(changed, prompts.corrupted != prompts.clean) and changed.any(1).all()
    assert (_mentions(source, prompts.s) == 1).all()                       # the base's S: the source's answer
    assert (_mentions(source, prompts.io) == _mentions(prompts.clean, prompts.s)).all()
    rows = torch.arange(len(prompts))
    assert torch.equal(source[rows, prompts.positions["S2"]], prompts.io)


def test_one_name_pair_in_every_sentence():
    prompts = grammar.ioi_prompts(60, seed=4)
    fixed = das.with_names(prompts, "Mary", "John")
    mary, john = grammar.TOKEN_ID["Mary"], grammar.TOKEN_ID["John"]
    assert 40 <= len(fixed) < 60 and (fixed.io == mary).all() and (fixed.s == john).all()
    assert (_mentions(fixed.clean, fixed.io) == 1).all() and (_mentions(fixed.clean, fixed.s) >= 2).all()
    words = [[grammar.VOCAB[t] for t in row.tolist()] for row in fixed.clean]
    assert [text.split() for text in fixed.texts] == [row[1:row.index(grammar.PAD)] if grammar.PAD in row else row[1:]
                                                      for row in words]
    assert torch.equal(fixed.positions["end"], (fixed.clean != grammar.TOKEN_ID[grammar.PAD]).sum(1) - 1)


def test_the_split_is_orthogonal_adds_up_and_w_out_cannot_see_the_invisible_part():
    g = torch.Generator().manual_seed(0)
    w_out = torch.randn(20, 3, generator=g) @ torch.randn(3, 6, generator=g)      # rank 3
    direction = torch.randn(20, generator=g) * 5
    invisible, readable = illusions.split_direction(direction, w_out)
    unit = direction / direction.norm()
    assert torch.allclose(invisible + readable, unit, atol=1e-6)
    assert abs(invisible.dot(readable)) < 1e-5 and (invisible @ w_out).norm() < 1e-4
    again, readable_again = illusions.split_direction(readable, w_out)            # a projection: idempotent
    assert torch.allclose(readable_again, readable / readable.norm(), atol=1e-5) and again.norm() < 1e-5
    full_rank = torch.randn(20, 6, generator=g)
    assert abs(illusions.split_direction(direction, full_rank)[1].norm() ** 2
               - illusions.readout_fraction(direction, full_rank.T)) < 1e-5


@pytest.fixture(scope="module")
def ioi_model():
    from mi_course import load_model

    return load_model("ioi-4l", device="cpu")


def test_patches_on_ioi_4l(ioi_model):
    prompts = das.with_names(grammar.ioi_prompts(48, seed=7), "Mary", "John")
    sites = das.patch_pairs(ioi_model, prompts, [(1, "end"), (3, "end")])
    pairs = sites[1, "end"]
    assert pairs.base_diff.mean() > 3 and pairs.source_diff.mean() < -3
    # a patch along a direction W_out maps to 0 changes nothing downstream
    invisible, _ = illusions.split_direction(torch.randn(512, generator=torch.Generator().manual_seed(1)),
                                             ioi_model.W_out[1].detach())
    assert torch.allclose(das.patched_diff(ioi_model, pairs, invisible), pairs.base_diff, atol=1e-3)
    # patching the whole hidden vector of MLP3 at END does almost nothing
    assert abs(das.effect(sites[3, "end"], das.patched_diff(ioi_model, sites[3, "end"], None))) < 0.15


def test_das_in_mlp1_beats_the_whole_mlp_on_held_out_structures(ioi_model):
    train = das.with_names(grammar.ioi_prompts(64, seed=1, structures=grammar.TRAIN_STRUCTURES, pairs="train"),
                           "Mary", "John")
    test = das.with_names(grammar.ioi_prompts(48, seed=7), "Mary", "John")
    fit_pairs = das.patch_pairs(ioi_model, train, [(1, "end")])[1, "end"]
    pairs = das.patch_pairs(ioi_model, test, [(1, "end")])[1, "end"]
    direction = das.fit_direction(ioi_model, fit_pairs, steps=40, lr=0.1, seed=0)
    assert abs(direction.norm() - 1) < 1e-5
    assert torch.equal(direction, das.fit_direction(ioi_model, fit_pairs, steps=40, lr=0.1, seed=0))
    whole = das.effect(pairs, das.patched_diff(ioi_model, pairs, None))
    found = das.effect(pairs, das.patched_diff(ioi_model, pairs, direction))
    assert found > whole + 0.15, (found, whole)
    assert all(p.requires_grad for p in ioi_model.parameters())       # the search left the model as it was


def test_the_first_order_best_direction_predicts_its_real_patch(ioi_model):
    prompts = das.with_names(grammar.ioi_prompts(48, seed=7), "Mary", "John")
    sites = das.patch_pairs(ioi_model, prompts, [(2, "end"), (1, "S2")])
    for site, pairs in sites.items():
        estimate, direction = das.first_order_best(ioi_model, pairs)
        real = das.effect(pairs, das.patched_diff(ioi_model, pairs, direction))
        assert abs(direction.norm() - 1) < 1e-5 and abs(real - estimate) < 0.1, (site, estimate, real)
    assert das.first_order_best(ioi_model, sites[2, "end"])[0] > 0.5      # MLP2 carries the answer at END
    assert abs(das.first_order_best(ioi_model, sites[1, "S2"])[0]) < 0.05  # no direction in MLP1 at S2 does
    # a random direction does less than the best one, to first order and for real
    random = torch.randn(512, generator=torch.Generator().manual_seed(2))
    pairs = sites[2, "end"]
    assert das.effect(pairs, das.patched_diff(ioi_model, pairs, random)) < das.first_order_best(ioi_model, pairs)[0]


def test_the_invisible_push_share_is_where_the_patch_gets_its_push():
    w_out = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])       # reads hidden dims 0 and 1
    v = torch.tensor([1.0, 0.0, 1.0, 0.0])                                      # half readable, half invisible
    only_invisible = torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.0, 5.0, 1.0, 3.0]])  # varies along dim 2 (and off v)
    only_readable = torch.tensor([[3.0, 0.0, 0.0, 1.0]])
    assert abs(illusions.invisible_push_share(v, w_out, only_invisible) - 1) < 1e-6
    assert abs(illusions.invisible_push_share(v, w_out, only_readable)) < 1e-6
    assert abs(illusions.invisible_push_share(v * 7, w_out, torch.tensor([[1.0, 0.0, 3.0, 0.0]])) - 0.75) < 1e-6


def test_person_swaps_change_only_the_person_and_group_rows_by_pair():
    first, second = facts.swap_pairs(3, seed=5)
    people = list(zip(first.facts, second.facts))
    base, source, group = das.person_swaps(people, slice(4, None))
    per_pair = 3 * len(das.FILLERS)
    assert torch.equal(group, torch.arange(3).repeat_interleave(per_pair))
    differs = base.tokens != source.tokens
    assert not (differs & ~base.subject_mask).any() and differs.any(1).all()
    assert (base.answer != source.answer).all()
    assert len({(f.subject, f.relation) for f in base.facts[:per_pair]}) == 1


def test_grouped_first_order_directions_match_one_group_at_a_time(facts_model):
    first, second = facts.swap_pairs(3, seed=0)
    base, source, group = das.person_swaps(list(zip(first.facts, second.facts)), slice(0, 4))
    pairs = das.fact_patch_pairs(facts_model, base, source, 1)
    estimates, directions = das.first_order_directions(facts_model, pairs, group)
    for k in range(3):
        alone = pairs.rows((group == k).nonzero()[:, 0])
        estimate, direction = das.first_order_best(facts_model, alone)
        assert abs(estimate - estimates[k].item()) < 1e-4 and abs(direction.dot(directions[k]).abs() - 1) < 1e-4
        patched = das.patched_diff(facts_model, alone, direction)
        assert abs(das.effect(alone, patched)
                   - das.effect_by_group(pairs, das.patched_diff(facts_model, pairs, directions[group]), group)[k]) < 1e-4
    assert pairs.base_diff.mean() > 5 and pairs.source_diff.mean() < -5


@pytest.fixture(scope="module")
def facts_model():
    from mi_course import load_model

    return load_model("facts-4l", device="cpu")
