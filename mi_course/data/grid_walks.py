"""Random walks on a 5x5 grid: the probing task of Chapter 4.

A row is `<bos>`, a start-cell token (`c23`: column x=2, row y=3), then `n_moves` moves `U D L R`.
Every walk is legal (it never leaves the grid) and each move is drawn uniformly from the moves
legal where the walker stands. So a model that predicts the next move well must know the current
cell, which the tokens never state after the start: a hidden state for a linear probe to read.

Besides the cell, each position carries labels the model does *not* need, for contrast:
`step_parity` (is the number of moves so far odd) and `visited_before` (has the walker stood on
this cell before). The next move depends on the cell alone, so neither can matter to a model
that has learned the task; whether a probe can read them anyway is the point of Chapter 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

SIZE = 5
BOS, UNK = "<bos>", "<unk>"
MOVES: tuple[str, ...] = ("U", "D", "L", "R")
# (dx, dy) of each move, in the order of MOVES: U is y + 1, R is x + 1.
STEPS = torch.tensor([[0, 1], [0, -1], [-1, 0], [1, 0]])
CELLS: tuple[str, ...] = tuple(f"c{x}{y}" for y in range(SIZE) for x in range(SIZE))
VOCAB: tuple[str, ...] = (BOS, UNK, *MOVES, *CELLS)
TOKEN_ID: dict[str, int] = {word: index for index, word in enumerate(VOCAB)}
FIRST_MOVE_ID = TOKEN_ID[MOVES[0]]
FIRST_CELL_ID = TOKEN_ID[CELLS[0]]
# Label value at positions where a label is undefined (the `<bos>` position).
IGNORE = -1


def cell_index(x: Tensor, y: Tensor) -> Tensor:
    """The cell number 0..24 of (x, y), row by row: the index into CELLS."""
    return y * SIZE + x


@dataclass(frozen=True)
class GridWalks:
    """A batch of walks and, per position, the labels of the state after reading that token.

    Position 0 is `<bos>` (labels IGNORE, no legal moves), position 1 the start cell, position
    p >= 2 the cell after move p - 1. `legal[b, p]` marks which of MOVES may come next, so the
    model's prediction at position p is judged against it.
    """

    tokens: Int[Tensor, "batch pos"]
    x: Int[Tensor, "batch pos"]
    y: Int[Tensor, "batch pos"]
    step_parity: Int[Tensor, "batch pos"]
    visited_before: Int[Tensor, "batch pos"]
    legal: Bool[Tensor, "batch pos move"]

    @property
    def cell(self) -> Int[Tensor, "batch pos"]:
        """The current cell 0..24 (IGNORE at `<bos>`)."""
        return torch.where(self.x == IGNORE, IGNORE, cell_index(self.x, self.y))

    @property
    def next_move(self) -> Int[Tensor, "batch pos"]:
        """Index into MOVES of the move that follows each position (IGNORE where none does)."""
        following = self.tokens[:, 1:] - FIRST_MOVE_ID
        is_move = (following >= 0) & (following < len(MOVES))
        following = torch.where(is_move, following, IGNORE)
        return torch.cat([following, torch.full_like(following[:, :1], IGNORE)], dim=1)


def legal_moves(x: Int[Tensor, "*shape"], y: Int[Tensor, "*shape"]) -> Bool[Tensor, "*shape move"]:
    """Which of U, D, L, R keep a walker at (x, y) on the grid."""
    return torch.stack([y < SIZE - 1, y > 0, x > 0, x < SIZE - 1], dim=-1)


def bayes_move_loss(legal: Bool[Tensor, "batch pos move"], next_move: Int[Tensor, "batch pos"]) -> Tensor:
    """The lowest mean next-move loss any predictor can reach (nats): each move is uniform over
    the legal ones, so the entropy at a position is ln(#legal). Averaged over the positions a
    move follows (`next_move != IGNORE`), as the model's loss is."""
    where = next_move != IGNORE
    return legal[where].sum(-1).float().log().mean()


def grid_walks(batch: int, n_moves: int = 30, seed: int | torch.Generator = 0) -> GridWalks:
    """`batch` legal random walks of `n_moves` moves from uniformly drawn start cells, with labels.

    `seed` is an int or a torch.Generator (training passes one generator for the whole run).
    The loop runs over moves, not rows: each move depends on where the previous one led.
    """
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if not isinstance(n_moves, int) or n_moves < 1:
        raise ValueError(f"n_moves must be a positive int, got {n_moves!r}")
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    start = torch.randint(SIZE * SIZE, (batch,), generator=generator)
    xs, ys, moves = [start % SIZE], [start // SIZE], []
    for _ in range(n_moves):
        legal = legal_moves(xs[-1], ys[-1]).float()
        move = torch.multinomial(legal, 1, generator=generator)[:, 0]
        moves.append(move)
        xs.append(xs[-1] + STEPS[move, 0])
        ys.append(ys[-1] + STEPS[move, 1])
    x, y, move = torch.stack(xs, 1), torch.stack(ys, 1), torch.stack(moves, 1)

    tokens = torch.cat(
        [torch.full((batch, 1), TOKEN_ID[BOS]), FIRST_CELL_ID + start[:, None], FIRST_MOVE_ID + move], dim=1
    )
    cell = cell_index(x, y)
    # visits[b, p] counts the positions q <= p at which walk b stood on its cell at p.
    earlier = torch.ones(n_moves + 1, n_moves + 1, dtype=torch.bool).tril()
    visits = ((cell[:, :, None] == cell[:, None, :]) & earlier).sum(-1)
    steps = torch.arange(n_moves + 1).expand(batch, -1)

    def with_bos(label: Tensor) -> Tensor:
        return torch.cat([torch.full_like(label[:, :1], IGNORE), label], dim=1)

    legal = legal_moves(x, y)
    return GridWalks(
        tokens=tokens,
        x=with_bos(x),
        y=with_bos(y),
        step_parity=with_bos(steps % 2),
        visited_before=with_bos((visits > 1).long()),
        legal=torch.cat([torch.zeros_like(legal[:, :1]), legal], dim=1),
    )
