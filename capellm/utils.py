"""Small helpers shared across the package: atomic file writes, seeding, logging set-up.

Atomic writes: every file capellm produces (metrics, checkpoints, category files) is written to a
temporary sibling and renamed into place, so a killed process never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: str | Path, data: bytes, sync: bool = True) -> None:
    """Write `path` whole or not at all (a temporary file renamed over it), flushed to the disk
    first. `sync` False skips the flush: for many files that one marker, written after an
    `os.sync()`, vouches for (capellm.synth); a power loss before the marker can leave them empty,
    and the missing marker then says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    """JSON as the standard defines it: a NaN or infinity is an error here, not invalid output."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def refuse_overwriting_inputs(outputs: dict[str, list], inputs: list) -> None:
    """ValueError naming the flag if an output path is one of the input files (a folder among the
    inputs stands for every file in it): a command never writes over what it reads."""
    ins = set()
    for p in inputs:
        if not str(p):
            continue
        p = Path(p)
        ins.update(q.resolve() for q in p.rglob("*") if q.is_file()) if p.is_dir() else ins.add(p.resolve())
    for flag, paths in outputs.items():
        for p in paths:
            if Path(p).resolve() in ins:
                raise ValueError(f"{flag} {p}: would overwrite the input {Path(p).resolve()}; write the result "
                                 f"elsewhere")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
