"""Models from the Hugging Face Hub (GPT-2 small), for learners who are online.

Left to itself, `TransformerBridge.boot_transformers` retries an unreachable hub for about 23
seconds and then raises an `OSError` that does not say what to do. Here availability is decided
first, in at most about 2 seconds and before TransformerLens is imported: a model in the local
cache loads with the hub switched off, one that is not loads only if the hub answers, and
otherwise `ModelUnavailableError` says so at once.
"""

from __future__ import annotations

import os
import threading
import urllib.request
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Literal

import torch

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 1.5
# Files every causal LM repo needs offline; a cache missing one of them cannot serve the model.
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")
_OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}

Availability = Literal["cached", "online", "offline", "disabled"]


class ModelUnavailableError(RuntimeError):
    """A model cannot be loaded here and now (no network, no cache, or no shipped weights)."""


def offline_mode_set() -> bool:
    """Whether the user switched the hub off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(flag, "").strip().lower() in _TRUE for flag in _OFFLINE_FLAGS)


def in_local_cache(repo: str) -> bool:
    """Whether the Hugging Face cache holds everything needed to load `repo` offline."""
    from huggingface_hub import try_to_load_from_cache

    return all(isinstance(try_to_load_from_cache(repo, filename), str) for filename in _REQUIRED_FILES)


def cached_bytes(repo: str) -> int | None:
    """Size of the cached weights of `repo`, or None when they are not cached."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo, "model.safetensors")
    return os.path.getsize(path) if isinstance(path, str) else None


def hub_reachable(repo: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the hub serves `repo`'s config within `timeout_s`, name lookup included.

    An HTTP request rather than a bare TCP connect, because sandboxes and proxies often accept
    any connection and then refuse the request. It runs in a daemon thread, since a DNS lookup
    ignores time-outs and can hang far longer on a machine without network.
    """
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    request = urllib.request.Request(f"{endpoint}/{repo}/resolve/main/config.json", method="HEAD")
    result: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                result.append(200 <= response.status < 400)
        except (OSError, ValueError):  # URLError and HTTPError are OSErrors
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(result and result[0])


def availability(repo: str) -> Availability:
    """How `repo` could be loaded now: from the cache, from the hub, or not at all."""
    if in_local_cache(repo):
        return "cached"
    if offline_mode_set():
        return "disabled"
    return "online" if hub_reachable(repo) else "offline"


@contextmanager
def _hub_switched_off() -> Iterator[None]:
    """Run Hugging Face code offline: it then reads the cache and never waits on the network.

    huggingface_hub reads HF_HUB_OFFLINE once, at import, so its constant is set as well.
    """
    from huggingface_hub import constants

    saved_env, saved_flag = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_flag
        if saved_env is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def boot_hub_model(repo: str, device: str | torch.device, **boot_options: Any) -> TransformerBridge:
    """`TransformerBridge.boot_transformers(repo, ...)` in eval mode; no availability check.

    `boot_options` go to `boot_transformers` (tests pass a locally built `hf_model` and
    `tokenizer` to exercise this path without a hub).
    """
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(repo, device=device, **boot_options).eval()


_REASONS = {
    "disabled": "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set",
    "offline": f"the Hugging Face Hub did not answer within {PROBE_TIMEOUT_S} s",
}


def load_hub_model(repo: str, device: str | torch.device) -> TransformerBridge:
    """Load `repo` from the cache or the hub, or raise `ModelUnavailableError` within ~2 s."""
    state = availability(repo)
    if state in _REASONS:
        raise ModelUnavailableError(
            f"it is downloaded from the Hugging Face Hub (repo {repo!r}; once, then it is cached), "
            f"but {_REASONS[state]} and it is not in the local cache."
        )
    if state == "online":
        return boot_hub_model(repo, device)
    with _hub_switched_off():
        try:
            return boot_hub_model(repo, device)
        except OSError as error:
            raise ModelUnavailableError(
                f"it is only partly in the local Hugging Face cache (repo {repo!r}: {error}); "
                "connect once to complete the download."
            ) from None
