"""`python -m mi_course.train NAME [--seed S] [--out DIR] [--steps N]`: retrain a shipped model.

By default the checkpoint goes to `runs/<name>-seed<S>/`, not over the shipped one;
pass `--out mi_course/weights/<name>` to replace it. One torch thread by default: the result
is then deterministic for a seed on a given machine, and a shared machine stays usable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mi_course.train import trainable_models, training_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mi_course.train", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=trainable_models())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="where to save (default: runs/<name>-seed<S>)")
    parser.add_argument("--steps", type=int, help="training steps (default: the release setting)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    module = training_module(args.name)
    out = args.out or Path("runs") / f"{args.name}-seed{args.seed}"
    metrics = module.train(seed=args.seed, out_dir=out, steps=args.steps)
    missed = module.missed_targets(metrics)
    print(f"\n{args.name}, seed {args.seed}: saved to {out.resolve()}")
    print(json.dumps(metrics, indent=1))
    print("release criteria: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
