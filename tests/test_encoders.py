"""The encoders of Table 6 (DINOv2, DINOv2 with registers, Hiera) behind one VisionEncoder: the
patch-token count each really yields, and LoRA on query and value of each, the fused qkv of
Hiera included."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

from capellm.config import VisionConfig
from peft.tuners.lora import LoraLayer

from capellm.model.lora import ADAPTER, apply_lora, set_merged
from capellm.model.vision import VisionEncoder

SHAPES = {
    "dinov2": dict(model_type="dinov2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=128, image_size=64, patch_size=8),
    "dinov2_with_registers": dict(model_type="dinov2_with_registers", hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128, image_size=64, patch_size=8,
                                  num_register_tokens=4),
    "hiera": dict(model_type="hiera", embed_dim=16, num_heads=[1, 2, 4, 8], depths=[1, 1, 1, 1],
                  image_size=[64, 64]),
}
GRID = {"dinov2": 8, "dinov2_with_registers": 8, "hiera": 2}   # 64 / 8; Hiera: 64 / 4 / 2^3


def encoder(name: str, features: str = "patch") -> VisionEncoder:
    torch.manual_seed(0)
    kw = dict(SHAPES[name])
    return VisionEncoder(AutoModel.from_config(AutoConfig.for_model(kw.pop("model_type"), **kw)), features).eval()


@pytest.mark.parametrize("name", SHAPES)
def test_patch_token_count_is_what_the_encoder_yields(name):
    enc = encoder(name)
    x = torch.randn(2, 3, 64, 64)
    out = enc(x)
    assert enc.grid_side(64) == GRID[name] and enc.num_tokens(64) == GRID[name] ** 2
    assert out.shape == (2, GRID[name] ** 2, enc.hidden_size)
    full = encoder(name, "all")
    assert full(x).shape[1] == full.num_tokens(64) == full.backbone(pixel_values=x).last_hidden_state.shape[1]


@pytest.mark.parametrize("name", SHAPES)
def test_lora_on_query_and_value_of_every_encoder(name):
    enc = encoder(name)
    x = torch.randn(2, 3, 64, 64)
    base = enc(x)
    wrapped = apply_lora(enc, VisionConfig().lora)
    enc.eval()                                                           # no adapter dropout
    assert wrapped and torch.allclose(enc(x), base, atol=1e-6)          # B = 0: the base model
    layers = [m for m in enc.modules() if isinstance(m, LoraLayer)]
    for m in layers:
        torch.nn.init.normal_(m.lora_B[ADAPTER].weight, std=0.1)
    changed = enc(x)
    assert not torch.allclose(changed, base, atol=1e-4)
    set_merged(enc, True)
    torch.testing.assert_close(enc(x), changed, rtol=1e-4, atol=1e-5)   # merged = unmerged
    set_merged(enc, False)
    if name == "hiera":                       # the fused qkv, split: adapters on its q and v thirds only
        assert all(n.endswith(("qkv.query", "qkv.value")) for n in wrapped)
        split = enc.get_submodule(wrapped[0].rsplit(".", 1)[0])
        assert not isinstance(split.key, LoraLayer)
        d = split.out_features // 3
        h = torch.randn(5, split.in_features)
        with torch.no_grad():
            plain = torch.cat([split.query.get_base_layer()(h), split.key(h), split.value.get_base_layer()(h)], -1)
            delta = split(h) - plain
        assert delta[:, d:2 * d].abs().max() == 0                        # the key third is untouched
        assert delta[:, :d].abs().max() > 0 and delta[:, 2 * d:].abs().max() > 0
