"""Chapter 4 exercises: linear probing (Hewitt & Liang 2019; Elazar et al. 2021; Li et al. 2023).

Every case is built from `seed`, at sizes that grade in well under a second, except
`random_init_weights`, which needs real models (the chapter's and Chapter 3's, loaded once).
Where many answers are right (a random split, a trained probe, a fresh model, a control task,
an erasing subspace), a validator tests the property the exercise is about, and each known
mistake fails it with its own reason.
"""

from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor

from mi_course import probing
from mi_course.data import grid_walks as gw
from mi_course.grading import Case, Exercise, Mistake, register

# --- 1. collect activations -----------------------------------------------------------------


def _fake_cache(generator: torch.Generator, n_layers: int, batch: int, pos: int, d_model: int) -> dict[str, Tensor]:
    """What run_with_cache returns, as a dict: resid_pre of block L+1 is resid_post of block L,
    and resid_mid (between attention and MLP) is there to be ignored."""
    stream = torch.randn(n_layers + 1, batch, pos, d_model, generator=generator)
    cache = {"blocks.0.hook_resid_pre": stream[0]}
    for layer in range(n_layers):
        cache[f"blocks.{layer}.hook_resid_mid"] = torch.randn(batch, pos, d_model, generator=generator)
        cache[f"blocks.{layer}.hook_resid_post"] = stream[layer + 1]
        if layer + 1 < n_layers:
            cache[f"blocks.{layer + 1}.hook_resid_pre"] = stream[layer + 1]
    return cache


def _stack_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(4000 + seed)
    all_but_bos = torch.ones(3, 6, dtype=torch.bool)
    all_but_bos[:, 0] = False
    ragged = torch.arange(7)[None, :] < torch.tensor([7, 4, 6, 2])[:, None]   # walks of different lengths
    ragged[:, 0] = False
    single = torch.zeros(1, 3, dtype=torch.bool)
    single[0, 2] = True
    return [
        Case(args=(_fake_cache(g, 2, 3, 6, 5), 2, all_but_bos), label="2 layers, 3 walks of 6 positions, <bos> dropped"),
        Case(args=(_fake_cache(g, 3, 4, 7, 4), 3, ragged), label="3 layers, walks of different lengths"),
        Case(args=(_fake_cache(g, 1, 1, 3, 2), 1, single), label="one kept position (edge)"),
    ]


def _stack_bos_kept(cache, n_layers, keep):
    return torch.stack([cache[name].flatten(0, 1) for name in probing.resid_hook_names(n_layers)])


def _stack_previous_position(cache, n_layers, keep):
    return torch.stack([cache[name][:, :-1][keep[:, 1:]] for name in probing.resid_hook_names(n_layers)])


def _stack_no_embeddings(cache, n_layers, keep):
    return torch.stack([cache[f"blocks.{layer}.hook_resid_post"][keep] for layer in range(n_layers)])


def _stack_position_major(cache, n_layers, keep):
    return torch.stack([cache[name].transpose(0, 1)[keep.T] for name in probing.resid_hook_names(n_layers)])


register(Exercise(
    id="ch04.stack_residuals",
    title="Residuals of every depth, one row per labelled position",
    reference=probing.stack_residuals,
    cases=_stack_cases,
    mistakes=(
        Mistake("<bos> kept", _stack_bos_kept,
                "Keep only the positions where `keep` is True: `<bos>` has no label, and every row must "
                "line up with labels[keep]."),
        Mistake("off by one position", _stack_previous_position,
                "The residual at position p has already read token p, and the labels at p describe the "
                "state after token p: pair position p with label p, not with the label one step later."),
        Mistake("embeddings left out", _stack_no_embeddings,
                "Depth 0 is the embeddings (blocks.0.hook_resid_pre); depths 1..n_layers are "
                "blocks.{L}.hook_resid_post: n_layers + 1 depths in all."),
        Mistake("position-major rows", _stack_position_major,
                "Order the rows as `tensor[keep]` does (walk by walk, positions in order within a walk), "
                "the order of labels[keep]."),
    ),
))


# --- 2. split by walk ---------------------------------------------------------------------------


def _split_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(4100 + seed)
    all_but_bos = torch.ones(40, 8, dtype=torch.bool)
    all_but_bos[:, 0] = False
    ragged = torch.rand(30, 10, generator=g) < 0.7
    ragged[:, 0] = False
    ragged[:, 1] = True
    small = torch.ones(7, 3, dtype=torch.bool)
    small[:, 0] = False
    return [
        Case(args=(all_but_bos, 0.25), kwargs={"seed": seed + 1}, label="40 walks of 8 positions, a quarter for testing"),
        Case(args=(ragged, 0.1), kwargs={"seed": seed + 2}, label="30 walks with unlabelled positions inside"),
        Case(args=(small, 0.3), kwargs={"seed": seed + 3}, label="7 walks, 0.3 of them: round(2.1) = 2 (edge)"),
    ]


def _validate_split(case: Case, out: object) -> str | None:
    keep, test_fraction = case.args
    if not isinstance(out, Tensor) or out.dtype != torch.bool:
        return "the output should be a torch.bool tensor (True: a test row)"
    n_rows = int(keep.sum())
    if tuple(out.shape) != (n_rows,):
        return f"the output should have one flag per labelled row, shape (keep.sum(),) = ({n_rows},), not one per walk or per position"
    walk_of_row = torch.arange(keep.shape[0])[:, None].expand_as(keep)[keep]
    flags = torch.zeros(keep.shape[0], 2, dtype=torch.bool)
    flags[walk_of_row, out.cpu().long()] = True
    if flags.all(-1).any():
        return ("some walk has rows on both sides of the split: positions of one walk share their history, "
                "so split whole walks")
    expected = round(test_fraction * keep.shape[0])
    if int(flags[:, 1].sum()) != expected:
        return "the number of test walks should be round(test_fraction * number of walks), with True marking test rows"
    return None


def _split_by_position(keep, test_fraction, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(int(keep.sum()), generator=generator) < test_fraction


def _split_inverted(keep, test_fraction, seed=0):
    return ~probing.split_by_walk(keep, test_fraction, seed)


def _split_per_walk(keep, test_fraction, seed=0):
    generator = torch.Generator().manual_seed(seed)
    test_walk = torch.zeros(keep.shape[0], dtype=torch.bool)
    test_walk[torch.randperm(keep.shape[0], generator=generator)[: round(test_fraction * keep.shape[0])]] = True
    return test_walk


register(Exercise(
    id="ch04.split_by_walk",
    title="Train/test split by walk",
    reference=probing.split_by_walk,
    cases=_split_cases,
    validate=_validate_split,
    seed_arg="seed",
    mistakes=(
        Mistake("split by position", _split_by_position,
                "Draw the split over walks, then give every labelled row of a walk its walk's side: "
                "rows of one walk are not independent, so a split by position leaks."),
        Mistake("train rows flagged", _split_inverted,
                "Return True for the *test* rows: round(test_fraction * number of walks) walks."),
        Mistake("one flag per walk", _split_per_walk,
                "Expand the walks' flags to their labelled rows: the output is indexed like labels[keep]."),
    ),
))


# --- 2. probes at every depth, in one optimisation ------------------------------------------------


def _probe_data(generator: torch.Generator, depths: int, n: int, d_model: int, n_classes: int) -> tuple[Tensor, Tensor]:
    """Labels written into the activations more and more clearly with depth (depth 0: not at all)."""
    labels = torch.randint(n_classes - 1, (n,), generator=generator)   # the last class never occurs
    means = torch.randn(n_classes, d_model, generator=generator) * 2
    strength = torch.linspace(0, 1, depths)[:, None, None]
    acts = strength * means[labels] + torch.randn(depths, n, d_model, generator=generator) + 3
    return acts, labels


def _fit_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(4200 + seed)
    return [
        Case(args=(*_probe_data(g, 3, 300, 8, 5), 5), label="3 depths, 300 rows, d_model 8, 5 classes (one never seen)"),
        Case(args=(*_probe_data(g, 1, 120, 4, 3), 3), label="a single depth (edge)"),
        Case(args=(*_probe_data(g, 4, 400, 6, 4), 4), label="4 depths, 400 rows, d_model 6"),
    ]


FIT_SLACK = 0.05   # nats a learner's probe may sit above the reference fit on its training rows


def _validate_fit(case: Case, out: object) -> str | None:
    acts, labels, n_classes = case.args
    probes, _, d_model = acts.shape
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
        return "the output should be a tuple (weight, bias) of two tensors"
    weight, bias = out
    if tuple(weight.shape) != (probes, d_model, n_classes) or tuple(bias.shape) != (probes, n_classes):
        return (f"weight should have shape (probes, d_model, n_classes) = {(probes, d_model, n_classes)} and bias "
                f"(probes, n_classes) = {(probes, n_classes)}")
    weight, bias = weight.detach().float().cpu(), bias.detach().float().cpu()
    if not (weight.isfinite().all() and bias.isfinite().all()):
        return "the weights contain NaN or inf"
    if probes > 1 and all(torch.allclose(weight[0], weight[i]) and torch.allclose(bias[0], bias[i]) for i in range(probes)):
        return "every depth got the same probe: fit one probe per depth (batch them along the first dimension)"
    mine = probing.cross_entropy_by_probe(acts @ weight + bias[:, None], labels)
    best = probing.cross_entropy_by_probe(probing.LinearProbe.from_weights(*probing.fit_probes(*case.args)).logits(acts), labels)
    if (mine > best + FIT_SLACK).any():
        return (f"at some depth the cross-entropy on the training rows is more than {FIT_SLACK} nats above what "
                "logistic regression reaches: minimise the softmax cross-entropy until it stops falling")
    return None


def _fit_one_probe_for_all(acts, labels, n_classes):
    weight, bias = probing.fit_probes(acts.flatten(0, 1)[None], labels.repeat(acts.shape[0]), n_classes)
    return weight.expand(acts.shape[0], -1, -1).clone(), bias.expand(acts.shape[0], -1).clone()


def _fit_least_squares(acts, labels, n_classes):
    inputs = torch.cat([acts, torch.ones(*acts.shape[:-1], 1)], dim=-1)
    targets = torch.nn.functional.one_hot(labels, n_classes).float().expand(acts.shape[0], -1, -1)
    solution = torch.linalg.lstsq(inputs, targets).solution
    return solution[:, :-1], solution[:, -1]


register(Exercise(
    id="ch04.fit_probes",
    title="Logistic-regression probes at every depth, in one optimisation",
    reference=probing.fit_probes,
    cases=_fit_cases,
    validate=_validate_fit,
    timeout_s=60.0,
    mistakes=(
        Mistake("one probe shared by all depths", _fit_one_probe_for_all,
                "Each depth needs its own weights: keep the depth as a batch dimension (weight of shape "
                "(depth, d_model, n_classes)) instead of pooling the rows of every depth."),
        Mistake("least squares on one-hot labels", _fit_least_squares,
                "Fit by softmax cross-entropy (multinomial logistic regression), not by regressing one-hot "
                "vectors: least squares does not give logits whose softmax is a calibrated prediction."),
    ),
))


# --- 3. the random-init baseline --------------------------------------------------------------


@cache
def _models() -> tuple:
    """The chapter's model and Chapter 3's (another architecture), loaded once per session."""
    from mi_course.models import load_model

    return load_model("gridwalk-3l", device="cpu"), load_model("attn-only-2l", device="cpu")


def _random_init_cases(seed: int = 0) -> list[Case]:
    gridwalk, attn_only = _models()
    return [
        Case(args=(gridwalk,), kwargs={"seed": seed + 1}, label="gridwalk-3l"),
        Case(args=(attn_only,), kwargs={"seed": seed + 2}, label="attn-only-2l (another architecture)"),
    ]


def _validate_random_init(case: Case, out: object) -> str | None:
    (trained,) = case.args
    theirs = trained.state_dict()
    if not isinstance(out, dict) or not all(isinstance(v, Tensor) for v in out.values()):
        return "the output should be a state dict: a dict from parameter names to tensors, like model.state_dict()"
    if out.keys() != theirs.keys() or any(out[k].shape != theirs[k].shape for k in theirs):
        return "the output should have exactly the names and shapes of model.state_dict()"
    fresh = probing.untrained_copy(trained, seed=0).state_dict()
    varying = [k for k, v in fresh.items() if v.is_floating_point() and v.ndim >= 2 and v.std() > 0]
    if any(torch.allclose(out[k].detach().cpu().float(), theirs[k].detach().cpu().float()) for k in varying):
        return "some weight matrices still hold the trained values: re-initialise every parameter"
    if any(out[k].detach().float().std() < 1e-8 for k in varying):
        return "some weight matrices are constant (e.g. all zeros): a random-init control needs random weights"
    for k, init in fresh.items():
        value, init = out[k].detach().cpu(), init.detach().cpu()
        if not init.is_floating_point() or init.ndim < 2 or init.std() == 0:
            wrong = not torch.allclose(value.float(), init.float())
        else:
            ratio = value.float().pow(2).mean().sqrt() / init.pow(2).mean().sqrt()
            wrong = not 0.5 < ratio < 2
        if wrong:
            return ("the parameters are not at the scale this architecture is initialised at (LayerNorm weights "
                    "start at 1, biases at 0, matrices at the config's initializer range): boot a fresh model "
                    "from the config instead of drawing weights yourself")
    return None


def _random_init_trained_kept(model, seed=0):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _random_init_zeros(model, seed=0):
    return {k: torch.zeros_like(v) for k, v in probing.random_init_weights(model, seed).items()}


def _random_init_standard_normal(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) for k, v in probing.random_init_weights(model, seed).items()}


register(Exercise(
    id="ch04.random_init_weights",
    title="The weights of a randomly initialised copy: the control a probe must beat",
    reference=probing.random_init_weights,
    cases=_random_init_cases,
    validate=_validate_random_init,
    seed_arg="seed",
    timeout_s=30.0,
    mistakes=(
        Mistake("trained weights kept", _random_init_trained_kept,
                "A copy of the trained weights is no control: build the same architecture with fresh random "
                "weights (TransformerBridge.boot_native with the model's config and a new seed)."),
        Mistake("all weights zero", _random_init_zeros,
                "Zero weights make every position's residual the same function of its token and position: "
                "the control must be a *random* network, initialised as this architecture is."),
        Mistake("standard-normal weights", _random_init_standard_normal,
                "Drawing every parameter from N(0, 1) gives a network no training run starts from (LayerNorm "
                "gains of random sign, huge activations): boot the architecture with a new seed instead."),
    ),
))


# --- 4. the bounds ------------------------------------------------------------------------------


def _bayes_cases(seed: int = 0) -> list[Case]:
    corner_only = gw.grid_walks(1, n_moves=1, seed=4300 + seed)
    walks = [gw.grid_walks(6, n_moves=8, seed=4301 + seed), gw.grid_walks(3, n_moves=20, seed=4302 + seed)]
    return [Case(args=(w.legal, w.next_move), label=f"{w.tokens.shape[0]} walks of {w.tokens.shape[1] - 2} moves")
            for w in walks] + [Case(args=(corner_only.legal, corner_only.next_move), label="one walk of one move (edge)")]


def _bayes_in_bits(legal, next_move):
    return legal[next_move != gw.IGNORE].sum(-1).float().log2().mean()


def _bayes_last_position_counted(legal, next_move):
    return legal[legal.any(-1)].sum(-1).float().log().mean()


def _bayes_four_moves(legal, next_move):
    return torch.tensor(math.log(len(gw.MOVES)))


register(Exercise(
    id="ch04.bayes_move_loss",
    title="The Bayes limit of the next-move loss",
    reference=gw.bayes_move_loss,
    cases=_bayes_cases,
    mistakes=(
        Mistake("bits, not nats", _bayes_in_bits,
                "The model's cross-entropy is in nats: use the natural logarithm."),
        Mistake("last position counted", _bayes_last_position_counted,
                "Average over the positions a move follows (next_move != IGNORE), as the loss does: the last "
                "position has legal moves but nothing to predict."),
        Mistake("uniform over all four moves", _bayes_four_moves,
                "Only the legal moves are possible: a walker in a corner has 2, on an edge 3, inside 4."),
    ),
))

register(Exercise(
    id="ch04.cell_entropy",
    title="H(cell | tokens so far), in nats",
    kind="value",
    reference=0.0,
    mistakes=(
        Mistake("entropy of the cell alone", math.log(25),
                "ln 25 is the entropy of a cell drawn uniformly; given the start cell and every move since, "
                "how many cells are possible?"),
        Mistake("entropy of the next move", math.log(4),
                "That is (at most) the entropy of the next move; the question is about the current cell given the history."),
    ),
))


# --- 5. control tasks ---------------------------------------------------------------------------


def _control_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(4400 + seed)
    walks = gw.grid_walks(20, n_moves=10, seed=4401 + seed)
    keep = walks.cell != gw.IGNORE
    repeated = torch.randint(12, (60,), generator=g) * 3 + 5
    return [
        Case(args=(probing.input_types(walks.tokens, len(gw.VOCAB))[keep], 25), kwargs={"seed": seed + 1},
             label="(position, token) types of 20 walks, 25 classes"),
        Case(args=(repeated, 3), kwargs={"seed": seed + 2}, label="12 types with gaps between their ids, 3 classes"),
        Case(args=(torch.full((9,), 4), 5), kwargs={"seed": seed + 3}, label="a single type (edge)"),
    ]


def _validate_control(case: Case, out: object) -> str | None:
    types, n_classes = case.args
    if not isinstance(out, Tensor) or out.dtype != torch.long:
        return "the output should be a torch.long tensor of labels"
    if out.shape != types.shape:
        return f"the output should have one label per row, shape {tuple(types.shape)}"
    if out.min() < 0 or out.max() >= n_classes:
        return f"labels must lie in 0..n_classes-1 = 0..{n_classes - 1}, the task's cardinality"
    first = torch.full((int(types.max()) + 1,), -1)
    first[types.flip(0)] = out.flip(0)          # the label of each type's first row
    if (first[types] != out).any():
        return "rows of the same type got different labels: a control label belongs to the type, not to the row"
    if len(types.unique()) >= 10 and torch.equal(out, types % n_classes):
        return "the labels follow the type ids (type % n_classes): draw each type's label at random"
    return None


def _control_per_row(types, n_classes, seed=0):
    return torch.randint(n_classes, types.shape, generator=torch.Generator().manual_seed(seed))


def _control_type_range(types, n_classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(int(types.max()) + 1, generator=generator)[types]


def _control_modulo(types, n_classes, seed=0):
    return types % n_classes


register(Exercise(
    id="ch04.control_task",
    title="A control task: a fixed random label per input type",
    reference=probing.control_task,
    cases=_control_cases,
    validate=_validate_control,
    seed_arg="seed",
    mistakes=(
        Mistake("a new label for every row", _control_per_row,
                "Draw one label per *type* and look it up for every row of that type: a label drawn per row is "
                "noise no probe can learn, not a control task."),
        Mistake("labels from the range of type ids", _control_type_range,
                "Draw labels from range(n_classes), the cardinality of the real task, so that control and task "
                "accuracies are comparable."),
        Mistake("type id modulo n_classes", _control_modulo,
                "A fixed formula of the type id is not random: draw each type's label with the seeded generator."),
    ),
))


# --- 6. interventions -----------------------------------------------------------------------------


def _ablate_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(4500 + seed)
    where = torch.rand(3, 5, generator=g) < 0.7
    where[:, 0] = False
    return [
        Case(args=(torch.randn(3, 5, 6, generator=g) + 1, torch.randn(6, 2, generator=g), where),
             label="2 directions (not orthonormal) in d_model 6, <bos> and some positions left alone"),
        Case(args=(torch.randn(2, 4, 8, generator=g) - 2, torch.randn(8, 1, generator=g) * 3, torch.ones(2, 4, dtype=torch.bool)),
             label="one direction, every position"),
        Case(args=(torch.randn(1, 3, 4, generator=g), torch.randn(4, 3, generator=g), torch.tensor([[False, True, False]])),
             label="a single position ablated (edge)"),
    ]


def _ablate_zero(resid, directions, where):
    basis = probing.orthonormal_basis(directions)
    return resid - torch.where(where[..., None], (resid @ basis) @ basis.T, 0.0)


def _ablate_not_orthonormal(resid, directions, where):
    component = resid @ directions
    change = torch.where(where[..., None], component[where].mean(0) - component, 0.0)
    return resid + change @ directions.T


def _ablate_mean_everywhere(resid, directions, where):
    basis = probing.orthonormal_basis(directions)
    component = resid @ basis
    change = torch.where(where[..., None], component.mean((0, 1)) - component, 0.0)
    return resid + change @ basis.T


register(Exercise(
    id="ch04.mean_ablate_subspace",
    title="Mean-ablate a subspace of the residual stream",
    reference=probing.mean_ablate_subspace,
    cases=_ablate_cases,
    mistakes=(
        Mistake("zero-ablation", _ablate_zero,
                "Replace the component by its *mean* over the selected positions, not by 0: the model never "
                "sees a residual with nothing in that subspace, so zero-ablation measures the shock, not the "
                "information."),
        Mistake("directions not orthonormalised", _ablate_not_orthonormal,
                "Projecting with non-orthonormal directions double-counts and rescales: make an orthonormal "
                "basis of their span first (torch.linalg.qr)."),
        Mistake("mean over every position", _ablate_mean_everywhere,
                "Take the mean over the positions in `where` only (not <bos>, not the positions left alone)."),
    ),
))


def _steer_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(4600 + seed)

    def basis(d_model: int, k: int) -> Tensor:
        return torch.linalg.qr(torch.randn(d_model, k, generator=g))[0]

    return [
        Case(args=(torch.randn(7, 6, generator=g), basis(6, 2), torch.randn(7, 6, generator=g) + 2),
             label="7 rows, a 2-dim subspace of d_model 6"),
        Case(args=(torch.randn(4, 5, generator=g), basis(5, 1), torch.randn(4, 5, generator=g)), label="one direction"),
        Case(args=(torch.randn(1, 3, generator=g), basis(3, 2), torch.randn(1, 3, generator=g)), label="a single row (edge)"),
    ]


def _steer_added(resid, basis, target):
    return resid + (target @ basis) @ basis.T


def _steer_complement(resid, basis, target):
    return target + ((resid - target) @ basis) @ basis.T


def _steer_whole_vector(resid, basis, target):
    return target.clone()


register(Exercise(
    id="ch04.steer_subspace",
    title="Edit the residual along the probe's directions",
    reference=probing.steer_subspace,
    cases=_steer_cases,
    mistakes=(
        Mistake("target added, own component kept", _steer_added,
                "Replace the residual's component in the subspace: remove its own (resid @ basis) before "
                "adding the target's."),
        Mistake("the complement replaced", _steer_complement,
                "Change only the component *inside* span(basis); everything orthogonal to it stays the residual's."),
        Mistake("the whole vector replaced", _steer_whole_vector,
                "Replacing the whole residual edits every variable at once; edit only along the basis."),
    ),
))


# --- optional: design an erasure ------------------------------------------------------------------


def _erase_cases(seed: int = 0) -> list[Case]:
    g = torch.Generator().manual_seed(4700 + seed)
    embeddings = torch.randn(16, 24, generator=g)
    index = torch.randint(16, (600,), generator=g)
    spread = embeddings[index] + 0.05 * torch.randn(600, 24, generator=g)
    three = torch.randn(500, 12, generator=g)
    three_labels = (three[:, :3] @ torch.randn(3, 3, generator=g)).argmax(-1)
    return [
        Case(args=(spread, index % 2, 16), label="parity of one of 16 embedded ids, d_model 24: spread over many directions"),
        Case(args=(three, three_labels, 8), label="3 classes written along 3 directions of d_model 12"),
    ]


ERASE_SLACK = 0.05


def _validate_erase(case: Case, out: object) -> str | None:
    acts, labels, max_dims = case.args
    if not isinstance(out, Tensor) or not out.is_floating_point() or out.ndim != 2 or out.shape[0] != acts.shape[1]:
        return f"the output should be a float tensor of shape (d_model, k) = ({acts.shape[1]}, k)"
    if out.shape[1] > max_dims:
        return f"use at most max_dims = {max_dims} directions: erasing the whole space erases everything"
    basis = out.detach().float().cpu()
    if not torch.allclose(basis.T @ basis, torch.eye(basis.shape[1]), atol=1e-4):
        return "the columns should be orthonormal (basis.T @ basis = identity)"
    left = acts - (acts @ basis) @ basis.T
    majority = torch.bincount(labels).max().item() / len(labels)
    accuracy = probing.fit_probe(left, labels).accuracy(left, labels).item()
    if accuracy > majority + ERASE_SLACK:
        return (f"a fresh linear probe still reads the label from what is left (more than {ERASE_SLACK} above the "
                "majority class): one probe's directions are not all the directions it can be read from")
    return None


def _erase_one_round(acts, labels, max_dims):
    return probing.fit_probe(acts, labels).directions()


def _erase_everything(acts, labels, max_dims):
    return torch.eye(acts.shape[1])


def _erase_raw_weights(acts, labels, max_dims):
    removed = probing.erase_label(acts, labels, max_dims)
    return removed * torch.linspace(1, 2, removed.shape[1])


register(Exercise(
    id="ch04.erase_label",
    title="(Optional) Design an erasure: the fewest directions whose removal hides a label from any linear probe",
    reference=probing.erase_label,
    cases=_erase_cases,
    validate=_validate_erase,
    timeout_s=60.0,
    handed_out=("mi_course.probing.orthonormal_basis",),
    mistakes=(
        Mistake("one probe's directions", _erase_one_round,
                "After removing one probe's directions, fit a new probe on what is left: it often finds other "
                "directions. Repeat until it reads no better than the majority class."),
        Mistake("the whole space", _erase_everything,
                "Removing every direction hides the label trivially (and everything else): stay within max_dims."),
        Mistake("basis not orthonormal", _erase_raw_weights,
                "Return an orthonormal basis of the removed span (e.g. from torch.linalg.qr or svd), so that "
                "acts - (acts @ basis) @ basis.T is a projection."),
    ),
))
