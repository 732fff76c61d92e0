"""Typed configuration: the schema (one dataclass per component), named presets, and the
dict / YAML / command-line forms of a config. This package imports nothing else of capellm
but its error class (capellm.errors).

    from capellm.config import preset, RunConfig
    cfg = preset("demo")              # a fresh RunConfig
    cfg.train.lr = 2e-4
"""

from capellm.config.flags import (
                                  ALIASES,
                                  add_arguments,
                                  apply_arguments,
                                  from_dict,
                                  leaf_fields,
                                  load_yaml_config,
                                  merge,
                                  parse_overrides,
                                  to_dict,
)
from capellm.config.paths import model_root, portable_path, resolve_model_path
from capellm.config.presets import PRESETS, preset, register
from capellm.config.schema import (
                                  ANSWER_KINDS,
                                  DECODINGS,
                                  MODES,
                                  OFFICIAL_QUESTION,
                                  PRETRAIN_TARGETS,
                                  ConfigError,
                                  CropConfig,
                                  DataConfig,
                                  EncoderPretrainConfig,
                                  EvalConfig,
                                  InstructionConfig,
                                  KeypointDecoderConfig,
                                  LLMConfig,
                                  LoRAConfig,
                                  ModelConfig,
                                  ProjectorConfig,
                                  ProjectorPretrainConfig,
                                  RunConfig,
                                  TrainConfig,
                                  VisionConfig,
)

__all__ = [
    "ALIASES", "ANSWER_KINDS", "DECODINGS", "MODES", "OFFICIAL_QUESTION", "PRESETS", "PRETRAIN_TARGETS", "ConfigError",
    "CropConfig", "DataConfig", "EncoderPretrainConfig", "EvalConfig", "InstructionConfig", "KeypointDecoderConfig", "LLMConfig",
    "LoRAConfig", "ModelConfig", "ProjectorConfig", "ProjectorPretrainConfig", "RunConfig", "TrainConfig", "VisionConfig",
    "add_arguments", "apply_arguments", "from_dict", "leaf_fields", "load_yaml_config", "merge",
    "model_root", "parse_overrides", "portable_path", "preset", "register", "resolve_model_path", "to_dict"]
