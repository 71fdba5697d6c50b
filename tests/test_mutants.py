"""Broken-model switches: the mutants themselves (fast), and every solution notebook's assert
cells run against them (slow): each claim about a trained model must fail on a broken one."""

from pathlib import Path

import nbformat
import pytest
import torch

from mi_course import mutants
from mi_course.models import load_model, snapshot_steps

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().float() for p in model.parameters()])


def test_mutant_switch_reads_the_environment(monkeypatch):
    monkeypatch.delenv(mutants.MUTANT_ENV, raising=False)
    assert mutants.active() is None and not mutants.skip_training()
    monkeypatch.setenv(mutants.MUTANT_ENV, "  ")
    assert mutants.active() is None
    for kind in mutants.KINDS:
        monkeypatch.setenv(mutants.MUTANT_ENV, kind)
        assert mutants.active() == kind
        assert mutants.skip_training() == (kind == "untrained")
    monkeypatch.setenv(mutants.MUTANT_ENV, "random")
    with pytest.raises(ValueError, match="random-init"):
        mutants.active()


def test_trainer_returns_the_initial_weights_only_when_untrained(monkeypatch):
    W0, b0 = torch.randn(2, 3), torch.zeros(3)
    trained = mutants.trainer(lambda W, b, steps: (W + steps, b + steps))
    monkeypatch.delenv(mutants.MUTANT_ENV, raising=False)
    W, b = trained(W0, b0, steps=1)
    assert torch.equal(W, W0 + 1) and torch.equal(b, b0 + 1)
    monkeypatch.setenv(mutants.MUTANT_ENV, "untrained")
    W, b = trained(W0, b0, steps=1)
    assert torch.equal(W, W0) and torch.equal(b, b0) and W is not W0, "copies of the initial weights"


@pytest.fixture(scope="module")
def shipped_weights():
    return _weights(load_model("attn-only-2l", device="cpu"))


@pytest.mark.parametrize("kind", mutants.KINDS)
def test_load_model_returns_a_broken_model_under_each_mutant(kind, monkeypatch, shipped_weights):
    monkeypatch.setenv(mutants.MUTANT_ENV, kind)
    broken = _weights(load_model("attn-only-2l", device="cpu"))
    assert broken.shape == shipped_weights.shape
    assert not torch.allclose(broken, shipped_weights, atol=1e-3), f"{kind}: the shipped weights came back"
    if kind == "earliest":
        monkeypatch.delenv(mutants.MUTANT_ENV)
        first = _weights(load_model("attn-only-2l", device="cpu", step=min(snapshot_steps("attn-only-2l"))))
        assert torch.equal(broken, first), "earliest = the first training snapshot"


def test_mutants_without_snapshots_fall_back_to_random_init(monkeypatch):
    shipped = _weights(load_model("gridwalk-3l", device="cpu"))
    monkeypatch.setenv(mutants.MUTANT_ENV, "earliest")
    earliest = _weights(load_model("gridwalk-3l", device="cpu"))
    monkeypatch.setenv(mutants.MUTANT_ENV, "random-init")
    assert torch.equal(earliest, _weights(load_model("gridwalk-3l", device="cpu")))
    assert not torch.allclose(earliest, shipped, atol=1e-3)


def test_assert_cells_are_found_with_their_sanity_tag():
    nb = nbformat.v4.new_notebook()
    tagged = nbformat.v4.new_code_cell("x = 1\nassert x == 1")
    tagged.metadata["tags"] = [mutants.SANITY_TAG]
    nb.cells = [nbformat.v4.new_code_cell("y = 2  # no assert here, nor in 'assertive'"),
                nbformat.v4.new_markdown_cell("assert in prose"),
                nbformat.v4.new_code_cell("for i in range(2):\n    assert i < 2, i"), tagged]
    assert mutants.assert_cells(nb) == [(2, "for i in range(2):", False), (3, "x = 1", True)]


def test_toothless_lists_claim_cells_no_mutant_breaks():
    def cell(index, error, sanity=False):
        return mutants.AssertCell(index, f"line {index}", sanity, error)

    reports = {
        "random-init": [cell(1, "AssertionError: x"), cell(2, None), cell(3, None, True), cell(4, "NameError: y")],
        "untrained": [cell(1, None), cell(2, None), cell(3, None, True), cell(4, None)],
    }
    assert [c.index for c in mutants.toothless(reports)] == [2, 4], "a NameError is not the claim failing"


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_every_claim_cell_fails_under_some_mutant(path):
    """Each solution notebook under each mutant (lenient checks, fresh progress file): every
    assert cell not tagged `sanity` must fail on at least one broken model."""
    reports = {kind: mutants.run_notebook(path, kind) for kind in mutants.KINDS}
    bad = mutants.toothless(reports)
    assert not bad, f"{path.name}: assert cells that pass on every broken model:\n" + "\n".join(
        f"  cell {c.index}: {c.first_line}" for c in bad)
