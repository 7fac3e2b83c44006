"""Hugging Face hub access: offline mode, cache locations, and errors that say which variable to set.

`make test`, `make demo`, `make params`, `make tables` and `make bench` run with ``HF_HUB_OFFLINE=1`` (nothing they
do needs the hub); the `reproduce-*` targets leave the hub on. A hub load that fails because offline mode is on is
re-raised as :class:`HubOfflineError`, naming the variable to change and the cache it looked in, instead of
transformers' or datasets' generic "couldn't connect".
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}


class HubOfflineError(OSError):
    """A hub download was needed while offline mode was on (an OSError, as the libraries' own load errors are)."""


def offline_variables() -> list[str]:
    """The offline switches set to a true value in the environment, e.g. ``["HF_HUB_OFFLINE"]``."""
    return [name for name in OFFLINE_VARIABLES if os.environ.get(name, "").strip().lower() in _TRUE]


def cache_locations() -> dict[str, str]:
    """Where models (hub cache) and prepared datasets (datasets cache) are stored, as the libraries resolve them."""
    from huggingface_hub import constants

    locations = {"models and dataset files": str(constants.HF_HUB_CACHE)}
    try:
        import datasets

        locations["prepared datasets (Arrow)"] = str(datasets.config.HF_DATASETS_CACHE)
    except ImportError:  # datasets is a dependency, but the hint must never fail
        pass
    return locations


def offline_hint(source: str) -> str:
    """Why `source` could not be loaded when offline mode is on, and what to set; '' when it is not on."""
    flags = offline_variables()
    if not flags:
        return ""
    cache = cache_locations()["models and dataset files"]
    return (
        f"{source!r} is not in the local cache ({cache}) and offline mode is on "
        f"({', '.join(f'{name}=1' for name in flags)}). To download it, run with "
        f"{' '.join(f'{name}=0' for name in flags)} (the `make reproduce-*` targets use the hub unless you set "
        f"HF_HUB_OFFLINE=1); or point the config at a local copy."
    )


@contextmanager
def explain_offline(source: str) -> Iterator[None]:
    """Re-raise a failed load of `source` (hub id or path) as :class:`HubOfflineError` when offline mode is the
    likely cause: an OSError (network, cache miss, missing file) for a name that is not a local path."""
    try:
        yield
    except HubOfflineError:
        raise
    except OSError as error:  # ConnectionError and FileNotFoundError are OSErrors too
        hint = offline_hint(source)
        if not hint or Path(os.path.expanduser(str(source))).exists():
            raise
        raise HubOfflineError(f"{hint} ({type(error).__name__}: {str(error)[:300]})") from error
