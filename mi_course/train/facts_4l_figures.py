"""Reproduce the causal-tracing evidence in facts-4l's model card:
`python -m mi_course.train.facts_4l_figures [CHECKPOINT_DIR]`.

Writes causal_tracing.png and numbers.json into the checkpoint directory's `figures/` (the
shipped `mi_course/weights/facts-4l/` by default). Causal tracing as in Meng et al. (2022): Gaussian noise of 3x
the subject-embedding std on the subject tokens, one state restored per (layer, token role),
effects on P(object) averaged over 40 facts per relation and 4 noise draws
(`mi_course.train.facts_4l.trace_by_role`), in both directions, MLP and attention outputs
restored in a one-layer window. This is the analysis behind the card, not library code; Chapter 5 teaches the
same method.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")

from mi_course.models.checkpoint import WEIGHTS_DIR, load_checkpoint  # noqa: E402
from mi_course.train.facts_4l import ROLES, trace_by_role  # noqa: E402
from mi_course.viz.patching import trace_heatmaps  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else WEIGHTS_DIR / "facts-4l"
    out = directory / "figures"
    out.mkdir(exist_ok=True)
    model = load_checkpoint(directory)
    results = {
        "denoising_w1": trace_by_role(model),
        "noising_w1": trace_by_role(model, direction="noising"),
    }
    numbers = {"roles": list(ROLES)}
    for name, traced in results.items():
        numbers[name] = {kind: values.round(decimals=4).tolist() for kind, values in traced.items()}
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1) + "\n")
    clean, corrupted = results["denoising_w1"]["baseline"].tolist()
    figure = trace_heatmaps(
        {kind: results["denoising_w1"][kind] for kind in ("hidden", "mlp", "attn")}, ROLES,
        f"facts-4l causal tracing (denoising): P(object) clean {clean:.2f}, noised {corrupted:.2f}",
    )
    figure.savefig(out / "causal_tracing.png", dpi=80)
    print(json.dumps(numbers["denoising_w1"]), json.dumps(numbers["noising_w1"]), flush=True)


if __name__ == "__main__":
    main()
