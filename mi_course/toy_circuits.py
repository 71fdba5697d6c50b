"""Hand-built circuits whose ground truth is known: where noising and denoising disagree.

A `ToyCircuit` reads a few *nodes* linearly from its input and combines them into one output
through gates: an OR gate (`max`: either node alone carries the answer, the two are redundant),
an AND gate (`min`: both are needed) or a single node. Patching a node means replacing its value
by its value on the other input; the output is the metric. Because the gates are known, so is
the right reading of every patching result: denoising (clean node into the corrupted run) finds
the OR nodes and misses the AND nodes, noising (corrupted node into the clean run) the reverse
(Heimersheim & Nanda 2024; the terms are Wang et al. 2023's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

GATES = ("or", "and", "single")


@dataclass(frozen=True)
class ToyCircuit:
    """Node i is `x @ read[i]`; the output is the sum over `gates` of each gate applied to its
    nodes (`("or", (0, 1))` is max(node 0, node 1), `("and", ...)` the min, `("single", (i,))`
    node i itself). Nodes no gate reads are dead ends."""

    read: Float[Tensor, "node n_in"]
    gates: tuple[tuple[str, tuple[int, ...]], ...]
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for kind, nodes in self.gates:
            if kind not in GATES or not nodes or max(nodes) >= self.read.shape[0]:
                raise ValueError(f"bad gate {(kind, nodes)}: kinds are {GATES}, nodes < {self.read.shape[0]}")

    @property
    def n_nodes(self) -> int:
        return self.read.shape[0]

    def nodes(self, x: Float[Tensor, "batch n_in"]) -> Float[Tensor, "batch node"]:
        """Every node's value on every input."""
        return x @ self.read.T

    def output(self, nodes: Float[Tensor, "... batch node"]) -> Float[Tensor, "..."]:
        """The metric: the circuit's output averaged over the batch, for any leading axes."""
        total = torch.zeros(nodes.shape[:-1], dtype=nodes.dtype)
        for kind, members in self.gates:
            picked = nodes[..., list(members)]
            total = total + (picked.amax(-1) if kind == "or" else picked.amin(-1) if kind == "and" else picked[..., 0])
        return total.mean(-1)


def or_and_circuit() -> ToyCircuit:
    """The chapter's circuit: two input bits u, v; nodes a = u and b = u feed an OR gate, c = u
    and d = v an AND gate, and e = v is read by nothing. Clean input (1, 1) gives 2, corrupt (0, 0) gives 0."""
    read = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    return ToyCircuit(read, (("or", (0, 1)), ("and", (2, 3))), names=("a", "b", "c", "d", "e"))


def noise_and_denoise(
    circuit: ToyCircuit, clean: Float[Tensor, "batch n_in"], corrupt: Float[Tensor, "batch n_in"]
) -> Float[Tensor, "2 node"]:
    """Patch every node in both directions, all variants at once. Row 0 denoising (the corrupted
    run with node i taken from the clean run), row 1 noising (the clean run with node i taken
    from the corrupted run); both rows are the normalised metric (patched - corrupt) / (clean -
    corrupt), so 1 means "as clean" and 0 "as corrupted"."""
    clean_nodes, corrupt_nodes = circuit.nodes(clean), circuit.nodes(corrupt)
    one_hot = torch.eye(circuit.n_nodes, dtype=torch.bool)[:, None, :]  # variant, batch, node
    denoised = torch.where(one_hot, clean_nodes, corrupt_nodes)
    noised = torch.where(one_hot, corrupt_nodes, clean_nodes)
    clean_value, corrupt_value = circuit.output(clean_nodes), circuit.output(corrupt_nodes)
    return (circuit.output(torch.stack([denoised, noised])) - corrupt_value) / (clean_value - corrupt_value)
