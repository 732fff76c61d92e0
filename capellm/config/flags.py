"""Configs as data: dict <-> dataclass, YAML files, `key=value` overrides and CLI flags.

Every leaf field of `RunConfig` is a flag named by its dotted path (`--train.lr 1e-4`,
`--model.llm.mode full`), derived from the dataclasses (`add_arguments` / `apply_arguments`), so
a new field is a new flag without another line here. Values given as text (flags, `--set
key=value`) are parsed by the field's declared type (`_coerce`); every error names the field.

Renamed fields keep working under their old names (`ALIASES`): in YAML files, run folders and
checkpoints written before the rename, in `key=value` overrides and as (hidden) flags.

Why not tyro, draccus or jsonargparse (tried on `RunConfig`, 2026-12): all three derive the same
dotted flags from the dataclasses, but the flag code here is only `add_arguments` and
`apply_arguments` (about 35 lines); the rest (dict <-> dataclass, aliases, `_coerce`) is needed
anyway for YAML files, run folders, checkpoints and `--set`. Each would also change what users
see: tyro prints errors in multi-line boxes and takes tuples as separate words, draccus replaces
a field's own message with "Couldn't instantiate class LLMConfig", jsonargparse accepted
`--model.llm.mode half` at parse time; none keeps the hidden alias flags, the per-command
sections of `add_arguments` or the layering preset -> --config -> flags without extra code.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import typing
from pathlib import Path

import yaml

from capellm.config.schema import ConfigError, RunConfig

# old dotted name -> new dotted name
ALIASES = {
    "train.encoder_pretrain_steps": "train.encoder_pretrain.steps",
    "train.encoder_pretrain_batch_size": "train.encoder_pretrain.batch_size",
    "train.encoder_pretrain_lr": "train.encoder_pretrain.lr",
    "train.encoder_pretrain_target": "train.encoder_pretrain.target",
}


def to_dict(obj) -> dict:
    """A config as plain data (tuples as lists), ready for YAML or JSON."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def _resolve_aliases(d: dict, where: str) -> dict:
    """Move the keys of `d` (the mapping at dotted path `where`) that ALIASES renames to their new
    place, relative to `where`."""
    if not any(f"{where}.{k}".lstrip(".") in ALIASES for k in d):
        return d
    d = dict(d)
    for key in list(d):
        new = ALIASES.get(f"{where}.{key}".lstrip("."))
        if new is None:
            continue
        rel = new[len(where) + 1:] if where else new
        *parents, leaf = rel.split(".")
        node = d
        for p in parents:
            node[p] = dict(node.get(p) or {})
            node = node[p]
        node[leaf] = d.pop(key)
    return d


def from_dict(cls, d: dict, where: str = ""):
    """Build dataclass `cls` from a (partial) dict; unknown keys are an error naming the field."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(d).__name__}")
    d = _resolve_aliases(d, where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(f'{where}.{k}'.lstrip('.') for k in unknown)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        t, v = hints[f.name], d[f.name]
        path = f"{where}.{f.name}".lstrip(".")
        if dataclasses.is_dataclass(t):
            if not isinstance(v, dict):
                raise ConfigError(f"{path}: expected a mapping")
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else t()
            v = from_dict(t, {**to_dict(default), **v}, path)
        else:
            v = _coerce(v, t, path)
        kwargs[f.name] = v
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if not where or str(e).startswith(where):
            raise
        raise ConfigError(f"{where}: {e}") from None       # a class nested in several places (lora)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def merge(cfg, overrides: dict, where: str = ""):
    """A copy of dataclass `cfg` with `overrides` (nested dict) applied."""
    d = to_dict(cfg)
    overrides = _resolve_nested_aliases(overrides, where)

    def deep(a: dict, b: dict):
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict) and k not in ("random_config",):
                deep(a[k], v)
            else:
                a[k] = v
    deep(d, overrides)
    return from_dict(type(cfg), d, where)


def _resolve_nested_aliases(d: dict, where: str) -> dict:
    d = _resolve_aliases(d, where)
    return {k: _resolve_nested_aliases(v, f"{where}.{k}".lstrip(".")) if isinstance(v, dict) and k != "random_config"
            else v for k, v in d.items()}


def parse_overrides(pairs, where: str = "") -> dict:
    """['train.lr=1e-3', 'model.vision.mode=frozen', ...] -> nested dict for `merge`; values are
    Python literals where they parse as one (numbers, True, lists), strings otherwise."""
    out: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{where}'{pair}' is not key=value")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def load_yaml_config(path: str | Path, base=None):
    """A YAML file of config fields applied over `base` (default: RunConfig())."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds a mapping of fields (model:, train:, ...), "
                          f"got a {type(data).__name__}")
    try:
        return merge(base if base is not None else RunConfig(), data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _coerce(v, t, path: str):
    """Text (a flag, a `key=value`) read as the declared type `t`; other values pass through to
    the dataclass, whose own checks (capellm.config.schema) give them their type."""
    origin = typing.get_origin(t)
    try:
        if t is bool:
            if isinstance(v, str):
                if v.lower() in ("1", "true", "yes", "on"):
                    return True
                if v.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(v)
            return v
        if t in (int, float, str):
            if t is int and isinstance(v, float):
                if not v.is_integer():
                    raise ValueError(v)
                return int(v)
            return t(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else v
        if origin is tuple:
            args = typing.get_args(t)
            if isinstance(v, str):
                v = [s.strip() for s in v.split(",") if s.strip()]
            if not isinstance(v, (list, tuple)):
                raise ValueError(v)
            if len(args) == 2 and args[1] is Ellipsis:   # tuple[X, ...]: any length
                return tuple(_coerce(x, args[0], path) for x in v)
            if len(v) != len(args):                      # tuple[X, Y]: exactly that many
                raise ConfigError(f"{path}: expected {len(args)} values, got {len(v)} ({v!r})")
            return tuple(_coerce(x, a, path) for x, a in zip(v, args))
        if t is dict or origin is dict:
            if isinstance(v, str):
                v = json.loads(v)
            if not isinstance(v, dict):
                raise ValueError(v)
            return dict(v)
    except ConfigError:
        raise
    except (TypeError, ValueError, json.JSONDecodeError):
        raise ConfigError(f"{path}: cannot read {v!r} as {getattr(t, '__name__', t)}") from None
    return v


def leaf_fields(cls=RunConfig, prefix: str = ""):
    """(dotted name, type) of every leaf field of a config class, recursively."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(t):
            yield from leaf_fields(t, name + ".")
        else:
            yield name, t


def add_arguments(parser: argparse.ArgumentParser, cls=RunConfig, sections=None) -> None:
    """One flag per leaf field: `--train.lr`, `--model.llm.mode`, ... (values parsed on apply)."""
    group = parser.add_argument_group("config fields (override preset and --config)")
    keep = lambda name: not sections or name.split(".")[0] in sections  # noqa: E731
    for name, t in leaf_fields(cls):
        if keep(name):
            tname = getattr(t, "__name__", str(t)).replace("typing.", "")
            group.add_argument(f"--{name}", dest=f"cfg:{name}", default=None, metavar=tname.upper())
    for old, new in ALIASES.items():
        if keep(new):
            group.add_argument(f"--{old}", dest=f"cfg:{new}", default=None, help=argparse.SUPPRESS)


def apply_arguments(cfg, ns: argparse.Namespace):
    """`cfg` with the config flags of `ns` applied (flags left unset change nothing)."""
    overrides: dict = {}
    for key, value in vars(ns).items():
        if not key.startswith("cfg:") or value is None:
            continue
        node = overrides
        parts = key[4:].split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return merge(cfg, overrides) if overrides else cfg
