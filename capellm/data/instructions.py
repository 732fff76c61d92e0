"""Instructions: which keypoints each sample asks for, how the conversation reads, and its labels.

CapeLLM (Sec. 3.2-3.3) trains on multi-round visual question answering: each round asks for one
keypoint by name, gives its description as a reference, and the answer is "[x,y]" normalised to the
crop with 3 decimals. Design choices:

- Grouping (`plan_groups`): per instance the labelled keypoints are shuffled and cut into groups of
  k (default 4). The instance is repeated once per group, so every labelled keypoint is asked once
  an epoch; the last group is filled with random draws from the instance's other labelled points.
- The conversation is rendered as a list of `Segment`s, each with a role. Only `answer` segments
  (the coordinates and the end-of-answer marker) carry loss. Each segment is tokenised on its own
  and the ids are concatenated, so the label mask comes straight from the role spans and is exact
  for any tokenizer (re-tokenising substrings of a full prompt is how LLaVA-style code mis-masks
  Llama-3 prompts). Inference renders the very same segments up to an answer, so the prompt the
  model sees at test time is token-for-token the one it was trained on.
- `PromptFormat` holds the chat markers of an LLM family. We do not use the tokenizer's Jinja chat
  template: it cannot be split into role spans, and some insert dates or default system prompts.
- The authors' recipe is the `official` format with the `OFFICIAL_QUESTION`: plain text on a base
  LLM, reproduced character for character from their code (datasets/conversation.py and
  datasets/mp100.py of github.com/Junhojuno/CapeLLM): the tokenizer's begin-of-text token, the
  image tokens, a newline, then per round
      User: Where is the {keypoint} of this object in this image? Please provide its coordinates.
      Reference: {description}
      Assistant: [0.123,0.456]</s>
  with `</s>` as literal text (not Llama 3's end token) and the next round's "User:" right after
  it. Their decoding prompt ends at "Assistant:", so the answer span is " [x,y]</s>" with its
  leading space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from capellm.config import OFFICIAL_QUESTION, InstructionConfig  # noqa: F401 (OFFICIAL_QUESTION: re-exported)
from capellm.data.categories import Category

IGNORE_INDEX = -100  # label of every token that carries no loss (torch's cross-entropy default)

# ---------------------------------------------------------------------------------------------
# Coordinates as text
# ---------------------------------------------------------------------------------------------

_COORD_RE = re.compile(r"^\s*\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]")


def format_coords(x: float, y: float, decimals: int = 3) -> str:
    """'[0.123,0.456]': normalised crop coordinates, clamped to [0, 1] (Sec. 3.2)."""
    x = min(max(float(x), 0.0), 1.0) + 0.0  # + 0.0 turns -0.0 into 0.0
    y = min(max(float(y), 0.0), 1.0) + 0.0
    return f"[{x:.{decimals}f},{y:.{decimals}f}]"


# The paper's appendix instructions (B.1); the wording is ours.
DIVERSE_QUESTIONS = (
    "Find the {keypoint} of the {object}.",
    "Locate the {keypoint} of the {object} in the picture.",
    "Give the position of the {keypoint} of the {object}.",
    "What are the coordinates of the {keypoint} of the {object}?",
    "Point to the {keypoint} of the {object} in this image.",
    "In this image, where can the {keypoint} of the {object} be found?",
    "Show where the {keypoint} of the {object} is.",
)
CONVERSATION_OUTLINE = ("This is a conversation about the keypoints of one object in the image. Each question "
                        "names one keypoint; the answer is its position as [x,y], both between 0 and 1, from the "
                        "top left corner of the image. The questions come one after another.")
OBJECT_QUESTION = "What is the object in this image?"     # the step-by-step instruction's first round

# The answer for a keypoint that is not in the picture (models trained with
# instruction.not_visible_rate > 0): fixed text, starting like a coordinate answer.
NOT_VISIBLE = "[none]"
# the answer of every keypoint round under `instruction.answer: keypoint_token` (App. B.2): one
# special token, whose hidden state a decoder reads (x, y) from (capellm.model.keypoint_head)
KEYPOINT_TOKEN = "<KEYPOINT>"


class ParseError(ValueError):
    """An answer that is not a coordinate pair."""


class NotVisible(ParseError):
    """The model answered that the keypoint is not visible (`NOT_VISIBLE`)."""


_OFFICIAL_NUMBER_RE = re.compile(r"0\.\d+")


def parse_official(text: str) -> tuple[float, float]:
    r"""The authors' parser (utils/valid_utils.py, decode_output): the first two matches of
    `0\.\d+` in the answer are x and y; a missing y is 0, no match at all is (0, 0). It never
    fails, and it cannot read 1.000."""
    found = _OFFICIAL_NUMBER_RE.findall(text)
    return (float(found[0]) if found else 0.0), (float(found[1]) if len(found) > 1 else 0.0)


def parse_coords(text: str) -> tuple[float, float]:
    """Inverse of `format_coords`; raises ParseError with the reason on anything else
    (NotVisible for the `NOT_VISIBLE` answer)."""
    if text.strip() == NOT_VISIBLE:
        raise NotVisible("not visible")
    m = _COORD_RE.match(text)
    if m is None:
        raise ParseError(f"answer {text!r} is not of the form [x,y]")
    x, y = float(m.group(1)), float(m.group(2))
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ParseError(f"answer {text!r} lies outside [0, 1]")
    return x, y


# ---------------------------------------------------------------------------------------------
# Chat markers per LLM family
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptFormat:
    """The strings around user and assistant turns. `answer_end` ends every answer and carries loss,
    so the model learns to stop; decoding stops at it."""

    name: str
    prefix: str = ""         # once, before the first turn (after the image tokens)
    user_start: str = ""
    user_end: str = ""
    assistant_start: str = ""
    answer_end: str = ""     # end-of-answer marker, part of the answer span
    turn_sep: str = ""       # between an answer and the next user turn (chatml puts a newline)
    image_prefix: str = ""   # before the image tokens (the official format: the begin-of-text token)
    answer_start: str = ""   # opens every answer, part of the answer span (official: a space)

    def markers(self) -> tuple[str, ...]:
        """The multi-character strings around turns (a tokenizer trained for this format can hold
        each as one token; the answer's own strings are left out, their tokens are the grammar's)."""
        found = (self.image_prefix, self.prefix, self.user_start, self.user_end, self.assistant_start, self.turn_sep)
        return tuple(dict.fromkeys(m for m in found if len(m) > 1))

    def fused(self, decimals: int, digits: int = 1) -> tuple[str, ...]:
        """The fixed strings a tokenizer trained for this format may also hold as one token each
        (`model.llm.fuse_fixed_tokens`): the end of a question with the assistant marker after it
        ("\nA:"), each coordinate's integer digit with the characters around it ("[0.", ",0."),
        and, where numbers are spelt digit by digit at the end (`digits` per number token), the
        last digit with the closing bracket ("7]"). Every digit value has its token, so a fused
        digit stays a choice among ten tokens and the answer grammar holds. A k = 4 conversation
        of the demo is 24 tokens shorter."""
        joined = self.user_end + self.assistant_start
        fused = [joined] if len(joined) > 1 else []
        if decimals > 0:
            fused += [f"{c}{d}." for c in "[," for d in "0123456789"]
            if (decimals % digits or digits) == 1:
                fused += [f"{d}]" for d in "0123456789"]
        return tuple(fused)

    @classmethod
    def preset(cls, name: str, tokenizer=None) -> "PromptFormat":
        if name == "auto":
            name = detect_format(tokenizer)
        if name == "chatml":  # SmolLM2, Qwen
            return cls("chatml", "", "<|im_start|>user\n", "<|im_end|>\n", "<|im_start|>assistant\n",
                       "<|im_end|>", "\n")
        if name == "llama3":
            return cls("llama3", "<|begin_of_text|>", "<|start_header_id|>user<|end_header_id|>\n\n",
                       "<|eot_id|>", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>")
        if name == "mistral":  # Mistral-7B-Instruct v0.3
            return cls("mistral", "<s>", "[INST] ", " [/INST]", "", "</s>")
        if name == "vicuna":  # Vicuna v1.5, as in LLaVA
            return cls("vicuna", "<s>", "USER: ", " ", "ASSISTANT: ", "</s>")
        if name == "official":  # the authors' plain-text recipe on a base LLM (module docstring)
            bos = getattr(tokenizer, "bos_token", None) or ""
            return cls("official", "\n", "User: ", "\n", "Assistant:", "</s>", "", image_prefix=bos,
                       answer_start=" ")
        if name == "plain":  # tokenizers without chat markers (our tiny test tokenizer, base LMs)
            eos = getattr(tokenizer, "eos_token", None) or "</s>"
            # "A:" without a trailing space, so that byte-level BPE sees "[" at a word start
            # whether the answer is tokenised alone or with its prompt
            return cls("plain", "", "Q: ", "\n", "A:", eos)
        raise ValueError(f"unknown prompt format '{name}' (auto, chatml, llama3, mistral, vicuna, plain, official)")


def tokenizer_markers(llm, decimals: int) -> tuple[str, ...]:
    """The strings a BPE tokenizer trained for LLMConfig `llm` holds as one token each: its prompt
    format's markers, and with `llm.fuse_fixed_tokens` the fixed strings around the answers of
    `decimals` decimals (PromptFormat.fused)."""
    fmt = PromptFormat.preset(llm.prompt_format)
    if not llm.fuse_fixed_tokens:
        return fmt.markers()
    return fmt.markers() + fmt.fused(decimals, llm.bpe()[1])


def detect_format(tokenizer) -> str:
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    if "<|im_start|>" in vocab:
        return "chatml"
    if "<|start_header_id|>" in vocab:
        return "llama3"
    if "[INST]" in vocab:
        return "mistral"
    return "plain"


# ---------------------------------------------------------------------------------------------
# Which keypoints a sample asks for
# ---------------------------------------------------------------------------------------------


def plan_groups(labelled: np.ndarray, k: int, rng: np.random.Generator) -> list[list[int]]:
    """Cut an instance's labelled keypoint indices into groups of k (Sec. 3.3).

    labelled: int [L] indices of keypoints that may be asked. Every index appears in exactly one
    group except for the fill of the last group, drawn from the other labelled points. An instance
    with fewer than k labelled points gives one group of all of them.
    """
    order = list(rng.permutation(np.asarray(labelled, dtype=np.int64)))
    if not order:
        return []
    groups = [order[i:i + k] for i in range(0, len(order), k)]
    last = groups[-1]
    if len(last) < k and len(order) > len(last):
        others = [i for i in order if i not in last]
        need = min(k - len(last), len(others))
        last.extend(rng.choice(others, size=need, replace=False).tolist())
    return [[int(i) for i in g] for g in groups]


# ---------------------------------------------------------------------------------------------
# The conversation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    role: str   # "prompt" (no loss), "answer" (next-token loss) or "keypoint" (a <KEYPOINT> answer:
    text: str   # no next-token loss, its coordinates carry the loss)


def _object_words(category: Category, cfg: InstructionConfig) -> str:
    if not cfg.category_name:
        return "object"
    return category.name.replace("_", " ")


def _opening(category: Category, cfg: InstructionConfig) -> list[str]:
    """Lines that open the first user turn: the outline and the keypoint list, where enabled."""
    lines = [cfg.outline] if cfg.outline else []
    if cfg.keypoint_list:
        lines.append(f"The {_object_words(category, cfg)} has these keypoints: {', '.join(category.keypoint_names)}.")
    return lines


def question_text(category: Category, kp: int, cfg: InstructionConfig, first: bool,
                  rng: np.random.Generator | None = None) -> str:
    """The user turn asking for keypoint `kp` (first: it opens the conversation). With rng and
    paraphrases configured, the question's wording is drawn from (question, *questions)."""
    obj = _object_words(category, cfg)
    lines = _opening(category, cfg) if first else []
    template = cfg.question
    if cfg.questions and rng is not None:
        options = (cfg.question, *cfg.questions)
        template = options[int(rng.integers(len(options)))]
    lines.append(template.format(keypoint=category.keypoints[kp].name, object=obj))
    desc = category.keypoints[kp].description
    if cfg.description and desc:
        lines.append(f"Reference: {desc}")
    return "\n".join(lines)


def render_conversation(category: Category, kps: list[int], coords: np.ndarray | None,
                        cfg: InstructionConfig, fmt: PromptFormat,
                        rng: np.random.Generator | None = None) -> list[Segment]:
    """Segments of a multi-round conversation asking for `kps` in order.

    coords: float [len(kps), 2] normalised answers, or None to render only up to (and including)
    the assistant marker of the first keypoint's round, i.e. the prompt for decoding one keypoint.
    A NaN row is answered `NOT_VISIBLE`. With cfg.answer "keypoint_token" every round is answered
    `KEYPOINT_TOKEN` (a "keypoint" segment; coords give only the number of rounds). With
    cfg.step_by_step the conversation first asks what the object is, answered with the category's
    name (given at inference: the user names it).
    rng: training draws the question wording per round (cfg.questions); None asks `question`.
    """
    segs = [Segment("prompt", fmt.prefix)] if fmt.prefix else []
    opened = False
    if cfg.step_by_step:
        text = "\n".join([*_opening(category, cfg), OBJECT_QUESTION])
        segs.append(user_turn(text, fmt, first=True))
        segs.append(Segment("answer", fmt.answer_start + category.name.replace("_", " ") + fmt.answer_end))
        opened = True
    for r, kp in enumerate(kps):
        segs.append(round_segments(category, kp, cfg, fmt, first=(r == 0 and not opened), rng=rng))
        if coords is None:
            break
        if cfg.answer == "keypoint_token":
            segs.append(Segment("keypoint", fmt.answer_start + KEYPOINT_TOKEN + fmt.answer_end))
            continue
        x, y = coords[r]
        text = NOT_VISIBLE if np.isnan(x) or np.isnan(y) else format_coords(x, y, cfg.decimals)
        segs.append(Segment("answer", fmt.answer_start + text + fmt.answer_end))
    return segs


def user_turn(text: str, fmt: PromptFormat, first: bool) -> Segment:
    """A user turn and the assistant marker after it (after an answer: the turn separator first)."""
    sep = "" if first else fmt.turn_sep
    return Segment("prompt", sep + fmt.user_start + text + fmt.user_end + fmt.assistant_start)


def round_segments(category: Category, kp: int, cfg: InstructionConfig, fmt: PromptFormat,
                   first: bool, rng: np.random.Generator | None = None) -> Segment:
    """The prompt segment of one round (for multi-round decoding, appended after an answer)."""
    return user_turn(question_text(category, kp, cfg, first=first, rng=rng), fmt, first)


def instruction_corpus(categories: list[Category], cfg: InstructionConfig) -> list[str]:
    """Texts to train a small tokenizer on: every question of every category, and coordinates."""
    texts = [c.name.replace("_", " ") for c in categories]
    for c in categories:
        texts.extend(question_text(c, i, cfg, first=(i == 0)) for i in range(c.num_keypoints))
    texts.extend(format_coords(i / 97, 1 - i / 97, cfg.decimals) for i in range(98))
    if cfg.not_visible_rate > 0:
        texts.append(NOT_VISIBLE)
    for q in cfg.questions:
        texts.extend(q.format(keypoint=kp.name, object=_object_words(c, cfg)) for c in categories for kp in c.keypoints)
    if cfg.step_by_step:
        texts.append(OBJECT_QUESTION)
    return texts


# ---------------------------------------------------------------------------------------------
# Tokens and labels
# ---------------------------------------------------------------------------------------------


class SegmentTokenizer:
    """Tokenises segments one by one, with a cache (prompts repeat across samples)."""

    def __init__(self, tokenizer, cache_size: int = 100_000):
        self.tokenizer = tokenizer
        self._cache: dict[str, list[int]] = {}
        self._cache_size = cache_size

    def encode(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(self._cache) < self._cache_size:
                self._cache[text] = ids
        return ids

    def __call__(self, segments: list[Segment]) -> tuple[list[int], list[int]]:
        """input_ids and labels: labels equal the ids inside answer spans, IGNORE_INDEX elsewhere."""
        ids: list[int] = []
        labels: list[int] = []
        for s in segments:
            t = self.encode(s.text)
            ids.extend(t)
            labels.extend(t if s.role == "answer" else [IGNORE_INDEX] * len(t))
        return ids, labels


@dataclass
class Example:
    """One training sample before collation."""

    pixel_values: "object"       # torch.Tensor [3, S, S]
    input_ids: list[int]
    labels: list[int]
    meta: dict = field(default_factory=dict)
