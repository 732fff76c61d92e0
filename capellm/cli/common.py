"""What the commands share: the config flags, the device, and how an error is reported."""

from __future__ import annotations

import argparse
import sys


def config_parser(prog: str, description: str, default_preset: str = "paper-l",
                  sections=None) -> argparse.ArgumentParser:
    """A parser with --preset, --config and one flag per config field (capellm.config.flags)."""
    from capellm.config import PRESETS, add_arguments

    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--preset", default=default_preset, choices=PRESETS,
                   help=f"named base configuration (default: {default_preset})")
    p.add_argument("--config", help="YAML file with config fields (applied over the preset)")
    add_arguments(p, sections=sections)
    return p


def resolve_config(args):
    """The RunConfig of --preset, then --config, then the field flags."""
    from capellm.config import apply_arguments, load_yaml_config, preset

    cfg = preset(args.preset)
    if args.config:
        cfg = load_yaml_config(args.config, base=cfg)
    return apply_arguments(cfg, args)


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="the LLM's weights for decoding (default: the checkpoint's; bfloat16 halves them)")


def pick_device(name: str | None) -> str:
    """The device a command runs on: `name`, or CUDA when there is one, else the CPU. A name torch
    does not know, or a CUDA device this machine does not have, is a ConfigError naming --device."""
    import torch

    from capellm.config import ConfigError

    if not name:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device: '{name}' is not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: this torch has no CUDA device here "
                              f"(torch {torch.__version__}; a CPU build, or no GPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise ConfigError(f"--device: '{name}' is not supported (cpu, cuda, cuda:N)")
    return name


def error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
