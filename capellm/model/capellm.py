"""CapeLLM: vision encoder -> linear projector -> decoder-only LLM (paper Sec. 3.1, Eq. 1-5).

The image's patch tokens, projected to the LLM's width, come first; the text of the instruction
follows. Training (`forward`) returns the next-token loss over answer tokens only. The loss never
materialises full-vocabulary logits at every position: the decoder body yields hidden states and
the output head is applied only at the positions that carry a label (Llama 3 has 128k entries per
position, and an instruction has hundreds of positions of which ~40 are answers).

Inference has one path. `predict_crops` asks for every keypoint of already-cropped instances
(capellm.inference.engine), parses each answer and maps it back to image pixels through the
crop's own matrix; an answer that does not parse is reported missing with its reason. Evaluation
and the demo crop annotated instances and call it; `predict` (the Python API, `capellm predict`
and the app) reads the box's crop from a user's image (capellm.data.crops.read_crop: only the
region it needs, large boxes downscaled with antialiasing) and calls it.

A checkpoint is a folder: `config.yaml` (the model config, base models by hub id or portable
path), `model.safetensors` (only what is not in the base models: LoRA adapters, the projector,
fully trained or randomly initialised components) and `tokenizer/`; with a pretrained LLM under
LoRA also `llm_adapter/`, the LLM's adapter as a standard PEFT adapter folder.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from capellm.config import ModelConfig, from_dict, portable_path, to_dict
from capellm.errors import CheckpointError
from capellm.data.categories import Category
from capellm.data.crops import CropResult, clip_box, read_crop
from capellm.data.images import ImageSource
from capellm.data.instructions import (IGNORE_INDEX, NOT_VISIBLE, ParseError, PromptFormat, SegmentTokenizer,
                                       format_coords, parse_coords, parse_official, render_conversation,
                                       round_segments)
from capellm.inference import Answer, Conversation, CoordinateGrammar, decode, hidden_at_token
from capellm.inference.decoder import decoder_body, run_decoder
from capellm.model.keypoint_head import KeypointHead, add_keypoint_token, coordinate_loss, embed_with_keypoint_token
from capellm.model.language_model import build_language_model, build_tokenizer, ensure_pad_token
from capellm.model.lora import ADAPTER, apply_lora, lora_modules
from capellm.model.projector import Projector
from capellm.model.vision import VisionEncoder, build_vision_backbone
from capellm.utils import atomic_write_text

CONFIG_FILE = "config.yaml"
OFFICIAL_NEW_TOKENS = 13   # what the authors' evaluation asks generate() for (utils/valid_utils.py)
ANSWER_DECODINGS = ("grammar", "greedy", "official")
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
LLM_ADAPTER_DIR = "llm_adapter"    # the LLM's LoRA as a standard PEFT adapter folder (an export)


@dataclass
class Prediction:
    """Keypoints of one instance, in image pixels. Missing answers are NaN with a reason."""

    names: list[str]
    keypoints: np.ndarray                 # float [K, 2] image pixels (NaN where missing)
    confidence: np.ndarray                # float [K] in (0, 1]: geometric mean token probability
    answers: list[str]                    # raw answer texts
    missing: dict[int, str] = field(default_factory=dict)  # keypoint index -> why it is missing
    box: list[float] | None = None        # [x, y, w, h] the instance was read from (image pixels)
    # with distribution=True (capellm.inference.uncertainty), image pixels, NaN where missing:
    spread: np.ndarray | None = None      # float [K, 2] standard deviation of x and of y
    mean: np.ndarray | None = None        # float [K, 2] expected position
    mode: np.ndarray | None = None        # float [K, 2] most probable position

    def to_dict(self) -> dict:
        kps = []
        pair = lambda a, i: None if a is None or np.isnan(a[i]).any() else [round(float(v), 2) for v in a[i]]
        for i, n in enumerate(self.names):
            x, y = self.keypoints[i]
            extra = {k: pair(a, i) for k, a in (("spread", self.spread), ("mean", self.mean), ("mode", self.mode))
                     if a is not None}
            kps.append({"name": n, "x": None if np.isnan(x) else round(float(x), 2),
                        "y": None if np.isnan(y) else round(float(y), 2),
                        "confidence": _finite(round(float(self.confidence[i]), 4)), **extra,
                        "answer": self.answers[i], **({"missing": self.missing[i]} if i in self.missing else {})})
        return {"keypoints": kps}


def _add_distribution(pred: Prediction, crop: CropResult, ans: dict[int, Answer]) -> None:
    """Spread, expected and most probable position of each answer's distribution, in image pixels."""
    k = len(pred.names)
    pred.spread, pred.mean, pred.mode = (np.full((k, 2), np.nan) for _ in range(3))
    ok = [i for i, a in ans.items() if a.dist is not None and i not in pred.missing]
    if not ok:
        return
    mean = np.array([[d.mean for d in ans[i].dist] for i in ok])           # crop units
    mode = np.array([[d.mode for d in ans[i].dist] for i in ok])
    std = np.array([[d.std for d in ans[i].dist] for i in ok])
    pred.mean[ok], pred.mode[ok] = crop.to_image(mean), crop.to_image(mode)
    # crop -> image is a scale and a shift per axis at inference (no rotation)
    unit = crop.to_image(np.array([[1.0, 1.0]])) - crop.to_image(np.array([[0.0, 0.0]]))
    pred.spread[ok] = std * np.abs(unit)


def _finite(v: float) -> float | None:
    """JSON has no NaN: a non-finite number (a model that diverged) is reported as null."""
    return v if np.isfinite(v) else None


def set_activation_checkpointing(llm: nn.Module, on: bool) -> None:
    """Recompute the decoder layers' activations in the backward pass (non-reentrant), or stop.
    transformers 5.2x calls it activation checkpointing, earlier versions gradient checkpointing."""
    new = hasattr(llm, "activation_checkpointing_enable")
    if not on:
        (llm.activation_checkpointing_disable if new else llm.gradient_checkpointing_disable)()
    elif new:
        llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


class CapeLLM(nn.Module):
    def __init__(self, cfg: ModelConfig, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(cfg.llm)
        # <KEYPOINT> answers (App. B.2): the token joins the vocabulary before a random LLM is sized
        self.keypoint_token_id = (add_keypoint_token(self.tokenizer) if cfg.instruction.answer == "keypoint_token"
                                  else None)
        self.vision = VisionEncoder(build_vision_backbone(cfg.vision), cfg.vision.features)
        # the LLM's vocabulary need not hold <KEYPOINT> (the last id where it was added): its
        # embedding is the head's own
        vocab = len(self.tokenizer)
        if self.keypoint_token_id is not None and self.keypoint_token_id == vocab - 1:
            vocab -= 1
        self.llm = build_language_model(cfg.llm, vocab)
        dim = self.llm.get_input_embeddings().embedding_dim
        self.projector = Projector(self.vision.hidden_size, dim)
        self.keypoint_head = None
        if self.keypoint_token_id is not None:
            std = float(self.llm.get_input_embeddings().weight.detach().float().std())
            self.keypoint_head = KeypointHead(dim, cfg.keypoint_decoder, embedding_std=std)
        self.fmt = PromptFormat.preset(cfg.llm.prompt_format, self.tokenizer)
        self.segment_tokenizer = SegmentTokenizer(self.tokenizer)
        self._apply_modes()

    # ------------------------------------------------------------------ trainability
    def _apply_modes(self) -> None:
        """frozen / lora / full per component (Table 6); LoRA wraps after freezing the base."""
        for name, module, mode, lora in (("vision", self.vision, self.cfg.vision.mode, self.cfg.vision.lora),
                                         ("llm", self.llm, self.cfg.llm.mode, self.cfg.llm.lora)):
            _set_trainable(module, mode == "full")
            if mode == "lora":
                apply_lora(module, lora)
        # masked-image-modelling tokens (DINOv2's mask_token) never take part in our forward;
        # trainable but unused parameters would stall DDP's gradient reduction
        for name, p in self.vision.named_parameters():
            if name.endswith("mask_token"):
                p.requires_grad_(False)
        _set_trainable(self.projector, self.cfg.projector.mode == "full")
        if self.keypoint_head is not None:
            _set_trainable(self.keypoint_head, True)
        if self.cfg.llm.gradient_checkpointing:
            set_activation_checkpointing(self.llm, True)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """One optimiser group per component, each with its own learning rate."""
        groups = []
        parts = [(self.vision, self.cfg.vision.lr_scale), (self.projector, self.cfg.projector.lr_scale),
                 (self.llm, self.cfg.llm.lr_scale)]
        if self.keypoint_head is not None:
            parts.append((self.keypoint_head, 1.0))
        for module, scale in parts:
            params = [p for p in module.parameters() if p.requires_grad]
            if params:
                groups.append({"params": params, "lr": lr * scale, "weight_decay": weight_decay})
        return groups

    @property
    def device(self) -> torch.device:
        return self.projector.proj.weight.device

    # ------------------------------------------------------------------ training
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> [B, N, D_llm] image tokens in the LLM's embedding space (Eq. 1-2),
        after the prompt format's `image_prefix` tokens where it has one (the official format's
        begin-of-text token: the text before the image is part of the image block)."""
        return self.image_tokens(self.vision(pixel_values))

    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """The vision encoder's output [B, N, D_vision] -> image tokens, as `encode_images`."""
        img = self.projector(features)                                      # [B, N, D]
        pre = self.segment_tokenizer.encode(self.fmt.image_prefix) if self.fmt.image_prefix else []
        if pre:
            ids = torch.tensor(pre, dtype=torch.long, device=img.device)
            emb = self.llm.get_input_embeddings()(ids).to(img.dtype)        # [P, D]
            img = torch.cat([emb.expand(img.shape[0], -1, -1), img], dim=1)  # [B, P + N, D]
        return img

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, T] -> input embeddings [B, T, D] (a <KEYPOINT> token gets its own)."""
        if self.keypoint_head is None:
            return self.llm.get_input_embeddings()(input_ids)
        return embed_with_keypoint_token(self.llm.get_input_embeddings(), input_ids, self.keypoint_token_id,
                                         self.keypoint_head.token_embedding, self.tokenizer.pad_token_id)

    def forward(self, batch: dict) -> dict:
        """batch: pixel_values [B,3,S,S] (or the frozen encoder's image_features [B,N,D]),
        input_ids [B,T], attention_mask [B,T], labels [B,T] (text padded on the right); with
        <KEYPOINT> answers also keypoint_targets [M, 2].
        Returns {"loss", "n_tokens", "token_accuracy"}; with <KEYPOINT> answers n_tokens counts
        the keypoints, token_accuracy is the share of them within 0.05 of the crop on both axes,
        and "keypoints" [M, 2] holds the decoder's positions (crop units, in the tokens' order)."""
        if "image_features" in batch:                                      # train.frozen_features
            img = self.image_tokens(batch["image_features"])                # [B, N, D]
        else:
            img = self.encode_images(batch["pixel_values"])
        emb = self.embed_text(batch["input_ids"])                          # [B, T, D]
        b, n = img.shape[:2]
        x = torch.cat([img.to(emb.dtype), emb], dim=1)                     # [B, N+T, D] (Eq. 3)
        mask = torch.cat([torch.ones(b, n, dtype=batch["attention_mask"].dtype, device=x.device),
                          batch["attention_mask"]], dim=1)
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        h, _ = run_decoder(decoder_body(self.llm), x, mask, pos)           # [B, N+T, D]
        # the hidden state at position p predicts token p+1: text token t is predicted at n+t-1
        h_text = h[:, n - 1:-1]                                            # [B, T, D]
        labels = batch["labels"]
        sel = labels != IGNORE_INDEX                                       # [B, T]
        if self.keypoint_head is not None:
            return self._keypoint_loss(h[:, n:], batch, h_text, sel)
        logits = self.llm.get_output_embeddings()(h_text[sel]).float()     # [M, V], M answer tokens
        target = labels[sel]
        loss = F.cross_entropy(logits, target)
        with torch.no_grad():
            acc = (logits.argmax(-1) == target).float().mean()
        return {"loss": loss, "n_tokens": int(target.numel()), "token_accuracy": acc}

    def _keypoint_loss(self, h: torch.Tensor, batch: dict, h_prev: torch.Tensor, sel: torch.Tensor) -> dict:
        """<KEYPOINT> answers: the coordinate loss of the decoder on the hidden state AT each
        <KEYPOINT> token ([B, T, D] h), plus the next-token loss of any text answer (sel)."""
        pred = self.keypoint_head(h[batch["input_ids"] == self.keypoint_token_id])     # [M, 2]
        target = batch["keypoint_targets"].to(pred.device)
        if pred.shape != target.shape:
            raise ValueError(f"{pred.shape[0]} <KEYPOINT> tokens in the batch but {target.shape[0]} targets")
        loss = coordinate_loss(pred, target, self.cfg.keypoint_decoder.loss)
        if sel.any():
            logits = self.llm.get_output_embeddings()(h_prev[sel]).float()
            loss = loss + F.cross_entropy(logits, batch["labels"][sel])
        with torch.no_grad():
            acc = ((pred - target).abs().amax(-1) <= 0.05).float().mean()
        return {"loss": loss, "n_tokens": int(target.shape[0]), "token_accuracy": acc, "keypoints": pred.detach()}

    # ------------------------------------------------------------------ inference
    def end_ids(self) -> list[int]:
        return self.segment_tokenizer.encode(self.fmt.answer_end)

    def answer_grammar(self):
        """The coordinate format as tokens (capellm.inference.grammar), or None where the
        tokenizer does not spell it token by token (answers are then decoded unconstrained)."""
        nv = NOT_VISIBLE if self.cfg.instruction.not_visible_rate > 0 else None
        key = (self.fmt.answer_end, self.cfg.instruction.decimals, self.fmt.answer_start, nv)
        cached = self.__dict__.get("_grammar")
        if cached is None or cached[0] != key:
            grammar = CoordinateGrammar.build(self.segment_tokenizer.encode, *key)
            if grammar is None:
                warnings.warn("the tokenizer does not spell '[x,y]' answers token by token; "
                              "decoding unconstrained (answers may not parse)", stacklevel=2)
            elif nv is not None and grammar.nv_first is None:
                warnings.warn(f"the tokenizer does not spell {nv!r} as '[' + its own tokens; the grammar "
                              f"cannot admit 'not visible' answers", stacklevel=2)
            cached = self.__dict__["_grammar"] = (key, grammar)
        return cached[1]

    def _decode(self, image_embeds: torch.Tensor, convs: list[Conversation], decoding: str,
                distribution: bool = False) -> list[list[Answer]]:
        if decoding not in ANSWER_DECODINGS:
            raise ValueError(f"decoding must be one of {ANSWER_DECODINGS}, got '{decoding}'")
        if self.keypoint_head is not None:
            raise ValueError("this model answers with <KEYPOINT> tokens read by its decoder: it has no text answers "
                             "to decode (predict_crops gives its keypoints)")
        if decoding == "official":    # the authors' generate(): greedy, exactly 13 new tokens
            return decode(self.llm, image_embeds, convs, grammar=None, end_ids=[], pad_id=self.tokenizer.pad_token_id,
                          tokenizer=self.tokenizer, max_new_tokens=OFFICIAL_NEW_TOKENS)
        grammar = self.answer_grammar() if decoding == "grammar" else None
        return decode(self.llm, image_embeds, convs, grammar=grammar, end_ids=self.end_ids(),
                      pad_id=self.tokenizer.pad_token_id, tokenizer=self.tokenizer,
                      max_new_tokens=self.cfg.max_new_tokens, distribution=distribution and grammar is not None)

    @torch.no_grad()
    def answer(self, image_embeds: torch.Tensor, image_index: list[int], prompts: list[list[int]],
               constrained: bool = False) -> list[Answer]:
        """The model's answer to each prompt (token ids after the image tokens of image_index[q]).

        Unconstrained greedy by default (the raw model); constrained=True admits only "[x,y]".
        """
        convs = [Conversation(i, [list(p)]) for i, p in zip(image_index, prompts)]
        return [a[0] for a in self._decode(image_embeds, convs, "grammar" if constrained else "greedy")]

    @torch.no_grad()
    def predict_crops(self, crops: list[CropResult], categories: list[Category], mode: str = "single",
                      keypoints: list[list[int]] | None = None, constrained: bool = True,
                      decoding: str | None = None, distribution: bool = False,
                      image_embeds: torch.Tensor | None = None) -> list[Prediction]:
        """Ask for keypoints of already-cropped instances; returns predictions in image pixels.

        keypoints[i]: which keypoint indices to ask for instance i (default: all).
        mode: "single" asks each keypoint in its own prompt (the official evaluation);
              "multi" asks k per conversation, each answer staying in context (as trained).
        decoding: "grammar" (default): only well-formed coordinates (capellm.inference.grammar);
              "greedy": the model's unconstrained greedy answers up to its end marker;
              "official": the authors' way, greedy for exactly 13 new tokens, read with their
              regex parser (`parse_official`: never missing, unreadable numbers become 0); one
              keypoint per prompt whatever `mode` says. constrained=False is "greedy".
        distribution: with "grammar", each keypoint also gets the spread, expected and most
              probable position of its answer's distribution (capellm.inference.uncertainty);
              the keypoints themselves stay the decoded answers.
        image_embeds: the crops' image tokens (`encode_images`) where the caller has them already.
        One pass of the decoding engine serves the whole batch: every image is encoded once, and
        its image tokens and common prompt prefix are prefilled once for all of its queries.
        """
        if mode not in ("single", "multi"):
            raise ValueError(f"mode must be 'single' or 'multi', got '{mode}'")
        decoding = decoding or ("grammar" if constrained else "greedy")
        if decoding == "official":
            mode = "single"
        was_training = self.training
        self.eval()
        if image_embeds is None:
            image_embeds = self.encode_images(torch.stack([c.pixel_values for c in crops]).to(self.device))
        img = image_embeds                                                  # [B, N, D]
        ask = keypoints or [list(range(c.num_keypoints)) for c in categories]
        icfg = self.cfg.instruction
        if self.keypoint_head is not None:
            preds = self._predict_keypoint_tokens(img, crops, categories, ask, mode)
            self.train(was_training)
            return preds
        first = lambda cat, kp: self.segment_tokenizer(render_conversation(cat, [kp], None, icfg, self.fmt))[0]
        convs, where = [], []
        for i, (cat, kps) in enumerate(zip(categories, ask)):
            # each later round's prompt follows the model's previous answer (as in training)
            for group in self._conversation_groups(kps, mode):
                rounds = [first(cat, group[0])] + [
                    self.segment_tokenizer.encode(round_segments(cat, kp, icfg, self.fmt, first=False).text)
                    for kp in group[1:]]
                self._check_length(cat, group, img.shape[1] + sum(len(r) for r in rounds))
                convs.append(Conversation(i, rounds))
                where.append((i, group))
        answers: list[dict[int, Answer]] = [{} for _ in crops]
        for (i, group), got in zip(where, self._decode(img, convs, decoding, distribution)):
            for kp, a in zip(group, got):
                answers[i][kp] = a
        if was_training:
            self.train()
        parse = parse_official if decoding == "official" else parse_coords
        return [self._to_prediction(c, cat, ans, parse) for c, cat, ans in zip(crops, categories, answers)]

    def _conversation_groups(self, kps: list[int], mode: str) -> list[list[int]]:
        """The keypoints of each conversation: "single" one per keypoint, "multi" groups of k in
        keypoint order."""
        if mode == "single":
            return [[kp] for kp in kps]
        k = self.cfg.instruction.k
        return [kps[j:j + k] for j in range(0, len(kps), k)]

    def _predict_keypoint_tokens(self, img: torch.Tensor, crops: list[CropResult], categories: list[Category],
                                 ask: list[list[int]], mode: str) -> list[Prediction]:
        """<KEYPOINT> answers: each conversation (one keypoint, or k of them in "multi" mode) is
        rendered whole, every round answered by the token, and prefilled in one pass of the
        engine (image and shared prefix once per instance); the decoder reads each keypoint off
        the hidden state at its token. No decoding steps and no answer distribution; confidence
        is NaN (the decoder gives a position, not a probability)."""
        icfg = self.cfg.instruction
        convs, where = [], []
        for i, (cat, kps) in enumerate(zip(categories, ask)):
            for group in self._conversation_groups(kps, mode):
                ids = self.segment_tokenizer(render_conversation(cat, group, np.zeros((len(group), 2)), icfg,
                                                                 self.fmt))[0]
                self._check_length(cat, group, img.shape[1] + len(ids), answers_included=True)
                convs.append(Conversation(i, [ids]))
                where.append((i, group))
        hidden = hidden_at_token(self.llm, img, convs, token_id=self.keypoint_token_id,
                                 pad_id=self.tokenizer.pad_token_id, embed=self.embed_text)
        norm = [np.full((c.num_keypoints, 2), np.nan) for c in categories]
        if hidden:
            xy = self.keypoint_head(torch.cat(hidden)).float().cpu().numpy()
            at = 0
            for i, group in where:
                norm[i][group] = xy[at:at + len(group)]
                at += len(group)
        preds = []
        for crop, cat, n, kps in zip(crops, categories, norm, ask):
            missing = {j: "not asked" for j in range(cat.num_keypoints) if j not in set(kps)}
            ok = ~np.isnan(n[:, 0])
            pts = np.full_like(n, np.nan)
            if ok.any():
                pts[ok] = crop.to_image(n[ok])
            texts = [format_coords(x, y, icfg.decimals) if ok[j] else "" for j, (x, y) in enumerate(n)]
            preds.append(Prediction(cat.keypoint_names, pts, np.full(cat.num_keypoints, np.nan), texts, missing))
        return preds

    def _check_length(self, cat: Category, group: list[int], prompt_tokens: int, answers_included: bool = False) -> None:
        """A conversation must fit the LLM's positions, answers included: a 50,000-character
        description would otherwise be decoded without a word and answer [0,0]."""
        limit = getattr(self.llm.config, "max_position_embeddings", None)
        need = prompt_tokens + (0 if answers_included else len(group) * self.cfg.max_new_tokens)
        if limit and need > limit:
            from capellm.errors import CapellmError

            names = ", ".join(f"'{cat.keypoints[k].name}'" for k in group)
            raise CapellmError(f"{cat.source}: the question for {names} of '{cat.name}' takes {need} tokens with "
                               f"the image and the answers, more than the LLM's {limit} positions; shorten its "
                               f"description")

    def _to_prediction(self, crop: CropResult, cat: Category, ans: dict[int, Answer], parse=parse_coords) -> Prediction:
        k = cat.num_keypoints
        norm = np.full((k, 2), np.nan)
        conf = np.zeros(k)
        texts = [""] * k
        missing: dict[int, str] = {}
        for i in range(k):
            if i not in ans:
                missing[i] = "not asked"
                continue
            a = ans[i]
            texts[i] = a.text
            conf[i] = a.confidence
            try:
                norm[i] = parse(a.text)
            except ParseError as e:
                missing[i] = str(e) if a.finished else f"{e} (no end marker within the token budget)"
        pts = np.full((k, 2), np.nan)
        ok = ~np.isnan(norm[:, 0])
        if ok.any():
            pts[ok] = crop.to_image(norm[ok])
        pred = Prediction(cat.keypoint_names, pts, conf, texts, missing)
        if any(a.dist is not None for a in ans.values()):
            _add_distribution(pred, crop, ans)
        return pred

    @torch.no_grad()
    def predict(self, image, category: Category, box=None, mode: str = "single",
                distribution: bool = False) -> Prediction:
        """Keypoints of `category` in `image` (path, PIL image, HxWx3 uint8 array or ImageSource),
        in the pixels of the image as displayed (after its EXIF orientation).

        box: [x, y, w, h] in those pixels, clipped to the image (BoxError if it misses it); None
        means the whole image. The prediction's `box` is the one used. distribution: also each
        keypoint's spread (pixels), expected and most probable position (see `predict_crops`).
        """
        source = ImageSource.of(image)
        box = clip_box(box if box is not None else [0, 0, *source.size], source.size)
        crop = read_crop(source, box, self.cfg.crop, category.num_keypoints)
        pred = self.predict_crops([crop], [category], mode=mode, distribution=distribution)[0]
        pred.box = box
        return pred

    # ------------------------------------------------------------------ checkpoints
    def _saved_prefixes(self) -> list[tuple[str, nn.Module, str]]:
        """(prefix, module, what) for each component: 'all' tensors, 'lora' only, or 'none'."""
        out = []
        for prefix, module, ccfg in (("vision.", self.vision, self.cfg.vision), ("llm.", self.llm, self.cfg.llm)):
            if ccfg.name_or_path == "random" or ccfg.mode == "full":
                out.append((prefix, module, "all"))
            elif ccfg.mode == "lora":
                out.append((prefix, module, "lora"))
        out.append(("projector.", self.projector, "all"))
        if self.keypoint_head is not None:
            out.append(("keypoint_head.", self.keypoint_head, "all"))
        return out

    def _trained(self):
        """(name, tensor) of what a checkpoint holds beyond the base models (tied weights once)."""
        seen: set[int] = set()
        for prefix, module, what in self._saved_prefixes():
            for name, t in module.state_dict().items():
                if what == "lora" and ".lora_" not in name:
                    continue
                ptr = t.untyped_storage().data_ptr()
                if ptr in seen:
                    continue
                seen.add(ptr)
                yield prefix + name, t

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint needs beyond the base models (tied weights stored once)."""
        return {k: t.detach().cpu().contiguous() for k, t in self._trained()}

    def load_trained_state_dict(self, state: dict[str, torch.Tensor], source: str = "") -> None:
        own = self.state_dict()
        state = _peft_names(state, own)
        unknown = [k for k in state if k not in own]
        if unknown:
            raise CheckpointError(f"{source}: {len(unknown)} tensors do not belong to this model "
                                  f"(another model's checkpoint?), e.g. {unknown[:3]}")
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise CheckpointError(f"{source}: tensor {k} has shape {tuple(v.shape)}, the model of its "
                                      f"config.yaml expects {tuple(own[k].shape)}")
        missing = [k for k, _ in self._trained() if k not in state]
        if missing:
            raise CheckpointError(f"{source}: {len(missing)} trained tensors are missing, e.g. {missing[:3]}")
        self.load_state_dict(state, strict=False)

    def config_dict(self) -> dict:
        d = to_dict(self.cfg)
        for c in ("vision", "llm"):
            d[c]["name_or_path"] = portable_path(d[c]["name_or_path"])
        if d["llm"]["tokenizer"] not in ("", "char"):
            d["llm"]["tokenizer"] = portable_path(d["llm"]["tokenizer"])
        return d

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config, trained tensors and tokenizer into `directory` (each file atomically)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (WEIGHTS_FILE + ".tmp")
        save_file(self.trained_state_dict(), str(tmp), metadata={"format": "pt", "capellm": "1"})
        tmp.replace(d / WEIGHTS_FILE)
        self.tokenizer.save_pretrained(str(d / TOKENIZER_DIR))
        if self.cfg.llm.mode == "lora" and self.cfg.llm.name_or_path != "random":
            self.save_llm_adapter(d / LLM_ADAPTER_DIR)
        atomic_write_text(d / CONFIG_FILE, yaml.safe_dump(self.config_dict(), sort_keys=False))

    def save_llm_adapter(self, directory: str | Path) -> None:
        """The LLM's LoRA as a PEFT adapter folder (adapter_config.json, adapter_model.safetensors):
        `PeftModel.from_pretrained(base_llm, directory)` puts it on the base LLM, and
        `.merge_and_unload()` folds it in. The encoder, projector and image tokens are not part
        of it: it is the language half of the model, for tools that work on LLM adapters."""
        from peft.utils import get_peft_model_state_dict

        d = Path(directory)
        tmp = d.with_name(d.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        cfg = copy.deepcopy(self.llm.peft_config[ADAPTER])
        cfg.base_model_name_or_path = portable_path(self.cfg.llm.name_or_path)
        cfg.task_type = "CAUSAL_LM"
        cfg.save_pretrained(str(tmp))
        state = get_peft_model_state_dict(self.llm, adapter_name=ADAPTER)
        save_file({f"base_model.model.{k}": v.detach().cpu().contiguous() for k, v in state.items()},
                  str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(d, ignore_errors=True)
        tmp.replace(d)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> "CapeLLM":
        """Load a checkpoint folder. dtype: the LLM's weights for inference ("bfloat16" halves
        them and uses the CPU's bf16 matrix units; see `set_inference_dtype`)."""
        d = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_DIR):
            if not (d / name).exists():
                raise CheckpointError(f"{d}: not a complete capellm checkpoint (no {name}; a model folder is "
                                      f"train.out_dir/model or a checkpoints/step-N folder)")
        try:
            data = yaml.safe_load((d / CONFIG_FILE).read_text())
        except yaml.YAMLError as e:
            raise CheckpointError(f"{d / CONFIG_FILE}: not valid YAML ({e})") from None
        cfg = from_dict(ModelConfig, data or {}, "model")
        from transformers import AutoTokenizer

        try:
            tok = ensure_pad_token(AutoTokenizer.from_pretrained(str(d / TOKENIZER_DIR)))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{d / TOKENIZER_DIR}: cannot load the tokenizer ({e})") from None
        try:
            state = load_file(str(d / WEIGHTS_FILE))
        except Exception as e:          # safetensors raises its own SafetensorError for damaged files
            raise CheckpointError(f"{d / WEIGHTS_FILE}: not a readable safetensors file, truncated or damaged "
                                  f"({type(e).__name__}: {e})") from None
        model = cls(cfg, tokenizer=tok)
        model.load_trained_state_dict(state, source=str(d / WEIGHTS_FILE))
        if device is not None:
            model.to(device)
        if dtype is not None:
            model.set_inference_dtype(dtype)
        model.eval()
        return model

    def set_inference_dtype(self, dtype: str | torch.dtype) -> None:
        """Cast the LLM (base weights and any adapters) to `dtype` for decoding; the encoder and
        projector keep theirs (the engine casts the image tokens). For inference only: training
        keeps float32 master weights (train.mixed_precision)."""
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise CheckpointError(f"inference dtype must be float32, bfloat16 or float16, got {dtype}")
        if self.cfg.llm.load_in_4bit:
            return                                  # quantised weights keep their own compute dtype
        self.llm.to(dtype)

    def describe(self) -> str:
        n_all = sum(p.numel() for p in self.parameters())
        n_train = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return (f"CapeLLM: vision {self.cfg.vision.name_or_path} ({self.cfg.vision.mode}), "
                f"LLM {self.cfg.llm.name_or_path} ({self.cfg.llm.mode}), {len(lora_modules(self))} LoRA layers, "
                f"{n_train / 1e6:.2f}M of {n_all / 1e6:.2f}M parameters trainable")


def _peft_names(state: dict[str, torch.Tensor], own: dict) -> dict[str, torch.Tensor]:
    """Tensor names of checkpoints written with capellm's own LoRA layers (before PEFT) in PEFT's
    names: `x.lora_A` -> `x.lora_A.default.weight`, `x.base.weight` -> `x.base_layer.weight`.
    A name is changed only where the old one is not the model's and the new one is."""
    out = {}
    for k, v in state.items():
        if k not in own:
            new = f"{k}.{ADAPTER}.weight" if k.endswith((".lora_A", ".lora_B")) else k.replace(".base.", ".base_layer.")
            k = new if new in own else k
        out[k] = v
    return out
