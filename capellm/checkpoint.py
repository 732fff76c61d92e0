"""Training checkpoints: written atomically, resumed exactly.

Layout of a run folder (`train.out_dir`):

    run_config.yaml            the full RunConfig (portable paths only)
    train.log                  one JSON line per logged step (first, if any: the encoder pre-training)
    checkpoints/step-000050/   a model folder (CapeLLM.save_pretrained) plus
        trainer_state.pt       optimizer, scheduler, loop position (epoch, batch, step)
        rng_rank{r}.pt         Python, NumPy and torch RNG states of every process
    model/                     the final model (a copy of the last checkpoint's model files)

A checkpoint is assembled in `step-XXXXXX.tmp` and renamed into place, so a folder named
`step-XXXXXX` is always complete; a run killed mid-write leaves only a `.tmp` folder, which the
next save removes.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

STEP_RE = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_RE.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    dirs = checkpoint_dirs(out_dir)
    return dirs[-1] if dirs else None


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def tmp_dir_for(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"step-{step:06d}.tmp"


def final_dir_for(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"step-{step:06d}"


def clean_partial(out_dir: str | Path) -> None:
    root = Path(out_dir) / "checkpoints"
    if root.is_dir():
        for p in root.glob("*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def prune(out_dir: str | Path, keep_last: int) -> None:
    for p in checkpoint_dirs(out_dir)[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


def publish_model(checkpoint: Path, out_dir: str | Path) -> Path:
    """Copy a checkpoint's model files to `out_dir/model` (atomically replacing an older one)."""
    out_dir = Path(out_dir)
    tmp = out_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns("trainer_state.pt", "rng_rank*.pt"))
    final = out_dir / "model"
    old = out_dir / "model.old"
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
