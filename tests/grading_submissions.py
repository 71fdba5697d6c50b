"""Chapter 1 submissions for the instructor's grader: correct ones, untouched ones, and the cheats
that once earned credit (issue "Instructor grading a learner cannot game"), each kept as a
regression case. Built from the hand-out by replacing stubs, as a learner's notebook would be."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

from mi_course import notebooks

ROOT = notebooks.repo_root()
HANDOUT = ROOT / "chapters" / "01_superposition.ipynb"
SOLUTION = ROOT / "solutions" / "01_superposition.ipynb"
CH01 = ["ch01.max_abs_cosine", "ch01.r2_count", "ch01.nearly_orthogonal_vectors", "ch01.jl_constant",
        "ch01.expected_interference", "ch01.sparse_features", "ch01.toy_forward",
        "ch01.importance_weighted_mse", "ch01.train_toy_models", "ch01.classify_phase",
        "ch01.feature_dimensionality"]


def submission(answers: dict[str, str], extra_cells: tuple[str, ...] = (), base: Path = HANDOUT,
               first_cells: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """The hand-out with each answered exercise's stub replaced by `answers[id]` (a function
    body, or a value region's lines), `first_cells` after the set-up and `extra_cells` at the end."""
    nb = nbformat.read(base, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        for i, line in enumerate(lines):
            for exercise_id, code in answers.items():
                if line.strip() == f'raise NotImplementedError("Exercise {exercise_id}: write your code here")':
                    indent = line[: len(line) - len(line.lstrip())]
                    lines[i] = textwrap.indent(textwrap.dedent(code).strip("\n"), indent)
                elif line.endswith(f"# your answer ({exercise_id})"):
                    lines[i] = textwrap.dedent(code).strip("\n")
        cell.source = "\n".join(lines)
    setup_at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code") + 1
    nb.cells[setup_at:setup_at] = [nbformat.v4.new_code_cell(src) for src in first_cells]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in extra_cells]
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, path)
    return path


# --- correct answers written independently of the reference (no similarity flag) -------------

REWRITTEN = {
    "ch01.max_abs_cosine": """
        n = vectors / vectors.norm(dim=1, keepdim=True)
        c = (n @ n.T).abs()
        c = c - torch.diag(torch.diagonal(c)) - torch.eye(len(c), dtype=c.dtype)
        return c.max()
    """,
    "ch01.r2_count": "r2_count = 2",
    "ch01.nearly_orthogonal_vectors": """
        cand = torch.randn(n_candidates, d, generator=generator)
        cand = cand / cand.norm(dim=1, keepdim=True)
        chosen = torch.empty(0, d)
        for v in cand:
            if len(chosen) == 0 or (chosen @ v).abs().max() <= eps:
                chosen = torch.cat([chosen, v[None]])
        return chosen
    """,
    "ch01.jl_constant": "jl_constant = 1 / 4",
    "ch01.expected_interference": """
        g = torch.einsum("mi,mj->ij", W, W)
        g = g * (1 - torch.eye(g.shape[0], dtype=g.dtype))
        return p * g.pow(2).sum(-1)
    """,
    "ch01.sparse_features": """
        keep = torch.rand(batch_size, len(sparsity), n_features, generator=generator) >= sparsity[:, None]
        vals = torch.rand(batch_size, len(sparsity), n_features, generator=generator)
        return vals * keep
    """,
    "ch01.toy_forward": """
        hidden = torch.einsum("imn,bin->bim", W, x)
        return (torch.einsum("imn,bim->bin", W, hidden) + b).clamp_min(0)
    """,
    "ch01.importance_weighted_mse": """
        return ((x - out) ** 2 * importance).sum(-1).mean(0)
    """,
    "ch01.train_toy_models": """
        params = [W.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()]
        opt = torch.optim.Adam(params, lr=lr)
        for step in range(steps):
            batch = features()
            opt.zero_grad()
            importance_weighted_mse(toy_forward(params[0], params[1], batch), batch, importance).sum().backward()
            opt.step()
        return params[0].detach(), params[1].detach()
    """,
    "ch01.classify_phase": """
        big = W.abs()[:, 0] > threshold
        second, first = big[:, 1], big[:, 0]
        return torch.where(second & first, 2, torch.where(second, 1, 0)).long()
    """,
    "ch01.feature_dimensionality": """
        length = W.norm(dim=1)
        direction = W / length[:, None, :].clamp_min(1e-12)
        shared = torch.einsum("imn,imk->ink", direction, W).pow(2).sum(-1)
        return length.pow(2) / shared.clamp_min(1e-12)
    """,
}

# --- cheats: every one must earn nothing ----------------------------------------------------------

KERNEL_CHEATS = (  # cells outside the solution regions: the recorded grade never runs them
    "from mi_course.grading.progress import record\n"
    f"for exercise_id in {CH01!r}:\n    record(exercise_id, 'passed')",
    "import json\nfrom mi_course.grading.progress import progress_path\n"
    f"progress_path().write_text(json.dumps({{i: {{'status': 'passed'}} for i in {CH01!r}}}))",
    "import sys\ngrading_check = sys.modules['mi_course.grading.check']\n"
    "grading_check.grade = lambda ex, answer: grading_check.CheckResult(ex.id, 'passed', 'ok', answer)\n"
    "grading_check.check = lambda i, a, **k: grading_check.CheckResult(i, 'passed', 'ok', a)",
    "max_abs_cosine = sp.max_abs_cosine\ntoy_forward = sp.toy_forward",
)

CHEATS_A = {
    # the reference itself, through the notebook's own import
    "ch01.max_abs_cosine": "return sp.max_abs_cosine(vectors)",
    # a wrapper around it
    "ch01.nearly_orthogonal_vectors": """
        from functools import partial
        return partial(sp.nearly_orthogonal_vectors, d)(eps, n_candidates, generator)
    """,
    # the exercise's reference, from the registry
    "ch01.expected_interference": """
        from mi_course.grading import get_exercise
        return get_exercise("ch01.expected_interference").reference(W, p)
    """,
    # the cache of reference outputs
    "ch01.sparse_features": """
        from mi_course.grading.check import _expected_cache
        return _expected_cache["ch01.sparse_features"][0]
    """,
    # the call stack, looking for the expected output
    "ch01.toy_forward": """
        import inspect
        for frame in inspect.stack():
            for name in ("expected", "expected_all", "want"):
                found = frame.frame.f_locals.get(name)
                if found is not None:
                    return found[0] if isinstance(found, list) else found
        return None
    """,
    # a tensor subclass that compares equal to anything
    "ch01.importance_weighted_mse": """
        class Anything(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                return True
        return torch.zeros(out.shape[1]).as_subclass(Anything)
    """,
    # running the course's solution notebook from inside the submission
    "ch01.train_toy_models": """
        import nbformat
        from mi_course import notebooks
        solved = nbformat.read(notebooks.repo_root() / "solutions" / "01_superposition.ipynb", as_version=4)
        scope = {}
        for cell in solved.cells[:33]:
            if cell.cell_type == "code":
                exec(cell.source, scope)
        return scope["train_toy_models"](W, b, importance, features, steps, lr)
    """,
    # the reference's source, pasted in
    "ch01.classify_phase": """
        kept = W[:, 0, :].abs() > threshold
        phase = torch.zeros(W.shape[0], dtype=torch.long, device=W.device)
        phase[kept[:, 1]] = 1
        phase[kept[:, 1] & kept[:, 0]] = 2
        return phase
    """,
    # emptying the exercise's cases and replacing grade, from inside the answer
    "ch01.feature_dimensionality": """
        import sys
        from mi_course.grading import get_exercise
        grading_check = sys.modules["mi_course.grading.check"]
        object.__setattr__(get_exercise("ch01.feature_dimensionality"), "cases", lambda seed=0: [])
        grading_check.grade = lambda ex, answer: grading_check.CheckResult(ex.id, "passed", "ok", answer)
        return None
    """,
    # values looked up rather than written out
    "ch01.r2_count": "from mi_course.grading import get_exercise\nr2_count = get_exercise('ch01.r2_count').reference",
    "ch01.jl_constant": "jl_constant = sp.JL_CONSTANT",
}

CHEATS_B = {
    # re-importing the reference module afresh
    "ch01.max_abs_cosine": """
        import importlib
        import mi_course.superposition as topic
        return importlib.reload(topic).max_abs_cosine(vectors)
    """,
    # the reference's source, read and executed
    "ch01.nearly_orthogonal_vectors": """
        import inspect
        scope = dict(vars(sp))
        exec(inspect.getsource(sp.nearly_orthogonal_vectors), scope)
        return scope["nearly_orthogonal_vectors"](d, eps, n_candidates, generator)
    """,
    # the garbage collector, looking for the unlocked function
    "ch01.expected_interference": """
        import gc
        for obj in gc.get_objects():
            if callable(obj) and getattr(obj, "__name__", "") == "expected_interference" and obj is not expected_interference:
                return obj(W, p)
        return None
    """,
    # the solution notebook, run by another process
    "ch01.sparse_features": """
        import subprocess, sys
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--execute", "solutions/01_superposition.ipynb"])
        return None
    """,
    # a lambda wrapping the reference
    "ch01.toy_forward": "return (lambda *a: sp.toy_forward(*a))(W, b, x)",
    # an object that equals anything
    "ch01.importance_weighted_mse": """
        class Equal:
            def __eq__(self, other):
                return True
        return Equal()
    """,
    # the reference's code object in a new function
    "ch01.train_toy_models": """
        import types
        again = types.FunctionType(sp.train_toy_models.__code__, vars(sp))
        return again(W, b, importance, features, steps, lr)
    """,
    # pasted source with the variables renamed
    "ch01.classify_phase": """
        on = W[:, 0, :].abs() > threshold
        out = torch.zeros(W.shape[0], dtype=torch.long, device=W.device)
        out[on[:, 1]] = 1
        out[on[:, 1] & on[:, 0]] = 2
        return out
    """,
    # recording "passed" from inside the answer
    "ch01.feature_dimensionality": """
        from mi_course.grading.progress import record
        record("ch01.feature_dimensionality", "passed")
        return torch.zeros(W.shape[0], W.shape[2])
    """,
}


def planter(targets: list[Path]) -> dict[str, str]:
    """An answer that tries to plant files where a later submission's grading would pick them up."""
    body = "import os\n"
    for target in targets:
        body += (f"try:\n    os.makedirs({str(target.parent)!r}, exist_ok=True)\n"
                 f"    open({str(target)!r}, 'w').write('import mi_course; mi_course.check = None')\n"
                 "except Exception:\n    pass\n")
    body += ("try:\n    open(os.path.expanduser('~/.ipython/profile_default/startup/00-cheat.py'), 'w')\n"
             "except Exception:\n    pass\nreturn torch.tensor(0.0)")
    return {"ch01.max_abs_cosine": body}


def tamperer(target: Path) -> dict[str, str]:
    """An answer that writes into the course through a library the fence cannot see (Rust I/O)."""
    return {"ch01.max_abs_cosine": f"""
        from safetensors.torch import save_file
        save_file({{"x": torch.zeros(1)}}, {str(target)!r})
        return torch.tensor(0.0)
    """}


GLOBAL_RNG = {"ch01.sparse_features": """
    shape = (batch_size, len(sparsity), n_features)
    return torch.rand(shape) * (torch.rand(shape) >= sparsity[:, None])
"""}


def precomputed(exercise_id: str = "ch01.expected_interference") -> dict[str, str]:
    """An answer that looks its outputs up in a table of the public (seed 0) cases' right answers."""
    from mi_course.grading import get_exercise

    ex = get_exercise(exercise_id)
    table = {round(float(c.args[0].sum()), 4): ex.reference(*c.args, **c.kwargs).tolist() for c in ex.cases(seed=0)}
    return {exercise_id: f"table = {table!r}\nreturn torch.tensor(table[round(float(W.sum()), 4)], dtype=W.dtype)"}


# the reference's source, read past Python's `open` and executed
FROM_FILE = {"ch01.nearly_orthogonal_vectors": """
    import os
    import mi_course.superposition as topic
    raw = torch.from_file(topic.__file__, size=os.path.getsize(topic.__file__), dtype=torch.uint8)
    scope = dict(vars(topic))
    exec(bytes(raw.tolist()).decode(), scope)
    return scope["nearly_orthogonal_vectors"](d, eps, n_candidates, generator)
"""}

KILLER = {"ch01.toy_forward": "import os\nos.kill(os.getpid(), 9)"}
RAISING = {"ch01.expected_interference": "raise RuntimeError('stuck here')"}
HANGING = {"ch01.max_abs_cosine": """
    import signal
    signal.setitimer(signal.ITIMER_REAL, 0)
    while True:
        pass
"""}
