"""The authors' recipe as the paper presets: their conversation text character for character,
their augmentation and optimiser settings, and their decoding with their parser.

The expected strings are written out from the authors' templates (github.com/Junhojuno/CapeLLM:
datasets/conversation.py roles User / Reference / Assistant with separators "\\n", "\\n", "</s>";
datasets/mp100.py: 256 image tokens, a newline, then the rounds; QUESTION_LIST[0])."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from capellm.config import OFFICIAL_QUESTION, InstructionConfig, preset
from capellm.data.categories import mp100_categories
from capellm.data.instructions import PromptFormat, parse_official, render_conversation

TOKENIZER = SimpleNamespace(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", get_vocab=dict)


def authors_text(category, kps, coords) -> str:
    """The authors' text after the image tokens, built from their templates."""
    text = "\n"
    for kp, (x, y) in zip(kps, coords):
        name, desc = category.keypoints[kp].name, category.keypoints[kp].description
        text += "User: " + f"Where is the {name} of this object in this image? Please provide its coordinates." + "\n"
        text += "Reference: " + desc + "\n"
        text += "Assistant: " + f"[{x:.3f},{y:.3f}]" + "</s>"
    return text


@pytest.mark.parametrize("cid", [2, 45, 64])   # horse body, chair, long-sleeved dress
def test_official_format_reproduces_the_authors_conversation(cid):
    cat = mp100_categories()[cid]
    fmt = PromptFormat.preset("official", TOKENIZER)
    cfg = preset("paper-l").model.instruction
    kps = [3, 0, 5, 1]
    coords = np.array([[0.123, 0.456], [0.5, 0.25], [0.0, 1.0], [0.987, 0.001]])
    segs = render_conversation(cat, kps, coords, cfg, fmt)
    assert fmt.image_prefix == "<|begin_of_text|>"            # before the image tokens
    assert "".join(s.text for s in segs) == authors_text(cat, kps, coords)
    # only the answers carry loss: " [x,y]</s>", the space that follows "Assistant:" included
    answers = [s.text for s in segs if s.role == "answer"]
    assert answers == [f" [{x:.3f},{y:.3f}]</s>" for x, y in coords]
    # the decoding prompt ends where the authors' does: at "Assistant:"
    prompt = render_conversation(cat, [kps[0]], None, cfg, fmt)
    assert "".join(s.text for s in prompt).endswith("\nAssistant:")


def test_paper_presets_are_the_authors_recipe():
    for name in ("paper-l", "paper-b", "paper-l-reg", "paper-l-llama3.2-1b", "paper-l-mistral", "paper-l-vicuna"):
        cfg = preset(name)
        assert cfg.model.llm.prompt_format == "official" and cfg.model.instruction.question == OFFICIAL_QUESTION
        assert cfg.model.instruction.k == 4 and cfg.model.instruction.description
        assert not cfg.model.llm.name_or_path.endswith("Instruct"), name          # base LLMs
        c = cfg.model.crop
        assert (c.augment, c.scale_distribution, c.scale_std, c.scale_range) == (True, "normal", 0.3, (0.7, 1.3))
        assert (c.max_rotation, c.rotation_prob, c.padding, c.input_size) == (40.0, 0.5, 1.0, 224)
        t = cfg.train
        assert (t.lr, t.weight_decay, t.warmup_ratio, t.schedule, t.epochs) == (5e-4, 0.01, 0.03, "cosine", 12)
        assert t.batch_size * t.grad_accum == 128
        for lora in (cfg.model.vision.lora, cfg.model.llm.lora):
            assert (lora.rank, lora.alpha, lora.dropout) == (8, 16.0, 0.05)
        assert cfg.eval.decode == "both"
    assert preset("paper-l").model.llm.name_or_path == "meta-llama/Llama-3.1-8B"
    chat = preset("paper-l-chat")       # our own variant keeps its name
    assert chat.model.llm.name_or_path.endswith("Instruct") and chat.model.llm.prompt_format == "llama3"


def test_normal_scale_augmentation_is_the_authors_and_draws_as_uniform_does():
    from capellm.config import CropConfig
    from capellm.data.crops import crop_instance
    from PIL import Image

    img = Image.new("RGB", (100, 100))
    cfg = CropConfig(input_size=16, augment=True, scale_distribution="normal", scale_std=0.3, scale_range=(0.7, 1.3),
                     max_rotation=40.0, rotation_prob=0.5)
    sides = []
    for seed in range(2000):
        m = crop_instance(img, [10, 10, 50, 50], np.zeros((1, 2)), [True], cfg, np.random.default_rng(seed)).matrix
        sides.append(1.0 / np.sqrt(abs(np.linalg.det(m[:, :2]))) / 50)     # crop side / box side
        rng = np.random.default_rng(seed)
        rng.random()
        after = rng.random()               # the rotation coin comes right after the scale's one draw
        uni = np.random.default_rng(seed)
        uni.uniform(0.7, 1.3)
        assert after == uni.random()
    sides = np.array(sides)
    assert sides.min() >= 0.7 - 1e-9 and sides.max() <= 1.3 + 1e-9
    assert 0.98 < np.median(sides) < 1.02 and 0.2 < sides.std() < 0.25   # N(1, 0.3) clipped to [0.7, 1.3]: 0.22


def test_authors_parser():
    assert parse_official("[0.123,0.456]") == (0.123, 0.456)
    assert parse_official(" [0.1,") == (0.1, 0.0)                       # a missing y becomes 0
    assert parse_official("no number") == (0.0, 0.0)
    assert parse_official("[1.000,0.500]</s>User: [0.2") == (0.5, 0.2)  # it cannot read 1.000


def test_image_prefix_comes_before_the_image_tokens_and_official_decoding_is_13_tokens():
    from capellm.model.capellm import OFFICIAL_NEW_TOKENS, CapeLLM

    cfg = preset("tiny").model
    cfg.llm.prompt_format = "official"
    cfg.instruction = InstructionConfig(question=OFFICIAL_QUESTION)
    torch.manual_seed(0)
    model = CapeLLM(cfg).eval()
    assert model.fmt.image_prefix == "<s>"                      # the char tokenizer's begin token
    pix = torch.randn(2, 3, 64, 64)
    img = model.encode_images(pix)
    bos = model.llm.get_input_embeddings()(torch.tensor(model.tokenizer.convert_tokens_to_ids(["<s>"])))
    assert img.shape[1] == 1 + model.vision.num_tokens(64)
    torch.testing.assert_close(img[:, 0], bos.expand(2, -1))
    assert model.answer_grammar() is not None                   # " [x,y]</s>" is token-aligned here
    from capellm.data.crops import crop_instance
    from PIL import Image

    crop = crop_instance(Image.new("RGB", (64, 64), (90, 30, 10)), [0, 0, 64, 64], np.zeros((2, 2)),
                         np.zeros(2, bool), cfg.crop)
    cat = mp100_categories()[2]
    official = model.predict_crops([crop], [cat], keypoints=[[0, 1]], decoding="official")[0]
    greedy = model.predict_crops([crop], [cat], keypoints=[[0, 1]], decoding="greedy")[0]
    assert not official.missing or set(official.missing) == set(range(2, cat.num_keypoints))
    for i in (0, 1):   # the same greedy tokens, the official ones never stop early
        a = model.tokenizer(official.answers[i], add_special_tokens=False)["input_ids"]
        assert len(a) <= OFFICIAL_NEW_TOKENS
        assert official.answers[i].startswith(greedy.answers[i][:8])
        assert np.all(np.isfinite(official.keypoints[i]))     # the authors' parser never fails
