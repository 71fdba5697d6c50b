"""Chapter 7 exercises: the limits of interpretability (Bolukbasi et al. 2021; Makelov, Lange &
Nanda 2023; Chanin et al. 2024; Hewitt & Liang 2019; Miller et al. 2024).

No exercise needs a model: each works on tensors a model or an SAE would produce, built here
from seeded generators at sizes that grade in milliseconds, with hand-made rows for the edges
the chapter names (values exactly at a threshold, a unit that never fires, a child never seen).
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

from mi_course import absorption, copy_reach, faithfulness, illusions, sae_gridwalk
from mi_course.grading import Case, Exercise, Mistake, register

# --- 1. an explanation scored as a classifier ------------------------------------------------------


def _pr_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7000 + seed)
    labels = torch.rand(40, generator=g) < 0.3
    acts = labels.float() * 2 + torch.randn(40, generator=g)
    acts[:6] = 1.0                                        # values exactly at the threshold
    skewed = torch.rand(30, generator=g) < 0.5
    return [
        Case(args=(acts, labels, 1.0), label="40 inputs, 6 of them exactly at the threshold 1.0"),
        Case(args=(torch.relu(torch.randn(30, generator=g)) * skewed, skewed & (torch.rand(30, generator=g) < 0.4), 0.0),
             label="a unit firing on more than the property, threshold 0"),
        Case(args=(torch.randn(8, generator=g) - 10, torch.rand(8, generator=g) < 0.5, 0.0),
             label="a unit that never fires (edge: precision 0)"),
        Case(args=(torch.randn(9, generator=g), torch.zeros(9, dtype=torch.bool), -0.5),
             label="no input has the property (edge: recall 0)"),
    ]


def _pr_swapped(acts, labels, threshold):
    return illusions.precision_recall(acts, labels, threshold).flip(0)


def _pr_at_threshold(acts, labels, threshold):
    return illusions.precision_recall(acts, labels, threshold - 1e-6)


def _pr_accuracy(acts, labels, threshold):
    fires = acts > threshold
    recall = illusions.precision_recall(acts, labels, threshold)[1]
    return torch.stack([(fires == labels).float().mean(), recall])


register(Exercise(
    id="ch07.precision_recall",
    title="Score an explanation of a unit as a classifier: precision and recall",
    reference=illusions.precision_recall,
    cases=_pr_cases,
    mistakes=(
        Mistake("precision and recall swapped", _pr_swapped,
                "Precision asks how often the property holds when the unit fires (divide by the number of "
                "firings); recall asks how often the unit fires when the property holds (divide by the number "
                "of inputs with the property)."),
        Mistake("an activation at the threshold counts as firing", _pr_at_threshold,
                "The unit fires when its activation is strictly above the threshold: an activation equal to it "
                "does not count."),
        Mistake("accuracy instead of precision", _pr_accuracy,
                "Precision counts only the inputs where the unit fires; accuracy also rewards every input where "
                "the unit is silent and the property absent, which is most of them."),
    ),
))


# --- 2. patching one direction ---------------------------------------------------------------------


def _patch_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7100 + seed)
    return [
        Case(args=(torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(4, generator=g) * 3),
             label="5 rows, d 4, a direction of norm about 3"),
        Case(args=(torch.randn(1, 6, generator=g), torch.randn(1, 6, generator=g) + 2, torch.randn(6, generator=g) * 0.2),
             label="a single row, a short direction (edge)"),
        Case(args=(torch.randn(3, 3, generator=g), torch.randn(3, 3, generator=g), torch.tensor([0.0, 2.0, 0.0])),
             label="an axis direction of norm 2"),
    ]


def _patch_unnormalised(base, source, direction):
    return base + ((source - base) @ direction)[:, None] * direction


def _patch_whole(base, source, direction):
    return source.clone()


def _patch_added(base, source, direction):
    unit = direction / direction.norm()
    return base + (source @ unit)[:, None] * unit


register(Exercise(
    id="ch07.subspace_patch",
    title="Patch one direction: the base's component along it replaced by the source's",
    reference=illusions.subspace_patch,
    cases=_patch_cases,
    mistakes=(
        Mistake("direction not normalised", _patch_unnormalised,
                "Normalise the direction first: with a direction of norm c the patch moves the component c^2 "
                "times too far."),
        Mistake("the whole vector patched", _patch_whole,
                "Only the component along the direction comes from the source; everything orthogonal to it "
                "stays the base's."),
        Mistake("source component added to the base's", _patch_added,
                "Replace the base's component along the direction: remove its own (base @ unit) before adding "
                "the source's."),
    ),
))


# --- 2b. splitting a direction by what the next layer reads ----------------------------------------


def _split_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7150 + seed)
    square = torch.randn(4, 2, generator=g) @ torch.randn(2, 4, generator=g)      # rank 2 of 4
    tall = torch.randn(12, 5, generator=g)
    narrow = torch.randn(8, 3, generator=g)
    inside = narrow @ torch.randn(3, generator=g)                                  # in the column span
    null = torch.linalg.svd(narrow)[0][:, -1] * 0.4                                # w_out maps it to 0
    return [
        Case(args=(torch.randn(4, generator=g) * 3, square),
             label="a square w_out of rank 2 (edge: two dead directions), a direction of norm about 3"),
        Case(args=(torch.randn(12, generator=g) * 2, tall), label="d_mlp 12, d_model 5"),
        Case(args=(inside, narrow), label="a direction inside the span of w_out's columns (edge: invisible part 0)"),
        Case(args=(null, narrow), label="a direction w_out maps to 0, norm 0.4 (edge: readable part 0)"),
    ]


def _split_unnormalised(direction, w_out):
    return tuple(part * direction.norm() for part in illusions.split_direction(direction, w_out))


def _split_swapped(direction, w_out):
    return illusions.split_direction(direction, w_out)[::-1]


def _split_not_orthonormal(direction, w_out):
    unit = direction / direction.norm()
    readable = w_out @ (w_out.T @ unit)
    return unit - readable, readable


def _split_rows(direction, w_out):
    unit = direction / direction.norm()
    readable = torch.linalg.pinv(w_out) @ (w_out @ unit)
    return unit - readable, readable


register(Exercise(
    id="ch07.split_direction",
    title="Split a direction into the part a layer's output weights cannot see and the part they read",
    reference=illusions.split_direction,
    cases=_split_cases,
    mistakes=(
        Mistake("direction not normalised", _split_unnormalised,
                "Split the unit direction, direction / |direction|: the two parts should add up to a vector of "
                "norm 1, so that their squared norms are shares of it."),
        Mistake("parts swapped", _split_swapped,
                "Return (invisible, readable): first the part that w_out maps to 0 (invisible @ w_out = 0), then "
                "the part in the span of w_out's columns."),
        Mistake("columns not orthonormalised", _split_not_orthonormal,
                "w_out @ w_out.T is not a projection: w_out's columns are neither orthogonal nor of unit length. "
                "Project onto their span with an orthonormal basis of it (from an SVD, keeping only non-zero "
                "singular values) or with w_out @ torch.linalg.pinv(w_out)."),
        Mistake("span of the rows", _split_rows,
                "The output hidden @ w_out depends on the hidden vector through its dot products with w_out's "
                "*columns* (vectors of length d_mlp): project onto their span, not onto the span of the rows."),
    ),
))


# --- 3. feature absorption ----------------------------------------------------------------------------


def _recall_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7200 + seed)
    which = torch.randint(4, (50,), generator=g)
    children = torch.nn.functional.one_hot(which, 4).bool() & (torch.rand(50, 1, generator=g) < 0.6)
    acts = torch.relu(torch.randn(50, generator=g)) * (torch.rand(50, generator=g) < 0.7)
    never = children.clone()
    never[:, 1] = False                                   # a child never active
    return [
        Case(args=(acts, children), label="50 inputs, 4 children, a parent latent that is often exactly 0"),
        Case(args=(acts[:20] - 0.05, never[:20]), label="one child never active (edge: recall 0), small negative values"),
    ]


def _recall_pooled(parent_acts, child_active):
    any_child = child_active.any(-1, keepdim=True)
    return absorption.parent_recall(parent_acts, any_child).expand(child_active.shape[1]).clone()


def _recall_nonnegative(parent_acts, child_active):
    return absorption.parent_recall(parent_acts + 1e-9 * (parent_acts == 0), child_active)


def _recall_over_all(parent_acts, child_active):
    fires = (parent_acts > 0).float()
    return (fires @ child_active.float()) / len(parent_acts)


register(Exercise(
    id="ch07.parent_recall",
    title="The parent latent's recall on the inputs where each child is active",
    reference=absorption.parent_recall,
    cases=_recall_cases,
    mistakes=(
        Mistake("pooled over children", _recall_pooled,
                "Compute one recall per child (one column of child_active each): absorption is by a particular "
                "child, and pooling hides which."),
        Mistake("zero counted as firing", _recall_nonnegative,
                "A latent fires when its activation is strictly positive; a ReLU latent that is exactly 0 is silent."),
        Mistake("divided by all inputs", _recall_over_all,
                "Divide by the number of inputs where that child is active, not by the number of inputs."),
    ),
))


# --- 5. probes fit anything -------------------------------------------------------------------------

register(Exercise(
    id="ch07.shattered_rows", kind="value",
    title="How many rows in general position can a linear probe (weights and a bias) on d_model = 64 "
          "fit perfectly, whatever their binary labels?",
    reference=65,
    mistakes=(
        Mistake("bias forgotten", 64, "The bias adds one degree of freedom: a hyperplane in 64 dimensions with an "
                                      "offset separates any labelling of d + 1 points in general position."),
        Mistake("Cover's capacity", 128, "2d is where *half* of all labellings are separable (Cover 1965); the question "
                                         "asks for every labelling."),
    ),
))


# --- 6. faithfulness depends on the ablation ----------------------------------------------------------


def _ablate_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7300 + seed)

    def z(batch: int, pos: int, heads: int) -> Tensor:
        return torch.randn(batch, pos, heads, 3, generator=g)

    keep = torch.tensor([True, False, True, False])
    return [
        Case(args=(z(4, 5, 4), keep, "mean", z(4, 5, 4) + 1), label="mean-ablate heads 1 and 3, 4 rows, 5 positions"),
        Case(args=(z(3, 4, 4), keep, "resample", z(3, 4, 4)), label="resample-ablate heads 1 and 3"),
        Case(args=(z(2, 3, 4), keep, "zero", z(2, 3, 4)), label="zero-ablate heads 1 and 3"),
        Case(args=(z(1, 2, 2), torch.tensor([False, False]), "mean", z(1, 2, 2)),
             label="a single row, every head ablated (edge)"),
    ]


def _ablate_inverted(z, keep, kind, source):
    return faithfulness.ablate_heads(z, ~keep, kind, source)


def _ablate_mean_all_positions(z, keep, kind, source):
    if kind == "mean":
        return torch.where(keep[:, None], z, source.mean((0, 1)))
    return faithfulness.ablate_heads(z, keep, kind, source)


def _ablate_own_mean(z, keep, kind, source):
    return faithfulness.ablate_heads(z, keep, kind, z if kind == "mean" else source)


register(Exercise(
    id="ch07.ablate_heads",
    title="Zero-, mean- and resample-ablate every head outside a circuit",
    reference=faithfulness.ablate_heads,
    cases=_ablate_cases,
    mistakes=(
        Mistake("the circuit ablated", _ablate_inverted,
                "`keep` marks the circuit's heads, which stay as they are; replace the others."),
        Mistake("mean over positions too", _ablate_mean_all_positions,
                "Average over the batch only, keeping one mean per position and head: a head's typical output "
                "differs from position to position."),
        Mistake("mean of the ablated batch", _ablate_own_mean,
                "Take the mean over the reference batch (`source`), not over the inputs being ablated, whose own "
                "information would leak back in."),
    ),
))


# --- 7. a prediction from the mechanism ---------------------------------------------------------------


def _predict_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7400 + seed)
    q = torch.randint(20, 60, (30,), generator=g)
    d = torch.randint(2, 20, (30,), generator=g)
    edge_q = torch.tensor([50, 51, 52, 47, 46])
    edge_d = torch.tensor([5, 5, 5, 1, 1])
    return [
        Case(args=(q, d), label="30 random (query, distance) pairs, the shipped reach 46"),
        Case(args=(edge_q, edge_d), label="queries whose key lands exactly on the reach (edge)"),
        Case(args=(q, d), kwargs={"reach": 30 + seed % 5}, label="another reach"),
    ]


def _predict_source(queries, distances, reach=copy_reach.PREVIOUS_TOKEN_REACH):
    return queries - distances <= reach


def _predict_query(queries, distances, reach=copy_reach.PREVIOUS_TOKEN_REACH):
    return queries <= reach


def _predict_always(queries, distances, reach=copy_reach.PREVIOUS_TOKEN_REACH):
    return torch.ones_like(queries, dtype=torch.bool)


register(Exercise(
    id="ch07.predict_copied",
    title="Predict from the mechanism where the induction circuit can copy",
    reference=copy_reach.predict_copied,
    cases=_predict_cases,
    mistakes=(
        Mistake("the earlier copy's position", _predict_source,
                "The induction head attends to the token *after* the earlier copy, q - d + 1: that is the key "
                "whose previous-token mark it matches."),
        Mistake("the query's position", _predict_query,
                "The previous-token mark the induction head needs sits at the key it attends to, not at the "
                "query: the query only needs its own token."),
        Mistake("the mechanism copies everything", _predict_always,
                "Use the previous-token head's reach: a key past it carries no mark to match."),
    ),
))


# --- optional: design an illusion ------------------------------------------------------------------


def _design_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7500 + seed)
    return [Case(args=(illusions.toy_component(6, 3.0, g),), label="a 6-unit component, |write| |read| = 3"),
            Case(args=(illusions.toy_component(3, 2.5, g),), label="a 3-unit component, |write| |read| = 2.5")]


def _validate_design(case: Case, out: object) -> str | None:
    (toy,) = case.args
    if not isinstance(out, Tensor) or not out.is_floating_point() or tuple(out.shape) != tuple(toy.write.shape):
        return f"the output should be a float tensor of shape ({toy.write.shape[0]},): one direction in the hidden layer"
    direction = out.detach().float().cpu()
    if abs(direction.norm().item() - 1) > 1e-3:
        return "the direction should have unit norm"
    g = torch.Generator().manual_seed(0)
    base, source = torch.randn(64, generator=g), torch.randn(64, generator=g)
    effect = illusions.patch_effect(toy, base, source, direction)
    if effect < 0.9:
        return (f"patching along it moves the output {effect:.2f} of the way a change of the variable does; "
                "the illusion needs at least 0.9")
    return None


def _design_write(toy):
    return toy.write / toy.write.norm()


def _design_read(toy):
    return toy.read / toy.read.norm()


def _design_halfway(toy):
    return (toy.write / toy.write.norm() + toy.read / toy.read.norm()) / 2


register(Exercise(
    id="ch07.illusory_direction",
    title="(Optional) Design a direction whose patch 'mediates' a variable the component never uses",
    reference=illusions.illusory_direction,
    cases=_design_cases,
    validate=_validate_design,
    mistakes=(
        Mistake("the variable's own direction", _design_write,
                "Along `write` alone the patch changes the hidden layer where the output does not read: effect 0."),
        Mistake("the read direction alone", _design_read,
                "Along `read` alone base and source do not differ (the variable never moves h along `read`): "
                "there is nothing to patch. Combine the two."),
        Mistake("not a unit vector", _design_halfway,
                "Normalise: (write_hat + read_hat) / 2 has norm 1/sqrt(2), and a patch direction is a unit vector."),
    ),
))


# --- 4. SAEs on a random network --------------------------------------------------------------------


def _score_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(7600 + seed)
    wide = torch.rand(12, 5, generator=g) * 0.5
    wide[3, 1] = 0.95                                    # one unit detects two variables well
    wide[3, 4] = 0.9
    return [
        Case(args=(wide,), label="12 units, 5 variables, one unit good at two"),
        Case(args=(torch.rand(3, 7, generator=g),), label="fewer units (3) than variables (7)"),
        Case(args=(torch.rand(1, 4, generator=g),), label="a single unit (edge)"),
    ]


def _score_per_unit(f1):
    return f1.max(-1).values.mean()


def _score_mean(f1):
    return f1.mean()


def _score_max(f1):
    return f1.max()


register(Exercise(
    id="ch07.ground_truth_score",
    title="Score a dictionary against known variables: the best unit per variable, averaged",
    reference=sae_gridwalk.ground_truth_score,
    cases=_score_cases,
    mistakes=(
        Mistake("best variable per unit", _score_per_unit,
                "Take the best *unit* for each variable (max over dim 0), then average over variables: the "
                "question is how many variables are found, not how clean the average unit looks."),
        Mistake("mean of every F1", _score_mean,
                "Average only the best unit's F1 per variable: a dictionary needs one good detector per "
                "variable, and every other unit's score is beside the point."),
        Mistake("one best pair", _score_max,
                "A single excellent (unit, variable) pair says nothing about the other variables: average the "
                "per-variable best over all variables."),
    ),
))


# --- 8. interpretability is not safety ---------------------------------------------------------------

MONITOR_BASE_RATE, MONITOR_RECALL, MONITOR_FALSE_ALARMS = 0.001, 0.9, 0.01

register(Exercise(
    id="ch07.monitor_precision", kind="value",
    title="Precision of a latent used as a monitor for a behaviour on 1 input in 1,000 (recall 0.9, "
          "fires on 1% of the other inputs)",
    reference=MONITOR_BASE_RATE * MONITOR_RECALL
    / (MONITOR_BASE_RATE * MONITOR_RECALL + (1 - MONITOR_BASE_RATE) * MONITOR_FALSE_ALARMS),
    rtol=1e-3,
    mistakes=(
        Mistake("the recall", MONITOR_RECALL,
                "0.9 is the recall, P(fires | behaviour); precision is P(behaviour | fires): weigh both kinds of "
                "firing by how often their inputs occur."),
        Mistake("one minus the false-alarm rate", 1 - MONITOR_FALSE_ALARMS,
                "0.99 is how often the monitor stays silent on inputs without the behaviour; precision is about "
                "the inputs on which it fires."),
        Mistake("the joint probability", MONITOR_BASE_RATE * MONITOR_RECALL,
                "0.0009 is P(behaviour and fires); divide by P(fires), which also counts the false alarms on the "
                "other 99.9% of inputs."),
    ),
))


# --- optional: design a minimal faithful circuit -------------------------------------------------------


@cache
def _attn_only() -> object:
    from mi_course.models import load_model

    return load_model("attn-only-2l", device="cpu")


def _circuit_cases(seed: int = 0) -> list[Case]:
    from mi_course import induction

    model = _attn_only()
    rows = induction.planted_repeats(model.tokenizer, 16, 10, 40, [20], seed=100 + seed)[0]
    reference = induction.planted_repeats(model.tokenizer, 16, 10, 40, [20], seed=200 + seed)[0]
    targets = torch.arange(40, 49)
    return [
        Case(args=(model, rows, reference, targets), label="attn-only-2l, a 10-word segment repeated 20 positions later"),
        Case(args=(model, rows, reference, targets), kwargs={"threshold": 0.5}, label="the same, faithfulness >= 0.5"),
    ]


def _circuit_score(case: Case, circuit: Tensor) -> float:
    model, rows, reference, targets = case.args
    losses = faithfulness.circuit_losses(model, rows, reference, circuit, "zero")[:, :, targets].mean((1, 2))
    return faithfulness.faithfulness(*losses)


def _validate_circuit(case: Case, out: object) -> str | None:
    model = case.args[0]
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    if not isinstance(out, Tensor) or out.dtype != torch.bool or tuple(out.shape) != shape:
        return f"the output should be a torch.bool tensor of shape (n_layers, n_heads) = {shape}"
    threshold = case.kwargs.get("threshold", 0.9)
    score = _circuit_score(case, out.cpu())
    if score < threshold:
        return f"its zero-ablation faithfulness is {score:.2f}, below the threshold {threshold}"
    size = int(faithfulness.smallest_faithful_circuit(*case.args, **case.kwargs).sum())
    if int(out.sum()) > size:
        return f"it has {int(out.sum())} heads; a circuit of {size} reaches the threshold: remove heads while the score allows"
    return None


def _circuit_chapter3(model, tokens, reference, targets, threshold=0.9):
    circuit = torch.zeros(2, 4, dtype=torch.bool)
    circuit[0, 0] = True
    circuit[1, 1:] = True
    return circuit


def _circuit_everything(model, tokens, reference, targets, threshold=0.9):
    return torch.ones(2, 4, dtype=torch.bool)


def _circuit_two_heads(model, tokens, reference, targets, threshold=0.9):
    circuit = torch.zeros(2, 4, dtype=torch.bool)
    circuit[0, 0] = circuit[1, 1] = True
    return circuit


register(Exercise(
    id="ch07.smallest_faithful_circuit",
    title="(Optional) Design the search: the fewest heads that stay faithful under zero-ablation",
    reference=faithfulness.smallest_faithful_circuit,
    cases=_circuit_cases,
    validate=_validate_circuit,
    timeout_s=120.0,
    handed_out=("mi_course.faithfulness.ablated_losses",),  # circuit_losses, which the text hands out, calls it
    mistakes=(
        Mistake("Chapter 3's four heads", _circuit_chapter3,
                "Chapter 3's circuit is faithful but not the smallest: test whether each of its heads is needed."),
        Mistake("every head", _circuit_everything,
                "The whole model is trivially faithful: the exercise asks for the fewest heads that reach the threshold."),
        Mistake("one induction head", _circuit_two_heads,
                "One induction head does only part of the copying: check the faithfulness of your circuit before returning it."),
    ),
))
