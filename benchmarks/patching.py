"""Batched activation patching (`mi_course.patching`) against `transformer_lens.patching`.

    python benchmarks/patching.py [--threads 1] [--repeats 5]

On the same model and prompts, times every-head patching and residual-stream-by-position
patching both ways, checks that the results agree to 1e-5, and prints the speed-up; for the largest
sweep, run again on 256 prompts, it prints the peak resident memory of each method (measured in a
fresh subprocess per method) and how much it grew during the sweep. `transformer_lens.patching`
runs one forward pass per patched site; `mi_course.patching` stacks the patched variants along the
batch and runs one pass per chunk of at most `max_rows` rows (1,024 by default; variants are
never split across chunks), so memory stays bounded however many sites: each chunk starts inside
its first patched block, computes the last block and the logits only where the metric reads,
and variants that copy only values equal to the run's own are not run at all.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from mi_course import load_model  # noqa: E402
from mi_course import patching as P  # noqa: E402
from mi_course.data import facts  # noqa: E402
from mi_course.data.repeated_tokens import repeated_tokens  # noqa: E402

SEG, N_PROMPTS = 8, 16
# Memory is measured for the largest sweep only, on MEMORY_PROMPTS prompts (so that the stacked
# batch is cut into several chunks): each measurement starts a fresh interpreter.
MEMORY_SWEEP, MEMORY_PROMPTS = "every head by position", 256


def workloads(n_prompts: int = N_PROMPTS):
    """(label, model, clean tokens, corrupted tokens, metric) for each benchmarked set-up."""
    induction = load_model("attn-only-2l", device="cpu")
    clean = repeated_tokens(induction.tokenizer, n_prompts, SEG, seed=0)
    corrupt = clean.clone()
    corrupt[:, 1 : 1 + SEG] = repeated_tokens(induction.tokenizer, n_prompts, SEG, seed=1)[:, 1 : 1 + SEG]
    position = torch.full((n_prompts,), clean.shape[1] - 2)
    yield (
        f"attn-only-2l, induction, {n_prompts} prompts x {clean.shape[1]} tokens",
        induction, clean, corrupt, lambda logits: P.logit_diff(logits, position, clean[:, -1], corrupt[:, SEG]),
    )
    recall = load_model("facts-4l", device="cpu")
    clean_facts, corrupt_facts = facts.swap_pairs(n_prompts, seed=0)
    yield (
        f"facts-4l, subject swap, {n_prompts} prompts x {clean_facts.tokens.shape[1]} tokens",
        recall, clean_facts.tokens, corrupt_facts.tokens,
        lambda logits: P.logit_diff(logits, clean_facts.final, clean_facts.answer, corrupt_facts.answer),
    )


def sweeps(tl_patching) -> dict[str, tuple[Callable, Callable]]:
    """Name -> (ours, TransformerLens's), each called as f(model, clean, corrupt, metric)."""

    def tl(function):
        def run(model, clean, corrupt, metric):
            _, cache = model.run_with_cache(clean)
            return function(model, corrupt, cache, lambda logits: metric(logits[None])[0])

        return run

    return {
        "every head (z, all positions)": (P.every_head, tl(tl_patching.get_act_patch_attn_head_out_all_pos)),
        "residual stream by (layer, position)": (P.resid_by_pos, tl(tl_patching.get_act_patch_resid_pre)),
        "every head by position": (P.every_head_by_pos, tl(tl_patching.get_act_patch_attn_head_out_by_pos)),
    }


def best_time(function: Callable, repeats: int) -> tuple[float, torch.Tensor]:
    """The least CPU time of `repeats` runs: on a shared machine wall time mostly measures the
    other jobs, while the process's CPU time measures the work."""
    times, result = [], None
    for _ in range(repeats):
        start = time.process_time()
        result = function()
        times.append(time.process_time() - start)
    return min(times), result


def peak_memory_mb(workload: int, sweep: str, method: int) -> tuple[float, float]:
    """(peak resident memory, its growth during the sweep), in MB, of one sweep on
    MEMORY_PROMPTS prompts, run alone in a fresh interpreter."""
    output = subprocess.run(
        [sys.executable, __file__, "--memory", str(workload), sweep, str(method)],
        capture_output=True, text=True, check=True,
    ).stdout
    peak, growth = output.strip().splitlines()[-1].split()
    return float(peak), float(growth)


def measure_memory(workload: int, sweep: str, method: int) -> None:
    """Child process: print the peak resident memory and its growth during one sweep, in MB."""
    import transformer_lens.patching as tlp

    torch.set_num_threads(1)
    label, model, clean, corrupt, metric = list(workloads(MEMORY_PROMPTS))[workload]
    function = sweeps(tlp)[sweep][method]
    model(clean[:1])  # warm-up, so lazy initialisation is not counted
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    function(model, clean, corrupt, metric)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(after / 1024, (after - before) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        measure_memory(int(args.memory[0]), args.memory[1], int(args.memory[2]))
        return

    import transformer_lens.patching as tlp

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), least CPU time of {args.repeats} runs")
    for index, (label, model, clean, corrupt, metric) in enumerate(workloads()):
        print(f"\n{label}")
        for name, (ours, theirs) in sweeps(tlp).items():
            our_time, our_result = best_time(lambda: ours(model, clean, corrupt, metric), args.repeats)
            tl_time, tl_result = best_time(lambda: theirs(model, clean, corrupt, metric), args.repeats)
            error = (our_result - tl_result).abs().max().item()
            if error > 1e-5:
                raise SystemExit(f"{name}: results differ by {error:.2e} > 1e-5")
            sites = our_result.numel()
            line = (
                f"  {name:<38} {sites:>4} sites  mi_course {our_time:6.3f} s  "
                f"transformer_lens {tl_time:6.3f} s CPU  speed-up {tl_time / our_time:5.1f}x  max |diff| {error:.1e}"
            )
            print(line, flush=True)
            if not args.no_memory and name == MEMORY_SWEEP:
                (ours_peak, ours_growth), (tl_peak, tl_growth) = [peak_memory_mb(index, name, m) for m in (0, 1)]
                rows = MEMORY_PROMPTS * sites
                print(
                    f"    same sweep on {MEMORY_PROMPTS} prompts ({rows:,} stacked rows, in chunks of <= "
                    f"{P.DEFAULT_MAX_ROWS:,} rows): peak resident memory mi_course {ours_peak:.0f} MB "
                    f"(+{ours_growth:.0f} MB during the sweep), "
                    f"transformer_lens {tl_peak:.0f} MB (+{tl_growth:.0f} MB)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
