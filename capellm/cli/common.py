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


def pick_device(name: str | None) -> str:
    """The device a command runs on: `name`, or CUDA when there is one, else the CPU."""
    import torch

    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
