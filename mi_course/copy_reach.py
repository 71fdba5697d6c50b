"""Where `attn-only-2l` copies: a prediction from its mechanism, and the measurement that scores it.

The induction mechanism of Chapter 3: to predict the token after a repeated token at query q,
an induction head attends to key k = q - d + 1 (d: the distance back to the earlier copy) and
finds it by the previous-token head's mark at k, "the token before me was the current token".
The previous-token head (0.0) writes that mark only up to a reach of position 46 (model card).
So the mechanism predicts: no copying where k > 46, whatever the distance. It says nothing
about short distances, which the training data made the model distrust.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from mi_course.data.repeated_tokens import content_token_ids

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

PREVIOUS_TOKEN_REACH = 46
"""The last query position at which head 0.0 of `attn-only-2l` attends to the previous token."""


def predict_copied(
    queries: Int[Tensor, "n"], distances: Int[Tensor, "n"], reach: int = PREVIOUS_TOKEN_REACH
) -> Bool[Tensor, "n"]:
    """The mechanism's prediction for the token after query q, copied from d positions back: the
    key the induction head needs, q - d + 1, must carry a previous-token mark (be <= reach)."""
    return queries - distances + 1 <= reach


def copy_cells(distances: list[int], queries: list[int]) -> tuple[Int[Tensor, "cells"], Int[Tensor, "cells"]]:
    """Every (distance, query) pair with the earlier copy after `<bos>` (q - d >= 1)."""
    d, q = torch.meshgrid(torch.tensor(distances), torch.tensor(queries), indexing="ij")
    ok = q - d >= 1
    return d[ok], q[ok]


@torch.no_grad()
def copy_losses(
    model: TransformerBridge, distances: Int[Tensor, "cells"], queries: Int[Tensor, "cells"],
    rows_per_cell: int = 6, seed: int = 0, length: int = 60, chunk: int = 1024,
) -> Float[Tensor, "cells"]:
    """Mean loss on the token after query q when the pair (token q, token q+1) copies the pair d
    positions earlier, in rows of `length` distinct random words after `<bos>`; forward passes of
    `chunk` rows, with a progress bar."""
    tokenizer = model.tokenizer
    content = content_token_ids(tokenizer)
    d, q = distances.repeat_interleave(rows_per_cell), queries.repeat_interleave(rows_per_cell)
    n = len(d)
    generator = torch.Generator().manual_seed(seed)
    words = content[torch.rand(n, len(content), generator=generator).argsort(-1)[:, :length]]
    rows = torch.cat([torch.full((n, 1), tokenizer.bos_token_id), words], -1)
    index = torch.arange(n)
    rows[index, q] = rows[index, q - d]
    rows[index, q + 1] = rows[index, q - d + 1]
    chunks = rows.to(model.cfg.device).split(chunk)
    per_token = torch.cat([model(part, return_type="loss", loss_per_token=True).cpu()
                           for part in tqdm(chunks, desc="copy grid", mininterval=0.5)])
    return per_token[index, q].view(-1, rows_per_cell).mean(-1)
