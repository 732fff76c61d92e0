"""Training checkpoints: written atomically, resumed exactly.

Layout of a run folder (`train.out_dir`):

    run_config.yaml            the full RunConfig (portable paths only)
    train.log                  one JSON line per logged step (first, if any: the encoder pre-training)
    checkpoints/step-000050/   a model folder (CapeLLM.save_pretrained) plus
        trainer_state.json     scheduler, loop position (epoch, batch, step), optimizer settings
        optimizer.safetensors  the optimizer's tensors (AdamW moments and step counts)
        rng_rank{r}.json       Python, NumPy and torch RNG states of every process
    model/                     the final model (a copy of the last checkpoint's model files)
    .lock                      held while a run writes into the folder

A checkpoint is assembled in `step-XXXXXX.tmp` and renamed into place, so a folder named
`step-XXXXXX` is always complete; a run killed mid-write leaves only a `.tmp` folder, which the
next save removes.

Nothing in a checkpoint can run code when it is loaded: tensors are safetensors, everything else
JSON (pickled `trainer_state.pt` / `rng_rank*.pt` of capellm 0.1.0 are refused, not unpickled).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from capellm.errors import CheckpointError
from capellm.utils import atomic_write_json

STEP_RE = re.compile(r"^step-(\d+)$")
LOOP_FILES = ("trainer_state.json", "optimizer.safetensors", "rng_rank*.json", "trainer_state.pt", "rng_rank*.pt")


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


# ---------------------------------------------------------------------------------------------
# loop state as JSON and safetensors


def save_rng(path: Path) -> None:
    s = rng_state()
    version, internal, gauss = s["python"]
    kind, keys, pos, has_gauss, cached = s["numpy"]
    data = {"python": [version, list(internal), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": s["torch"].tolist()}
    if "cuda" in s:
        data["cuda"] = [t.tolist() for t in s["cuda"]]
    atomic_write_json(path, data)


def load_rng(path: Path) -> dict:
    data = _read_json(path)
    version, internal, gauss = data["python"]
    kind, keys, pos, has_gauss, cached = data["numpy"]
    state = {"python": (version, tuple(internal), gauss),
             "numpy": (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
             "torch": torch.tensor(data["torch"], dtype=torch.uint8)}
    if "cuda" in data:
        state["cuda"] = [torch.tensor(t, dtype=torch.uint8) for t in data["cuda"]]
    return state


def save_trainer_state(folder: Path, optimizer, scheduler, loop: dict, world_size: int) -> None:
    """Optimizer tensors into optimizer.safetensors, all else into trainer_state.json."""
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in opt["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = v
    save_file(tensors, str(folder / "optimizer.safetensors"))
    atomic_write_json(folder / "trainer_state.json",
                      {"format": 1, "loop": loop, "world_size": world_size, "scheduler": scheduler.state_dict(),
                       "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars}})


def load_trainer_state(folder: Path) -> tuple[dict, dict, dict, int]:
    """(optimizer state dict, scheduler state dict, loop, world size) of a checkpoint folder."""
    from safetensors.torch import load_file

    if (folder / "trainer_state.pt").exists() and not (folder / "trainer_state.json").exists():
        raise CheckpointError(f"{folder}: written by capellm 0.1.0, whose trainer_state.pt is a pickle that can "
                              f"run code when loaded; it is not loaded, so this run cannot be resumed (its "
                              f"model.safetensors still loads as a model)")
    data = _read_json(folder / "trainer_state.json")
    try:
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except Exception as e:
        raise CheckpointError(f"{folder / 'optimizer.safetensors'}: unreadable ({type(e).__name__}: {e})") from None
    state: dict = {}
    for key, t in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = t
    for key, v in data["optimizer"]["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    optimizer = {"state": state, "param_groups": data["optimizer"]["param_groups"]}
    return optimizer, data["scheduler"], data["loop"], data["world_size"]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (an incomplete checkpoint)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


# ---------------------------------------------------------------------------------------------
# the run folder: one run at a time


class RunLock:
    """An exclusive lock on a run folder (`.lock`, fcntl), held while a run writes into it; a
    second run into the same folder is refused instead of racing the first."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / ".lock"
        self.fd = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(self.fd, 64).decode(errors="replace").strip()
            os.close(self.fd)
            self.fd = None
            from capellm.errors import TrainingError

            raise TrainingError(f"{self.path.parent}: another run is writing into this folder "
                                f"(process {other or '?'}); wait for it or choose another train.out_dir") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc):
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


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
    shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns(*LOOP_FILES))
    final = out_dir / "model"
    old = out_dir / "model.old"
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
