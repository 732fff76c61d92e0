"""LoRA through PEFT (capellm/model/lora.py): identity at init, merged == unmerged, unmerge restores
the base, float32 adapters over a bf16 base, DoRA by config, loud failure on targets that match
nothing, only adapters train, and both naming conventions (Llama `q_proj`/`v_proj`, DINOv2
`q_proj`/`v_proj` in transformers 5 or `query`/`value` before)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM

from capellm.config import LLMConfig, LoRAConfig, VisionConfig, preset
from peft.tuners.lora import LoraLayer

from capellm.model.lora import ADAPTER, apply_lora, lora_modules, set_merged

N_LAYERS = 2


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def tiny_dinov2() -> Dinov2Model:
    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=N_LAYERS, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)
    return Dinov2Model(cfg).eval()


def llama_out(m, ids):
    with torch.no_grad():
        return m(input_ids=ids).logits                      # [B, T, V]


def dino_out(m, px):
    with torch.no_grad():
        return m(pixel_values=px).last_hidden_state         # [B, 1 + N, D]


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(1)
    return {"llama": torch.randint(0, 101, (2, 7), generator=g),
            "dino": torch.randn(2, 3, 32, 32, generator=g)}


CASES = [("llama", tiny_llama, llama_out), ("dino", tiny_dinov2, dino_out)]


def _randomise_B(model, seed=2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model):
            w = m.lora_B[ADAPTER].weight
            w.copy_(torch.randn(w.shape, generator=g) * 0.5)


@pytest.mark.parametrize("kind,build,run", CASES, ids=[c[0] for c in CASES])
def test_fresh_wrap_is_exactly_the_base(kind, build, run, inputs):
    base = build()
    wrapped = copy.deepcopy(base)
    names = apply_lora(wrapped, LoRAConfig(rank=4, alpha=8, dropout=0.0))
    assert len(names) == 2 * N_LAYERS
    wrapped.eval()
    # B is zero at init, so the adapter adds exact zeros: bitwise equal, not just close
    assert torch.equal(run(wrapped, inputs[kind]), run(base, inputs[kind]))


@pytest.mark.parametrize("kind,build,run", CASES, ids=[c[0] for c in CASES])
def test_merged_equals_unmerged_and_unmerge_restores(kind, build, run, inputs):
    model = build()
    base_out = run(model, inputs[kind])
    apply_lora(model, LoRAConfig(rank=4, alpha=8, dropout=0.1))
    model.eval()  # dropout off: merged weights cannot reproduce a random mask
    originals = {id(m): m.get_base_layer().weight.detach().clone() for m in lora_modules(model)}
    _randomise_B(model)

    unmerged = run(model, inputs[kind])
    assert not torch.allclose(unmerged, base_out, atol=1e-4), "non-zero B must change the output"

    set_merged(model, True)
    assert all(m.merged for m in lora_modules(model))
    merged = run(model, inputs[kind])
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)

    set_merged(model, True)  # merging twice must not add B @ A twice
    torch.testing.assert_close(run(model, inputs[kind]), unmerged, rtol=1e-4, atol=1e-5)

    set_merged(model, False)
    for m in lora_modules(model):
        assert not m.merged
        torch.testing.assert_close(m.get_base_layer().weight, originals[id(m)], rtol=0, atol=1e-6)
    torch.testing.assert_close(run(model, inputs[kind]), unmerged, rtol=1e-4, atol=1e-5)


def test_lora_layer_matches_formula():
    # y = W x + b + (alpha / r) * B A x, computed by hand
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("q_proj", nn.Linear(6, 5))
    base = copy.deepcopy(model.q_proj)
    apply_lora(model, LoRAConfig(rank=2, alpha=6.0, dropout=0.0, targets=("q_proj",)))
    lin = model.q_proj
    a, b = lin.lora_A[ADAPTER].weight, lin.lora_B[ADAPTER].weight
    with torch.no_grad():
        b.copy_(torch.randn(5, 2))
    x = torch.randn(3, 6)
    expected = x @ base.weight.t() + base.bias + (6.0 / 2) * (x @ a.t() @ b.t())
    torch.testing.assert_close(lin(x), expected)
    assert lin.weight is lin.get_base_layer().weight  # HF code that reads .weight sees the base weight


def test_adapters_stay_float32_over_a_bf16_base():
    model = tiny_llama().to(torch.bfloat16)
    for p in model.parameters():
        p.requires_grad_(False)
    apply_lora(model, LoRAConfig(rank=4))
    adapters = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    assert adapters and all(p.dtype == torch.float32 and p.requires_grad for p in adapters.values())
    assert all(p.dtype == torch.bfloat16 for n, p in model.named_parameters() if ".lora_" not in n)
    _randomise_B(model)
    ids = torch.randint(0, 101, (2, 7))
    out = model(input_ids=ids).logits
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().sum().backward()                          # gradients reach the float32 adapters
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in adapters.values())


@pytest.mark.parametrize("kind,build,run", CASES, ids=[c[0] for c in CASES])
def test_dora_by_config_starts_at_the_base_and_merges(kind, build, run, inputs):
    base = build()
    model = copy.deepcopy(base)
    apply_lora(model, LoRAConfig(rank=4, alpha=8, dropout=0.0, use_dora=True))
    model.eval()
    assert any("lora_magnitude_vector" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(run(model, inputs[kind]), run(base, inputs[kind]), rtol=1e-5, atol=1e-6)
    _randomise_B(model)
    unmerged = run(model, inputs[kind])
    set_merged(model, True)
    torch.testing.assert_close(run(model, inputs[kind]), unmerged, rtol=1e-4, atol=1e-5)


def test_targets_matching_nothing_raise_with_available_names():
    model = tiny_llama()
    with pytest.raises(ValueError) as e:
        apply_lora(model, LoRAConfig(targets=("qproj", "value_proj")))
    msg = str(e.value)
    assert "qproj" in msg
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert name in msg
    assert not lora_modules(model)  # nothing was wrapped on the way

    with pytest.raises(ValueError) as e:
        apply_lora(tiny_dinov2(), LoRAConfig(targets=("c_attn",)))
    assert "fc1" in str(e.value) and "fc2" in str(e.value)


def test_only_adapters_train_after_freeze_and_wrap():
    # as CapeLLM._apply_modes does for mode="lora": freeze everything, then wrap
    for model in (tiny_llama(), tiny_dinov2()):
        for p in model.parameters():
            p.requires_grad_(False)
        wrapped = apply_lora(model, LoRAConfig(rank=4))
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable, "LoRA must leave something to train"
        assert all(n.endswith((f".lora_A.{ADAPTER}.weight", f".lora_B.{ADAPTER}.weight")) for n in trainable), \
            trainable
        assert len(trainable) == 2 * len(wrapped)
        # the frozen base of a wrapped layer stays frozen
        assert all(not m.get_base_layer().weight.requires_grad for m in lora_modules(model))


def test_only_adapters_train_in_capellm_lora_mode():
    from capellm.model.capellm import CapeLLM

    cfg = preset("tiny").model
    cfg.vision = VisionConfig(name_or_path="random", random_config=cfg.vision.random_config, mode="lora")
    cfg.llm = LLMConfig(name_or_path="random", random_config=cfg.llm.random_config, tokenizer="char",
                        prompt_format="plain", mode="lora")
    cfg.projector.mode = "frozen"
    model = CapeLLM(cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert all(n.rsplit(".", 3)[-3] in ("lora_A", "lora_B") for n in trainable), trainable
    assert any(n.startswith("vision.") for n in trainable) and any(n.startswith("llm.") for n in trainable)
    layers = cfg.vision.random_config["num_hidden_layers"] + cfg.llm.random_config["num_hidden_layers"]
    assert len(lora_modules(model)) == 2 * layers


def test_default_targets_match_llama_and_dinov2_names():
    llama = tiny_llama()
    names = apply_lora(llama, LLMConfig().lora)  # the LLM default: q_proj, v_proj
    assert sorted(n.rsplit(".", 1)[-1] for n in names) == ["q_proj"] * N_LAYERS + ["v_proj"] * N_LAYERS

    dino = tiny_dinov2()
    names = apply_lora(dino, VisionConfig().lora)  # the vision default covers both conventions
    suffixes = sorted(n.rsplit(".", 1)[-1] for n in names)
    assert suffixes in (["q_proj"] * N_LAYERS + ["v_proj"] * N_LAYERS,   # transformers 5
                        ["query"] * N_LAYERS + ["value"] * N_LAYERS)      # transformers 4
    assert all(isinstance(dino.get_submodule(n), LoraLayer) for n in names)


def test_older_dinov2_names_query_value_are_matched():
    # the attention block of DINOv2 / ViT in transformers 4.x, whatever version is installed here
    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList([nn.ModuleDict({"attention": SelfAttention(), "dense": nn.Linear(8, 8)})
                                        for _ in range(2)])

    enc = Encoder()
    names = apply_lora(enc, VisionConfig().lora)
    assert sorted(names) == ["layer.0.attention.query", "layer.0.attention.value",
                             "layer.1.attention.query", "layer.1.attention.value"]
    assert isinstance(enc.layer[0]["attention"].key, nn.Linear)
    assert not isinstance(enc.layer[0]["attention"].key, LoraLayer)


@pytest.mark.parametrize("kw", [{"rank": 0}, {"dropout": 1.0}, {"targets": ()}])
def test_lora_config_rejects_invalid(kw):
    with pytest.raises(ValueError):
        LoRAConfig(**kw)
