"""Invariants of the composed model: loss only on answers, decoding with the KV cache equals
decoding without it, padding does not change answers, save -> load is exact, modes train what
they say, checkpoints hold no absolute paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from peft.tuners.lora import LoraLayer

from capellm.config import InstructionConfig, preset
from capellm.data.categories import Category, Keypoint
from capellm.data.crops import crop_instance
from capellm.data.dataset import collate
from capellm.data.instructions import IGNORE_INDEX, render_conversation
from capellm.model.capellm import CapeLLM

CAT = Category("box", tuple(Keypoint(f"corner {i}", f"Corner {i} of the box.") for i in range(3)), id=1)


def tiny_model(seed=0, **llm) -> CapeLLM:
    torch.manual_seed(seed)
    cfg = preset("tiny").model
    for k, v in llm.items():
        setattr(cfg.llm, k, v)
    return CapeLLM(cfg).eval()


def sample(model, kps, coords, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = model.cfg.crop.input_size
    ids, labels = model.segment_tokenizer(render_conversation(CAT, kps, coords, model.cfg.instruction, model.fmt))
    return {"pixel_values": torch.randn(3, s, s, generator=g), "input_ids": ids, "labels": labels}


def test_loss_is_answer_token_cross_entropy():
    """The loss equals cross-entropy of the full LM logits at answer positions only."""
    model = tiny_model()
    items = [sample(model, [0, 1], np.array([[0.1, 0.2], [0.3, 0.4]])),
             sample(model, [2], np.array([[0.5, 0.6]]), seed=1)]
    batch = collate(items, model.tokenizer.pad_token_id)
    loss = model(batch)["loss"]
    # reference: full logits from the HF model on [image; text], no padding tricks
    ref_losses, ref_n = [], 0
    for it in items:
        img = model.encode_images(it["pixel_values"][None])
        ids = torch.tensor([it["input_ids"]])
        x = torch.cat([img, model.llm.get_input_embeddings()(ids)], 1)
        logits = model.llm(inputs_embeds=x).logits[0, img.shape[1] - 1:-1]   # predicts text tokens
        lab = torch.tensor(it["labels"])
        ref_losses.append(F.cross_entropy(logits, lab, ignore_index=IGNORE_INDEX, reduction="sum"))
        ref_n += int((lab != IGNORE_INDEX).sum())
    torch.testing.assert_close(loss, sum(ref_losses) / ref_n, rtol=1e-4, atol=1e-5)


def test_changing_prompt_labels_region_does_not_matter_but_answers_do():
    model = tiny_model()
    it = sample(model, [0], np.array([[0.25, 0.75]]))
    batch = collate([it], model.tokenizer.pad_token_id)
    base = model(batch)["loss"]
    n_answer = sum(1 for v in it["labels"] if v != IGNORE_INDEX)
    assert n_answer == len(model.segment_tokenizer.encode("[0.250,0.750]" + model.fmt.answer_end))
    other = dict(batch, labels=batch["labels"].clone())
    pos = (other["labels"][0] != IGNORE_INDEX).nonzero()[0, 0]
    other["labels"][0, pos] = (other["labels"][0, pos] + 1) % len(model.tokenizer)
    assert not torch.isclose(model(other)["loss"], base)


def _crops(model, n=2, seed=0):
    rng = np.random.default_rng(seed)
    from PIL import Image

    out = []
    for _ in range(n):
        img = Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
        out.append(crop_instance(img, np.array([2, 3, 30, 40], np.float32), np.zeros((3, 2), np.float32),
                                 np.zeros(3, bool), model.cfg.crop))
    return out


def test_cached_decoding_equals_full_recompute():
    """Greedy decoding with the KV cache gives the tokens of argmax over full recomputation."""
    model = tiny_model()
    crop = _crops(model, 1)[0]
    img = model.encode_images(crop.pixel_values[None])
    prompt, _ = model.segment_tokenizer(render_conversation(CAT, [1], None, model.cfg.instruction, model.fmt))
    got = model.answer(img, [0], [prompt])[0].token_ids
    ids = list(prompt)
    ref = []
    for _ in range(len(got)):
        x = torch.cat([img, model.llm.get_input_embeddings()(torch.tensor([ids]))], 1)
        nxt = int(model.llm(inputs_embeds=x).logits[0, -1].argmax())
        ref.append(nxt)
        ids.append(nxt)
    assert got == ref


def test_batched_padded_decoding_equals_one_by_one():
    model = tiny_model()
    crops = _crops(model, 2)
    img = model.encode_images(torch.stack([c.pixel_values for c in crops]))
    cfg_long = InstructionConfig(keypoint_list=True)
    prompts = [model.segment_tokenizer(render_conversation(CAT, [0], None, model.cfg.instruction, model.fmt))[0],
               model.segment_tokenizer(render_conversation(CAT, [2], None, cfg_long, model.fmt))[0]]
    assert len(prompts[0]) != len(prompts[1])
    together = model.answer(img, [0, 1], prompts)
    alone = [model.answer(img[i:i + 1], [0], [p])[0] for i, p in enumerate(prompts)]
    assert [a.token_ids for a in together] == [a.token_ids for a in alone]
    for a, b in zip(together, alone):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_save_load_predictions_identical(tmp_path):
    model = tiny_model(seed=3)
    crops = _crops(model, 2, seed=1)
    before = model.predict_crops(crops, [CAT, CAT])
    model.save_pretrained(tmp_path / "ckpt")
    loaded = CapeLLM.from_pretrained(tmp_path / "ckpt")
    after = loaded.predict_crops(crops, [CAT, CAT])
    for a, b in zip(before, after):
        assert a.answers == b.answers
        np.testing.assert_array_equal(a.confidence, b.confidence)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_checkpoint_config_has_no_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPELLM_MODEL_ROOT", str(tmp_path))
    model = tiny_model()
    model.cfg.llm.tokenizer = str(tmp_path / "weights" / "tok")  # as if the user passed a path
    d = model.config_dict()
    assert d["llm"]["tokenizer"] == "weights/tok"
    model.cfg.llm.tokenizer = "char"
    model.save_pretrained(tmp_path / "ckpt")
    text = (tmp_path / "ckpt" / "config.yaml").read_text()
    assert str(tmp_path) not in text
    assert yaml.safe_load(text)["vision"]["name_or_path"] == "random"


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_trainability_modes(mode):
    torch.manual_seed(0)
    cfg = preset("tiny").model
    cfg.llm.mode = mode
    cfg.vision.mode = "frozen"
    model = CapeLLM(cfg)
    llm_trainable = {n for n, p in model.llm.named_parameters() if p.requires_grad}
    assert not any(p.requires_grad for p in model.vision.parameters())
    assert all(p.requires_grad for p in model.projector.parameters())
    if mode == "frozen":
        assert llm_trainable == set()
    elif mode == "full":
        assert llm_trainable == {n for n, _ in model.llm.named_parameters()}
    else:
        assert llm_trainable and all(".lora_" in n for n in llm_trainable)
        wrapped = [n for n, m in model.llm.named_modules() if isinstance(m, LoraLayer)]
        assert wrapped and all(n.endswith(("q_proj", "v_proj")) for n in wrapped)
        # lora checkpoints hold only adapters for the LLM... but all of a random-init base
        saved = model.trained_state_dict()
        assert any(".lora_A" in k for k in saved)


def test_lora_checkpoint_of_pretrained_base_holds_only_adapters(tmp_path):
    """With a base model loaded from disk, a LoRA checkpoint stores adapters + projector only."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from capellm.model.language_model import build_char_tokenizer

    tok = build_char_tokenizer()
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=64))
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    cfg = preset("tiny").model
    cfg.llm.name_or_path = str(tmp_path / "base")
    cfg.llm.tokenizer = ""
    cfg.llm.mode = "lora"
    model = CapeLLM(cfg)
    saved = model.trained_state_dict()
    llm_keys = [k for k in saved if k.startswith("llm.")]
    assert llm_keys and all(".lora_" in k for k in llm_keys)
    assert any(k.startswith("projector.") for k in saved)
    with torch.no_grad():                                    # a trained adapter, not B = 0
        for n, p in model.llm.named_parameters():
            if ".lora_B." in n:
                p.normal_(std=0.2)
    model.save_pretrained(tmp_path / "ckpt")
    again = CapeLLM.from_pretrained(tmp_path / "ckpt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k

    # the LLM's adapter is also a standard PEFT adapter folder that peft loads by itself
    from peft import PeftModel

    ids = torch.randint(0, len(tok), (2, 9))
    model.eval()
    with torch.no_grad():
        ours = model.llm(input_ids=ids).logits
        peft_llm = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tmp_path / "base"),
                                             str(tmp_path / "ckpt" / "llm_adapter")).eval()
        torch.testing.assert_close(peft_llm(input_ids=ids).logits, ours)
        assert not torch.allclose(base(input_ids=ids).logits, ours, atol=1e-3)
        merged = peft_llm.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=ids).logits, ours, rtol=1e-4, atol=1e-5)
    config = json.loads((tmp_path / "ckpt" / "llm_adapter" / "adapter_config.json").read_text())
    assert config["r"] == cfg.llm.lora.rank and config["base_model_name_or_path"] == model.config_dict()["llm"]["name_or_path"]


def test_unparseable_answer_is_reported_missing_not_raised():
    model = tiny_model()
    pred = model.predict(np.zeros((32, 32, 3), np.uint8), CAT)
    assert pred.keypoints.shape == (3, 2)
    for i in range(3):
        if np.isnan(pred.keypoints[i, 0]):
            assert i in pred.missing and "not of the form" in pred.missing[i]
    d = pred.to_dict()
    assert [k["name"] for k in d["keypoints"]] == CAT.keypoint_names


def test_sincos_position_embeddings_of_a_random_encoder():
    from transformers import AutoConfig, AutoModel

    from capellm.model.vision import build_vision_backbone

    cfg = preset("demo").model.vision
    rc = dict(cfg.random_config)
    cfg.random_config["sincos_position_scale"] = 2.0
    torch.manual_seed(0)
    plain = AutoModel.from_config(AutoConfig.for_model(rc.pop("model_type"), **rc))
    after_plain = torch.rand(3)
    torch.manual_seed(0)
    model = build_vision_backbone(cfg)
    assert torch.equal(torch.rand(3), after_plain)                  # draws nothing from the RNG
    pe = model.embeddings.position_embeddings[0].detach()          # [1 + 16, D]: CLS, then a 4x4 grid
    side = cfg.random_config["image_size"] // cfg.random_config["patch_size"]
    assert pe.shape[0] == 1 + side * side
    assert torch.all(pe[0] == 0)
    # every patch position has its own embedding, on the scale of the patch features
    dist = torch.cdist(pe[1:], pe[1:]) + torch.eye(side * side) * 1e9
    assert dist.min() > 0.1
    assert 0.4 < pe[1:].std() < 2.0                # scale 2: twice the unit sine-cosine table
    # neighbours are closer than far corners (a smooth 2-D code)
    assert torch.dist(pe[1], pe[2]) < torch.dist(pe[1], pe[side * side])
    # every other weight is what the seed alone gives
    w, w_plain = model.state_dict(), plain.state_dict()
    assert all(torch.equal(w[k], w_plain[k]) for k in w if k != "embeddings.position_embeddings")


def test_image_reliance_swaps_images_between_conversations(tiny_data):
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import image_reliance

    data = load_keypoint_dataset(tiny_data["ann"], tiny_data["images"])
    cats = categories_for(data, tiny_data["categories"])
    model = tiny_model()
    with torch.no_grad():                           # image tokens independent of the pixels: no gap
        model.projector.proj.weight.zero_()
    blind = image_reliance(model, data, cats, samples=8, batch_size=4)
    assert blind["conversations"] == 8
    assert blind["loss"] > 0 and abs(blind["gap"]) < 1e-6
    with torch.no_grad():                           # image tokens that differ strongly per image
        model.projector.proj.weight.normal_(0, 3.0)
    seeing = image_reliance(model, data, cats, samples=8, batch_size=4)
    assert abs(seeing["gap"]) > 1e-5                # an untrained LM mixes in little of the image
    assert seeing["gap"] == pytest.approx(seeing["loss_other_images"] - seeing["loss"])
    assert not model.training


def test_matmul_attention_equals_sdpa_with_padding_causal_and_grouped_heads():
    """The CPU training attention is SDPA's arithmetic: bool padding mask, the causal case where
    transformers passes no mask, and grouped KV heads."""
    from capellm.inference.attention import _matmul_attention

    class Layer(torch.nn.Module):
        num_key_value_groups, is_causal = 2, True

    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 7, 8, generator=g)
    k, v = torch.randn(2, 2, 7, 8, generator=g), torch.randn(2, 2, 7, 8, generator=g)
    mask = torch.ones(7, 7, dtype=torch.bool).tril()[None, None].repeat(2, 1, 1, 1)
    mask[1, :, :, 5:] = False                                       # row 1: two padded keys
    kr, vr = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    out, _ = _matmul_attention(Layer(), q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, kr, vr, attn_mask=mask).transpose(1, 2))
    out, _ = _matmul_attention(Layer(), q, k, v, None)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, kr, vr, is_causal=True).transpose(1, 2))


def test_bf16_cpu_training_attention_matches_sdpa_and_is_restored():
    """Under bf16 autocast on the CPU, training runs both models' attention as matrix products:
    the loss and gradients agree with SDPA's within bf16 rounding, and the models get their own
    attention back after every step the one context is entered for."""
    from capellm.inference.attention import training_attention

    model = tiny_model().train()
    items = [sample(model, [0, 1], np.array([[0.1, 0.2], [0.3, 0.4]])),
             sample(model, [2], np.array([[0.5, 0.6]]), seed=1)]
    batch = collate(items, model.tokenizer.pad_token_id)
    configs = (model.llm.config, model.vision.backbone.config)
    assert {c._attn_implementation for c in configs} == {"sdpa"}

    def loss_and_grads(attention):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16), attention:
            seen = {c._attn_implementation for c in configs}
            loss = model(batch)["loss"]
        loss.backward()
        return seen, loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    attention = training_attention(model, torch.device("cpu"), "bf16")       # made once, entered per step
    for _ in range(2):
        seen, loss, grads = loss_and_grads(attention)
        assert seen == {"capellm_matmul"}
        assert {c._attn_implementation for c in configs} == {"sdpa"}
    _, ref_loss, ref_grads = loss_and_grads(training_attention(model, torch.device("cpu"), "no"))
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=2e-2)
    assert F.cosine_similarity(grads, ref_grads, dim=0) > 0.99


def test_gradient_checkpointing_recomputes_the_same_loss_and_gradients_without_deprecation_warnings():
    import warnings

    from capellm.model.capellm import set_activation_checkpointing

    items = [sample(tiny_model(), [0, 1], np.array([[0.1, 0.2], [0.3, 0.4]]))]

    def loss_and_grads(model):
        model.train()
        loss = model(collate(items, model.tokenizer.pad_token_id))["loss"]
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model = tiny_model(gradient_checkpointing=True)
        layers = model.llm.model.layers
        assert all(layer.gradient_checkpointing for layer in layers)
        loss, grads = loss_and_grads(model)
        set_activation_checkpointing(model.llm, False)
        assert not any(layer.gradient_checkpointing for layer in layers)
    ref_loss, ref_grads = loss_and_grads(tiny_model())
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grads, ref_grads)
