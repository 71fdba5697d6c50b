"""Chapter 6 on GPT-2 small: the chapter's own code reproduces Wang et al. (2023)'s headline
numbers. Needs GPT-2 small from the Hugging Face Hub or its cache; skipped with the reason
otherwise (`load_model` says so within about 2 s). Run with `pytest -m online tests/test_ch06_online.py`
where the hub is reachable; the default run includes it and it skips offline."""

import functools

import pytest
import torch

from mi_course import ioi_circuit, patching
from mi_course.circuits import single_head_ablations
from mi_course.path_patching import head_mask, path_patch

pytestmark = pytest.mark.online

NAME_MOVERS = {(9, 6), (9, 9), (10, 0)}
S_INHIBITION = {(7, 3), (7, 9), (8, 6), (8, 10)}
# Wang et al.'s circuit: name movers, backup and negative name movers, S-inhibition, induction,
# duplicate-token and previous-token heads (26 heads).
CIRCUIT = NAME_MOVERS | S_INHIBITION | {
    (10, 10), (10, 6), (10, 2), (10, 1), (11, 2), (9, 7), (9, 0), (11, 9), (10, 7), (11, 10),
    (5, 5), (5, 8), (5, 9), (6, 9), (0, 1), (0, 10), (3, 0), (2, 2), (4, 11),
}


@pytest.fixture(scope="module")
def gpt2():
    from mi_course import load_model
    from mi_course.models import ModelUnavailableError

    try:
        return load_model("gpt2-small")
    except ModelUnavailableError as error:
        pytest.skip(f"GPT-2 small is unavailable offline: {error}")


@pytest.fixture(scope="module")
def data(gpt2):
    from mi_course.data import ioi_gpt2

    prompts, abc = ioi_gpt2.ioi_prompts(gpt2.tokenizer, 50, seed=0)
    metric = functools.partial(patching.logit_diff, position=prompts.positions["end"], correct=prompts.io,
                               wrong=prompts.s)
    with torch.no_grad():
        clean = metric(gpt2(prompts.clean)[None]).item()
    return prompts, abc, metric, clean


def _top(scores, k):
    order = scores.flatten().argsort()[:k].tolist()
    return {(i // scores.shape[1], i % scores.shape[1]) for i in order}


def test_logit_difference(data):
    assert data[3] > 2.5, f"GPT-2 small's logit difference {data[3]:.2f} (Wang et al.: 3.56)"


def test_name_movers_by_path_patching_to_the_logits(gpt2, data):
    prompts, abc, metric, clean = data
    effect = (path_patch(gpt2, prompts.clean, abc, metric, single_head_ablations(12, 12)) - clean).view(12, 12)
    assert NAME_MOVERS <= _top(effect, 5), f"largest direct losses: {sorted(_top(effect, 5))}"


def test_s_inhibition_by_path_patching_to_the_name_movers_queries(gpt2, data):
    prompts, abc, metric, clean = data
    receivers = head_mask(sorted(NAME_MOVERS), 12, 12)
    effect = (path_patch(gpt2, prompts.clean, abc, metric, single_head_ablations(12, 12), receivers) - clean).view(12, 12)
    assert S_INHIBITION <= _top(effect, 6), f"largest losses through the name movers' queries: {sorted(_top(effect, 6))}"


def test_faithfulness_near_87_percent(gpt2, data):
    prompts, abc, metric, clean = data
    keep = torch.stack([torch.ones(12, 12, dtype=torch.bool), torch.zeros(12, 12, dtype=torch.bool),
                        head_mask(sorted(CIRCUIT), 12, 12)])
    model_value, empty_value, circuit_value = ioi_circuit.knockout(
        gpt2, prompts.clean, abc, ioi_circuit.structure_groups(prompts), keep, metric)
    ratio = (circuit_value / model_value).item()
    assert 0.7 <= ratio <= 1.05, f"F(C)/F(M) = {ratio:.2f} (Wang et al.: 0.87); F(empty) = {empty_value:.2f}"
