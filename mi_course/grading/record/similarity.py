"""Pasted reference source: how close a learner's region is to the course's reference.

Both are reduced to their token stream without comments, docstrings or layout, with every
local name replaced by a placeholder (renaming variables does not hide a paste), and compared
with difflib. A region above `THRESHOLD` is held for the instructor's review, not credited.
Short references (under `MIN_TOKENS`) are never flagged: a one-line answer has few ways to
be written, and writing it is the exercise.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import inspect
import io
import keyword
import textwrap
import tokenize
from typing import Any, Optional

THRESHOLD = 0.9
MIN_TOKENS = 40
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENDMARKER, tokenize.ENCODING}


def tokens(source: str) -> list[str]:
    """Normalised tokens: names that are not attributes, keywords or builtins become `_`."""
    out: list[str] = []
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(textwrap.dedent(source)).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.split()
    previous = ""
    for tok in toks:
        if tok.type in _SKIP:
            continue
        if tok.type == tokenize.STRING and previous in ("", ":"):  # a docstring
            continue
        text = tok.string
        if tok.type == tokenize.NAME and previous != "." and not keyword.iskeyword(text) \
                and not hasattr(builtins, text):
            text = "_"
        out.append(text)
        previous = tok.string
    return out


def reference_body(reference: Any) -> Optional[str]:
    """The source of the reference function's body (its signature and docstring dropped)."""
    try:
        source = textwrap.dedent(inspect.getsource(inspect.unwrap(reference)))
        fn = ast.parse(source).body[0]
    except (TypeError, OSError, SyntaxError, IndexError):
        return None
    body = fn.body if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) else []
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not body:
        return None
    return "\n".join(source.split("\n")[body[0].lineno - 1:body[-1].end_lineno])


def similarity(region: str, reference: Any) -> Optional[float]:
    """difflib ratio between the normalised region and reference body; None when not comparable."""
    body = reference_body(reference)
    if body is None:
        return None
    ref_tokens = tokens(body)
    if len(ref_tokens) < MIN_TOKENS:
        return None
    return difflib.SequenceMatcher(None, tokens(region), ref_tokens, autojunk=False).ratio()
