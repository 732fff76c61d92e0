"""The configuration schema: one typed dataclass per box of the architecture.

A run is one `RunConfig`: model (vision encoder, projector, LLM, crop, instruction), data,
training, evaluation. The model part is stored in every checkpoint and reused unchanged at
inference: it includes the crop transform and the instruction format, which are part of what the
model learned.

Every config class validates itself when it is built (`__post_init__`): field values are first
brought to their declared types by one rule for all classes (`_enforce_types`: lists become
tuples, ints become floats where a float is declared; a bool, a string or a wrong-length tuple is
an error), then each class checks its own ranges. Every error is a `ConfigError` that names the
field by the dotted path a user types on the command line (`model.crop.input_size`).

This module imports nothing of capellm but its error class: it is the ground floor that the data,
model and training code build on.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import typing
from dataclasses import dataclass, field

from capellm.errors import CapellmError

MODES = ("frozen", "lora", "full")          # trainability of a component (Table 6)
PRETRAIN_TARGETS = ("names", "keypoints")   # classes of the encoder pre-training (capellm.pretrain)
PROJECTOR_TASKS = ("direct", "step-by-step")  # questions of the projector pre-training (App. C)
ANSWER_KINDS = ("text", "keypoint_token")  # how a keypoint is answered (App. B.2, Table 8)
DECODINGS = ("grammar", "official", "both")  # how evaluation decodes answers (capellm.evaluate)
REPORTERS = ("none", "tensorboard", "wandb", "mlflow", "trackio")   # accelerate's experiment trackers
# the authors' question (github.com/Junhojuno/CapeLLM, datasets/mp100.py), used by the paper presets
OFFICIAL_QUESTION = "Where is the {keypoint} of this object in this image? Please provide its coordinates."


class ConfigError(CapellmError):
    """A configuration value is invalid; the message names the field."""


def _enforce_types(obj, where: str) -> None:
    """Bring each field of dataclass `obj` to its declared type, or raise naming `where.field`.

    Python callers and YAML files hand over lists where tuples are declared and ints where floats
    are; those are converted. Strings from the command line never get here: `flags.from_dict`
    parses them first.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        t, v = hints[f.name], getattr(obj, f.name)
        path = f"{where}.{f.name}"
        if dataclasses.is_dataclass(t):
            if not isinstance(v, t):
                raise ConfigError(f"{path} must be a {t.__name__}, got {type(v).__name__}")
            continue
        new = _typed(v, t, path)
        if new is not v:
            object.__setattr__(obj, f.name, new)   # frozen dataclasses too


def _typed(v, t, path: str):
    origin = typing.get_origin(t)
    if t is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{path} must be true or false, got {v!r}")
        return v
    if t is int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ConfigError(f"{path} must be an integer, got {v!r}")
        return v if type(v) is int else int(v)
    if t is float:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ConfigError(f"{path} must be a number, got {v!r}")
        return v if type(v) is float else float(v)
    if t is str:
        if not isinstance(v, str):
            raise ConfigError(f"{path} must be text, got {v!r}")
        return v
    if origin is tuple:
        args = typing.get_args(t)
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"{path} must be a list of values, got {v!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_typed(x, args[0], path) for x in v]
        else:
            if len(v) != len(args):
                raise ConfigError(f"{path} must have {len(args)} values, got {len(v)} ({list(v)!r})")
            items = [_typed(x, a, path) for x, a in zip(v, args)]
        return tuple(items)
    if t is dict or origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{path} must be a mapping, got {v!r}")
        return v
    return v


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_mode(where: str, mode: str, allowed=MODES) -> None:
    _check(mode in allowed, f"{where}.mode must be one of {list(allowed)}, got '{mode}'")


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters on the linear layers whose names end with one of `targets`."""

    rank: int = 8                    # r; CapeLLM uses 8
    alpha: float = 16.0              # scale = alpha / rank
    dropout: float = 0.05            # on the adapter's input only
    targets: tuple[str, ...] = ("q_proj", "v_proj", "query", "value")  # module-name suffixes
    use_dora: bool = False           # DoRA (weight-decomposed LoRA), PEFT's use_dora
    use_rslora: bool = False         # rank-stabilised scale alpha / sqrt(rank), PEFT's use_rslora

    def __post_init__(self):
        _enforce_types(self, "lora")
        _check(self.rank >= 1, f"lora.rank must be >= 1, got {self.rank}")
        _check(0.0 <= self.dropout < 1.0, f"lora.dropout must be in [0, 1), got {self.dropout}")
        _check(bool(self.targets), "lora.targets must name at least one module suffix")


@dataclass
class VisionConfig:
    name_or_path: str = "facebook/dinov2-large"  # hub id, path under the model root, or "random"
    random_config: dict = field(default_factory=dict)  # HF config kwargs when name_or_path="random"
    mode: str = "lora"              # frozen | lora | full (Table 6: encoder trainability)
    # query/value layers of any HF ViT; "qkv": a fused [q; k; v] layer (Hiera), adapted on q and v
    lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(targets=("query", "value", "q_proj", "v_proj", "qkv")))
    features: str = "patch"         # "patch": patch tokens only; "all": also CLS/register tokens
    lr_scale: float = 1.0           # learning rate of this component = train.lr * lr_scale

    def __post_init__(self):
        _enforce_types(self, "model.vision")
        _check_mode("model.vision", self.mode)
        _check(self.features in ("patch", "all"),
               f"model.vision.features must be 'patch' or 'all', got '{self.features}'")
        _check(self.name_or_path != "random" or bool(self.random_config),
               "model.vision.random_config is required when name_or_path is 'random'")


@dataclass
class ProjectorConfig:
    mode: str = "full"              # frozen | full (a linear layer, Sec. 3.1)
    lr_scale: float = 1.0

    def __post_init__(self):
        _enforce_types(self, "model.projector")
        _check_mode("model.projector", self.mode, ("frozen", "full"))


@dataclass
class LLMConfig:
    name_or_path: str = "meta-llama/Llama-3.1-8B-Instruct"  # hub id, path, pkg:<package>, "random"
    gguf_file: str = ""             # file name inside name_or_path for GGUF weights (SmolLM2)
    random_config: dict = field(default_factory=dict)  # HF config kwargs when name_or_path="random"
    tokenizer: str = ""             # "" = same as name_or_path; "char"; "bpe:<vocab>[:<digits>]" trained
    prompt_format: str = "auto"     # chat markers: auto | chatml | llama3 | mistral | vicuna | plain
    fuse_fixed_tokens: bool = False  # a trained BPE also spells "\nA:", "[0.", ",0." ... as one token each
    mode: str = "lora"              # frozen | lora | full
    lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(targets=("q_proj", "v_proj")))
    gradient_checkpointing: bool = False  # trade compute for activation memory (8B on 24 GB)
    load_in_4bit: bool = False      # 4-bit base weights via bitsandbytes (QLoRA-style), CUDA only
    dtype: str = "float32"          # base weights: float32 | bfloat16 | float16 (bf16 for 8B on GPU)
    lr_scale: float = 1.0

    def __post_init__(self):
        _enforce_types(self, "model.llm")
        _check_mode("model.llm", self.mode)
        _check(self.dtype in ("float32", "bfloat16", "float16"),
               f"model.llm.dtype must be float32, bfloat16 or float16, got '{self.dtype}'")
        _check(self.mode != "full" or self.dtype == "float32",
               "model.llm.mode 'full' needs model.llm.dtype float32 (optimiser precision)")
        _check(self.name_or_path != "random" or bool(self.random_config),
               "model.llm.random_config is required when name_or_path is 'random'")
        _check(not self.tokenizer.startswith("bpe:") or re.fullmatch(r"bpe:\d+(:[123])?", self.tokenizer) is not None,
               f"model.llm.tokenizer '{self.tokenizer}': a trained BPE tokenizer is 'bpe:<vocab size>' or "
               f"'bpe:<vocab size>:<digits per number token, 1-3>'")
        _check(not self.fuse_fixed_tokens or self.tokenizer.startswith("bpe:"),
               f"model.llm.fuse_fixed_tokens needs a tokenizer trained on the data (model.llm.tokenizer "
               f"'bpe:<vocab size>'), got '{self.tokenizer}': a pretrained LLM's tokenizer is its own")

    def bpe(self) -> tuple[int, int] | None:
        """(vocabulary size, digits per number token) of a tokenizer trained on the data
        ("bpe:<vocab>[:<digits>]", digits 1 unless given), or None for any other tokenizer."""
        if not self.tokenizer.startswith("bpe:"):
            return None
        vocab, _, digits = self.tokenizer[4:].partition(":")
        return int(vocab), int(digits or 1)


@dataclass
class CropConfig:
    """How a box becomes the encoder's input square, and how training perturbs it
    (capellm.data.crops)."""

    input_size: int = 224  # encoder input side in pixels (CapeLLM: 224; must suit the encoder's patch)
    padding: float = 1.0  # box enlargement: 1.0 as the official CapeLLM, 1.25 as earlier CAPE code
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet normalisation (DINOv2)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    augment: bool = False  # training augmentation on/off (off: the deterministic eval crop)
    scale_range: tuple[float, float] = (0.75, 1.25)  # crop side multiplier (>1 zooms out), within this range
    scale_distribution: str = "uniform"  # uniform over scale_range | normal: N(1, scale_std) clipped to it
    scale_std: float = 0.3
    max_rotation: float = 30.0  # degrees; rotation uniform in [-r, r] ...
    rotation_prob: float = 0.6  # ... applied with this probability (as mmpose's 0.6)
    max_shift: float = 0.0  # centre shift per axis, uniform in [-s, s], fraction of the crop side

    def __post_init__(self):
        w = "model.crop"
        _enforce_types(self, w)
        _check(self.input_size > 0, f"{w}.input_size must be a positive integer, got {self.input_size!r}")
        _check(math.isfinite(self.padding) and self.padding > 0, f"{w}.padding must be > 0, got {self.padding}")
        _check(all(s > 0 for s in self.std), f"{w}.std must be positive, got {self.std}")
        lo, hi = self.scale_range
        _check(0 < lo <= hi and math.isfinite(hi),
               f"{w}.scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        _check(self.scale_distribution in ("uniform", "normal"),
               f"{w}.scale_distribution must be uniform or normal, got '{self.scale_distribution}'")
        _check(self.scale_std >= 0, f"{w}.scale_std must be >= 0, got {self.scale_std}")
        _check(0 <= self.max_rotation <= 180, f"{w}.max_rotation must be in [0, 180] degrees, got {self.max_rotation}")
        _check(0 <= self.rotation_prob <= 1, f"{w}.rotation_prob must be in [0, 1], got {self.rotation_prob}")
        _check(0 <= self.max_shift <= 1,
               f"{w}.max_shift must be in [0, 1] (fraction of the side), got {self.max_shift}")


@dataclass(frozen=True)
class InstructionConfig:
    """What the conversation says (capellm.data.instructions)."""

    k: int = 4                      # keypoints per sample (rounds per conversation), Table 4
    description: bool = True        # give each keypoint's description as a reference, Table 3
    keypoint_list: bool = False     # list all keypoint names of the category up front, Table 3
    category_name: bool = True      # name the category in the question ("of this horse_body")
    decimals: int = 3               # answer precision
    # the question; {keypoint}: the keypoint's name, {object}: the category's name or "object"
    # (the paper presets: the authors' wording, capellm.data.instructions.OFFICIAL_QUESTION)
    question: str = "Where is the {keypoint} of the {object} in this image?"
    # the paper's appendix (B.1, Tables 6 and 7), all off in the paper's main configuration:
    # paraphrases of `question`; training draws one of (question, *questions) per round,
    # evaluation asks `question` (capellm.data.instructions.DIVERSE_QUESTIONS: ours)
    questions: tuple[str, ...] = ()
    outline: str = ""               # text opening the conversation: the task and how it flows
    step_by_step: bool = False      # first ask what the object is (answered with the category's name)
    # beyond the paper: the chance that a training round asks for a keypoint that is unlabelled or
    # outside the crop, answered with NOT_VISIBLE (capellm.data.instructions); 0: never (paper)
    not_visible_rate: float = 0.0
    # how a keypoint is answered: "text" (the paper: "[x,y]" as tokens) or "keypoint_token" (App.
    # B.2, Table 8: the answer is one <KEYPOINT> token, and a small decoder reads (x, y) off the
    # LLM's hidden state there; model.keypoint_decoder)
    answer: str = "text"

    def __post_init__(self):
        _enforce_types(self, "model.instruction")
        _check(self.answer in ANSWER_KINDS,
               f"model.instruction.answer must be one of {list(ANSWER_KINDS)}, got '{self.answer}'")
        _check(self.answer == "text" or self.not_visible_rate == 0.0,
               "model.instruction.not_visible_rate needs answer 'text' (a <KEYPOINT> answer cannot say "
               "'not visible')")
        _check(0.0 <= self.not_visible_rate < 1.0,
               f"model.instruction.not_visible_rate must be in [0, 1), got {self.not_visible_rate}")
        try:
            self.question.format(keypoint="k", object="o")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"model.instruction.question may use only {{keypoint}} and {{object}}: "
                              f"{self.question!r} ({e})") from None
        _check("{keypoint}" in self.question, "model.instruction.question must contain {keypoint}")
        for i, q in enumerate(self.questions):
            _check("{keypoint}" in q, f"model.instruction.questions[{i}] must contain {{keypoint}}: {q!r}")
            try:
                q.format(keypoint="k", object="o")
            except (KeyError, IndexError, ValueError) as e:
                raise ConfigError(f"model.instruction.questions[{i}] may use only {{keypoint}} and {{object}}: "
                                  f"{q!r} ({e})") from None
        _check(self.k >= 1, f"model.instruction.k must be >= 1, got {self.k}")
        _check(1 <= self.decimals <= 6, f"model.instruction.decimals must be in 1..6, got {self.decimals}")


@dataclass
class KeypointDecoderConfig:
    """The decoder of `instruction.answer: keypoint_token` (capellm.model.keypoint_head): an MLP
    from the LLM's hidden state at a <KEYPOINT> token to (x, y) in the crop, trained from scratch."""

    hidden_size: int = 256
    num_layers: int = 2             # hidden layers (GELU); then a linear map to (x, y) and a sigmoid
    loss: str = "l1"                # l1 | mse, on coordinates normalised to the crop

    def __post_init__(self):
        _enforce_types(self, "model.keypoint_decoder")
        _check(self.hidden_size >= 1, f"model.keypoint_decoder.hidden_size must be >= 1, got {self.hidden_size}")
        _check(self.num_layers >= 0, f"model.keypoint_decoder.num_layers must be >= 0, got {self.num_layers}")
        _check(self.loss in ("l1", "mse"), f"model.keypoint_decoder.loss must be 'l1' or 'mse', got '{self.loss}'")


@dataclass
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    instruction: InstructionConfig = field(default_factory=InstructionConfig)
    keypoint_decoder: KeypointDecoderConfig = field(default_factory=KeypointDecoderConfig)
    max_new_tokens: int = 16        # decoding budget per answer ("[0.123,0.456]" + end marker)

    def __post_init__(self):
        _enforce_types(self, "model")
        _check(self.max_new_tokens >= 1, "model.max_new_tokens must be >= 1")


# ---------------------------------------------------------------------------------------------
# Data, training, evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    train_file: str = ""            # COCO/MP-100 annotation JSON for training
    val_file: str = ""              # optional, evaluated after training
    test_file: str = ""             # optional, evaluated by `capellm eval` by default
    image_root: str = ""            # folder the JSON's file_name is relative to ("" = the JSON's folder)
    categories: str = "mp100"       # folder of category YAML files, or "mp100" (shipped files)
    only_present: bool = False      # train on the instances whose image exists (partial MP-100)
    image_cache_mb: int = 1024      # decoded training images kept in memory (per data-loader process)
    allow_outside_root: bool = False  # accept file_names that are absolute or lead out with ".."
    match_keypoint_names: bool = True  # where the annotations name their keypoints, the category file must too

    def __post_init__(self):
        _enforce_types(self, "data")
        _check(self.image_cache_mb >= 0, f"data.image_cache_mb must be >= 0, got {self.image_cache_mb}")


@dataclass
class EncoderPretrainConfig:
    """Encoder pre-training before the CapeLLM training (capellm.pretrain): the stand-in for a
    pretrained DINOv2 when the encoder starts random (the demo). 0 steps: none."""

    steps: int = 0
    batch_size: int = 64
    lr: float = 2e-3
    target: str = "names"           # names: classes shared by categories | keypoints

    def __post_init__(self):
        _check_stage(self, "train.encoder_pretrain", "target", PRETRAIN_TARGETS)


def _check_stage(cfg, where: str, choice: str, choices: tuple[str, ...]) -> None:
    """The checks a pre-training stage's config shares: steps, batch size, learning rate, and its
    one choice field."""
    _enforce_types(cfg, where)
    _check(cfg.steps >= 0, f"{where}.steps must be >= 0, got {cfg.steps}")
    _check(cfg.batch_size >= 1, f"{where}.batch_size must be >= 1, got {cfg.batch_size}")
    _check(cfg.lr > 0, f"{where}.lr must be > 0, got {cfg.lr}")
    value = getattr(cfg, choice)
    _check(value in choices, f"{where}.{choice} must be one of {choices}, got '{value}'")


@dataclass
class ProjectorPretrainConfig:
    """Projector pre-training before fine-tuning (App. C, capellm.projector_pretrain): encoder
    and LLM frozen, the projector alone learns to name the keypoint at given coordinates. 0 steps:
    none (the paper's main configuration)."""

    steps: int = 0
    batch_size: int = 16
    lr: float = 1e-3
    task: str = "direct"            # direct | step-by-step

    def __post_init__(self):
        _check_stage(self, "train.projector_pretrain", "task", PROJECTOR_TASKS)


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
    # with a frozen encoder: N augmented crops of every instance (and its plain crop) are encoded
    # once before training and each sample uses one of them; 0: every sample is cropped and
    # encoded afresh with an augmentation of its own
    frozen_features: int = 0
    mixed_precision: str = "auto"   # auto (bf16 on CUDA and on CPUs with bf16 units, else fp32) | no | bf16 | fp16
    log_every: int = 10             # optimiser steps between log lines
    save_every: int = 500           # optimiser steps between checkpoints (and one at the end)
    keep_last: int = 2              # checkpoints kept on disk
    cpu: bool = False               # force CPU even where CUDA is available
    report_to: str = "none"         # experiment tracker: none | tensorboard | wandb | mlflow | trackio
    encoder_pretrain: EncoderPretrainConfig = field(default_factory=EncoderPretrainConfig)
    projector_pretrain: ProjectorPretrainConfig = field(default_factory=ProjectorPretrainConfig)

    def __post_init__(self):
        _enforce_types(self, "train")
        for name in ("epochs", "batch_size", "grad_accum", "log_every", "save_every", "keep_last"):
            _check(getattr(self, name) >= 1, f"train.{name} must be >= 1, got {getattr(self, name)}")
        _check(math.isfinite(self.lr) and self.lr > 0, f"train.lr must be a finite number > 0, got {self.lr}")
        _check(self.max_steps == -1 or self.max_steps >= 1, f"train.max_steps must be -1 (epochs decide) or >= 1, "
               f"got {self.max_steps}")
        _check(self.num_workers >= 0, f"train.num_workers must be >= 0, got {self.num_workers}")
        _check(self.frozen_features >= 0, f"train.frozen_features must be >= 0, got {self.frozen_features}")
        _check(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
               f"train.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        _check(math.isfinite(self.clip_grad) and self.clip_grad >= 0,
               f"train.clip_grad must be >= 0, got {self.clip_grad}")
        _check(all(0 <= b < 1 for b in self.betas), f"train.betas must be in [0, 1), got {self.betas}")
        _check(0 <= self.warmup_ratio < 1, f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(self.schedule in ("cosine", "linear", "constant"),
               f"train.schedule must be cosine, linear or constant, got '{self.schedule}'")
        _check(self.mixed_precision in ("auto", "no", "bf16", "fp16"),
               "train.mixed_precision must be auto, no, bf16 or fp16")
        _check(self.report_to in REPORTERS, f"train.report_to must be one of {list(REPORTERS)}, got '{self.report_to}'")


@dataclass
class EvalConfig:
    batch_size: int = 16            # instances per decoding batch
    mode: str = "single"            # single: one keypoint per prompt (official eval); multi: k rounds
    thresholds: tuple[float, ...] = (0.05, 0.10, 0.15, 0.20, 0.25)  # PCK thresholds; mPCK = mean
    max_instances: int = -1         # evaluate only the first N instances (quick checks); -1 = all
    # grammar: our constrained decoding; official: the authors' greedy 13 tokens and regex parser;
    # both: each, side by side in the metrics
    decode: str = "grammar"

    def __post_init__(self):
        _enforce_types(self, "eval")
        _check(self.mode in ("single", "multi"), f"eval.mode must be 'single' or 'multi', got '{self.mode}'")
        _check(self.decode in DECODINGS, f"eval.decode must be one of {list(DECODINGS)}, got '{self.decode}'")
        _check(bool(self.thresholds) and all(0 < t < 1 for t in self.thresholds),
               "eval.thresholds must be numbers in (0, 1)")
        _check(self.batch_size >= 1, f"eval.batch_size must be >= 1, got {self.batch_size}")
        _check(self.max_instances == -1 or self.max_instances >= 1,
               f"eval.max_instances must be -1 (all) or >= 1, got {self.max_instances}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        _enforce_types(self, "run")
        v = self.model.vision
        if self.train.frozen_features and v.mode != "frozen":
            raise ConfigError(f"train.frozen_features needs model.vision.mode 'frozen' (features of a trained "
                              f"encoder change every step), got '{v.mode}'")
        if self.train.encoder_pretrain.steps and v.name_or_path != "random" and v.mode != "full":
            # a checkpoint keeps all encoder weights only for these two (CapeLLM._saved_prefixes)
            raise ConfigError(f"train.encoder_pretrain.steps needs model.vision.name_or_path 'random' or "
                              f"model.vision.mode 'full', got '{v.name_or_path}' in mode '{v.mode}'")
