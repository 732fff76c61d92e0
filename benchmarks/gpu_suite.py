"""The paper's configuration on one GPU: training and decoding at the real shapes, in one run.

Prepared for a GPU session (no network; about 8 minutes on an H200, --budget-s stops it sooner):
random weights built from the configurations of Llama-3.1-8B (and Llama-3.2-1B) and DINOv2-L/14,
the bases in bf16, rank-8 LoRA on query and value of both and the projector in float32 (as the
`paper-*` presets train), 224 px crops (256 image tokens), a k = 4 conversation of --text-tokens
text tokens (350: the Llama 3 chat conversation of an MP-100 instance with descriptions, about
1,577 characters on average; docs/hardware.md), a sequence of about 600 tokens.

train   per LLM shape, micro-batch 1, 4 and 8, gradient checkpointing off and on: optimiser steps
        and samples a second, peak GPU memory, model FLOPs utilisation. The step is
        capellm.train's (bf16 autocast, forward, backward, gradient clipping, fused AdamW) on
        synthetic token ids of the real lengths: a step's cost depends on the shapes alone.
decode  8B shapes, inference (no LoRA wrappers): capellm's engine on one 17-keypoint instance
        (002_horse_body) at a time and on a large batch, Hugging Face batched `generate` on the
        same inputs (benchmarks/decode.py's (b)), and the time one MP-100 test split (2,000
        instances) would take at the large batch. The prompts come from a BPE tokenizer trained
        on the MP-100 instructions that groups digits as Llama 3 does (Llama 3's own is not
        available offline; the vocabulary keeps Llama 3's 128,256 rows, so the output head costs
        what it costs). With random weights HF `generate` is held to the answer template's
        length (as in benchmarks/decode.py); only the engine's answers are sure to parse.

Model FLOPs of a training step (what the utilisation counts; recomputation under gradient
checkpointing is not counted, as is the custom): per component, forward 2 x (matrix-product
weights) x tokens plus 4 x layers x tokens^2 x width for attention, and the output head on the
answer tokens; the frozen bases' backward computes input gradients only (as much again as the
forward, twice for attention), LoRA's weight gradients are left out (under 0.1 %). The
utilisation is given against an 8192^3 bf16 matrix product measured in the same run and, on
H100 / H200, against the 989 TFLOP/s of the data sheet.

    python benchmarks/gpu_suite.py --out runs/gpu          # on a GPU: gpu_suite.json + gpu_suite.log
    python benchmarks/gpu_suite.py --dry-run --out /tmp/g  # CPU, tiny shapes (the test suite runs it)

Results are written after every measurement (atomically), so a run stopped at its limit keeps
what it measured. docs/hardware.md and docs/performance.md quote the figures of a real run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.decode import (CATEGORIES, DINOV2_L14_SHAPE, LLAMA31_8B_SHAPE, build_in_bf16,  # noqa: E402
                               engine, hf_batch, make_crops, parses, sync, timed)

LLAMA32_1B_SHAPE = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192,
                    "vocab_size": 128256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
                    "rope_theta": 500000.0, "tie_word_embeddings": True}
# the dry run: the shapes of the tiny test preset at 64 px
TINY = {"llm": {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 128, "max_position_embeddings": 2048},
        "vision": {"model_type": "dinov2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "intermediate_size": 128, "image_size": 64, "patch_size": 8}}
DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12}      # dense bf16 FLOP/s, SXM data sheets
SPLIT_INSTANCES = 2000                                 # one MP-100 test split, about
CATEGORY = "002_horse_body"                            # 17 keypoints
ANSWER_TOKENS = 10                                     # "[0.123,0.456]" + end marker in Llama 3's tokens


class Report:
    """The JSON result and the log, both rewritten as results come in."""

    def __init__(self, out: Path, meta: dict):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.data = {"meta": meta, "train": [], "decode": {}, "skipped": []}
        self.save()

    def log(self, msg: str) -> None:
        print(msg, flush=True)
        with (self.out / "gpu_suite.log").open("a", encoding="utf-8") as f:
            f.write(msg + "\n")

    def save(self) -> None:
        from capellm.utils import atomic_write_json

        atomic_write_json(self.out / "gpu_suite.json", self.data)


def environment(device: torch.device, argv: list[str]) -> dict:
    import transformers

    meta = {"command": "python benchmarks/gpu_suite.py " + " ".join(argv), "dry_run": "--dry-run" in argv,
            "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    with contextlib.suppress(ImportError):
        import peft

        meta["peft"] = peft.__version__
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        meta["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip() or None
    if device.type == "cuda":
        meta["device"] = torch.cuda.get_device_name(device)
        meta["cuda"] = torch.version.cuda
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            meta["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30).stdout.strip() or None
    else:
        from benchmarks.decode import hardware

        meta["device"] = hardware(device)
    return meta


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def paper_tokenizer(vocab: int):
    """A BPE tokenizer trained on the `paper-l` instructions of every MP-100 category, numbers in
    groups of up to 3 digits as Llama 3 spells them (an answer: 4 decoding steps, 12 tokens)."""
    from capellm.config import preset
    from capellm.data.categories import load_category
    from capellm.data.instructions import instruction_corpus, tokenizer_markers
    from capellm.model.language_model import build_tokenizer

    cfg = preset("paper-l").model
    cats = [load_category(p) for p in sorted(CATEGORIES.glob("*.yaml"))]
    cfg.llm.tokenizer = f"bpe:{vocab}:3"
    return build_tokenizer(cfg.llm, instruction_corpus(cats, cfg.instruction),
                           tokenizer_markers(cfg.llm, cfg.instruction.decimals))


def build(llm_shape: dict, vision_shape: dict, tokenizer, device: torch.device, lora: bool):
    """A `paper-l` CapeLLM of these shapes with random weights, its bases made in bf16 on the
    device; with `lora`, the adapters and the projector (what trains) in float32."""
    from capellm.config import preset

    cfg = preset("paper-l").model
    cfg.vision.name_or_path, cfg.vision.random_config = "random", dict(vision_shape)
    cfg.llm.name_or_path, cfg.llm.random_config = "random", dict(llm_shape)
    cfg.crop.input_size = vision_shape["image_size"]
    cfg.vision.mode = cfg.llm.mode = "lora" if lora else "frozen"
    if not lora:
        cfg.projector.mode = "frozen"
    torch.manual_seed(0)
    model = build_in_bf16(cfg, tokenizer, device)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    return model


def release() -> None:
    """Give back the GPU memory of what the caller has deleted."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def synthetic_batch(model, batch: int, text_tokens: int, device: torch.device) -> dict:
    """Random ids of a k = 4 conversation: `text_tokens` text tokens, each round ending in an
    answer of ANSWER_TOKENS tokens (the loss's), after the image tokens."""
    k = model.cfg.instruction.k
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(model.tokenizer), (batch, text_tokens), generator=g)
    labels = torch.full_like(ids, -100)
    for r in range(1, k + 1):
        end = r * text_tokens // k
        labels[:, end - ANSWER_TOKENS:end] = ids[:, end - ANSWER_TOKENS:end]
    side = model.cfg.crop.input_size
    return {"pixel_values": torch.randn(batch, 3, side, side, generator=g).to(device),
            "input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": labels.to(device)}


def _linear_weights(module) -> int:
    return sum(m.weight.numel() for m in module.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))


def train_flops(model, batch: int, text_tokens: int) -> dict:
    """Model FLOPs of one training step (module docstring), by part: matrix products of the
    weights ("dense"), attention, the output head; "total" is their sum."""
    llm, head = model.llm, model.llm.get_output_embeddings()
    v_cfg, l_cfg = model.vision.backbone.config, llm.config
    n_img = model.vision.num_tokens(model.cfg.crop.input_size)
    t_vis = n_img + 1                                                   # patches + CLS
    t_llm = n_img + text_tokens
    dense = 2 * _linear_weights(model.vision) * t_vis + \
        2 * (_linear_weights(llm) - head.weight.numel() + _linear_weights(model.projector)) * t_llm
    attention = 4 * (v_cfg.num_hidden_layers * t_vis ** 2 * v_cfg.hidden_size
                     + l_cfg.num_hidden_layers * t_llm ** 2 * l_cfg.hidden_size)
    out_head = 2 * head.weight.numel() * model.cfg.instruction.k * ANSWER_TOKENS
    # forward + backward: input gradients of the frozen bases (as much again), attention twice
    parts = {"dense": 2 * batch * dense, "attention": 3 * batch * attention, "head": 2 * batch * out_head}
    return {**parts, "total": sum(parts.values())}


def time_training(model, batch: dict, device: torch.device, warmup: int, steps: int) -> dict:
    """Seconds per optimiser step of capellm.train's step on `batch`, and peak memory."""
    from capellm.train import make_optimizer

    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(model.param_groups(5e-4, 0.01), argparse.Namespace(lr=5e-4, betas=(0.9, 0.999)))
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    sec = (time.perf_counter() - t0) / steps
    out = {"step_s": sec}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        out["reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2 ** 30
    return out


def matmul_peak(device: torch.device, n: int) -> float:
    """FLOP/s of an n^3 bf16 matrix product (mean of 10 after 3 warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 10 * 2 * n ** 3 / (time.perf_counter() - t0)


def train_section(rep: Report, name: str, llm_shape: dict, vision_shape: dict, tokenizer, device, args,
                  peaks: dict, deadline: float) -> None:
    from capellm.model.capellm import set_activation_checkpointing

    t0 = time.perf_counter()
    model = build(llm_shape, vision_shape, tokenizer, device, lora=True)
    rep.log(f"[train {name}] built in {time.perf_counter() - t0:.1f} s: {model.describe()}")
    for ckpt in (False, True):
        set_activation_checkpointing(model.llm, ckpt)
        for mb in args.micro_batches:
            row = {"llm": name, "micro_batch": mb, "gradient_checkpointing": ckpt, "text_tokens": args.text_tokens,
                   "image_tokens": model.vision.num_tokens(model.cfg.crop.input_size)}
            if time.perf_counter() > deadline:
                rep.data["skipped"].append({**row, "why": "budget"})
                rep.save()
                continue
            batch = synthetic_batch(model, mb, args.text_tokens, device)
            try:
                m = time_training(model, batch, device, args.warmup, args.steps)
            except torch.cuda.OutOfMemoryError:
                row["oom"] = True
                model.zero_grad(set_to_none=True)               # a backward cut short leaves gradients
                release()
                rep.log(f"[train {name}] micro-batch {mb}, checkpointing {ckpt}: out of memory")
            else:
                flops = train_flops(model, mb, args.text_tokens)["total"]
                row.update(m, steps_per_s=1 / m["step_s"], samples_per_s=mb / m["step_s"], model_flops=flops,
                           tflops_per_s=flops / m["step_s"] / 1e12,
                           **{f"mfu_{k}": flops / m["step_s"] / v for k, v in peaks.items()})
                rep.log(f"[train {name}] micro-batch {mb}, checkpointing {ckpt}: {row['steps_per_s']:.2f} steps/s, "
                        f"{row['samples_per_s']:.2f} samples/s, {row['tflops_per_s']:.0f} TFLOP/s, "
                        + ", ".join(f"MFU {100 * row[f'mfu_{k}']:.1f} % ({k})" for k in peaks)
                        + (f", peak {row['peak_gib']:.1f} GiB" if "peak_gib" in row else ""))
            rep.data["train"].append(row)
            rep.save()


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def decode_section(rep: Report, tokenizer, device, args, deadline: float) -> None:
    from capellm.data.categories import load_category

    llm_shape, vision_shape = (TINY["llm"], TINY["vision"]) if args.dry_run else (LLAMA31_8B_SHAPE, DINOV2_L14_SHAPE)
    t0 = time.perf_counter()
    model = build(llm_shape, vision_shape, tokenizer, device, lora=False).eval()
    category = load_category(CATEGORIES / f"{CATEGORY}.yaml")
    k = category.num_keypoints
    grammar = model.answer_grammar()
    d = rep.data["decode"]
    d.update(category=CATEGORY, keypoints=k, grammar_slots=len(grammar.slots) if grammar else None,
             answer_template_tokens=grammar.template_length() if grammar else None)
    rep.log(f"[decode] built in {time.perf_counter() - t0:.1f} s; {k} keypoints, answer template "
            f"{d['answer_template_tokens']} tokens")
    crops = make_crops(model, category, args.instances)
    engine(model, crops[:1], category, 1)                       # warm-up
    hf_batch(model, crops[:1], category)
    spent = {"engine": [0.0, []], "hf_batch": [0.0, []]}
    for i in range(args.instances):                             # interleaved, instance by instance
        for name, fn in (("engine", lambda c: engine(model, c, category, 1)),
                         ("hf_batch", lambda c: hf_batch(model, c, category))):
            s, texts = timed(lambda: fn(crops[i:i + 1]), device)
            spent[name][0] += s
            spent[name][1] += texts
    for name, (s, _) in spent.items():
        d[f"{name}_batch1_ms_per_instance"] = 1000 * s / args.instances
        d[f"{name}_batch1_keypoints_per_s"] = args.instances * k / s
    d["engine_parsed"] = sum(map(parses, spent["engine"][1])) / len(spent["engine"][1])
    d["batch1_speedup_engine_over_hf"] = spent["hf_batch"][0] / spent["engine"][0]
    rep.log(f"[decode] batch 1: engine {d['engine_batch1_ms_per_instance']:.1f} ms / instance, HF batched generate "
            f"{d['hf_batch_batch1_ms_per_instance']:.1f} ms ({d['batch1_speedup_engine_over_hf']:.2f}x)")
    rep.save()
    if time.perf_counter() > deadline:
        rep.data["skipped"].append({"decode": f"batch {args.big_batch}", "why": "budget"})
    else:
        big = make_crops(model, category, args.big_batch, seed=1)
        engine(model, big[:2], category, 2)                     # warm-up of the batched path
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        s, texts = timed(lambda: engine(model, big, category, args.big_batch), device)
        d.update(big_batch=args.big_batch, big_batch_keypoints_per_s=args.big_batch * k / s,
                 big_batch_ms_per_instance=1000 * s / args.big_batch, big_batch_parsed=sum(map(parses, texts)) / len(texts),
                 split_seconds=SPLIT_INSTANCES * s / args.big_batch)
        if device.type == "cuda":
            d["big_batch_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        rep.log(f"[decode] batch {args.big_batch}: {d['big_batch_keypoints_per_s']:.0f} keypoints/s; one test split of "
                f"{SPLIT_INSTANCES} instances in {d['split_seconds']:.0f} s")
    rep.save()


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/gpu", help="folder for gpu_suite.json and gpu_suite.log")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (tests)")
    p.add_argument("--sections", default="train8b,decode,train1b", help="comma list, run in this order")
    p.add_argument("--budget-s", type=float, default=420.0, help="start nothing new after this many seconds")
    p.add_argument("--text-tokens", type=int, default=350)
    p.add_argument("--micro-batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed optimiser steps per configuration")
    p.add_argument("--instances", type=int, default=4, help="decoding at batch 1: instances, one at a time")
    p.add_argument("--big-batch", type=int, default=64, help="decoding: instances in one engine call")
    p.add_argument("--bpe-vocab", type=int, default=8000)
    args = p.parse_args(argv)
    if args.dry_run:
        args.text_tokens, args.micro_batches, args.warmup, args.steps = 40, [1, 2], 1, 1
        args.instances, args.big_batch, args.bpe_vocab = 1, 2, 2000
    sections = args.sections.split(",")
    if unknown := sorted(set(sections) - {"train8b", "decode", "train1b"}):
        p.error(f"unknown sections {unknown}; known: train8b, decode, train1b")
    start = time.perf_counter()
    deadline = start + args.budget_s
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("needs CUDA (or --dry-run)")
    rep = Report(Path(args.out), environment(device, argv))
    rep.log(f"gpu_suite on {rep.data['meta']['device']}: torch {torch.__version__}, "
            f"transformers {rep.data['meta']['transformers']}")
    peaks = {"measured": matmul_peak(device, 512 if args.dry_run else 8192)}
    name = rep.data["meta"]["device"]
    peaks.update({k: v for k, v in DATASHEET_BF16.items() if device.type == "cuda" and k in name})
    rep.data["meta"]["peak_flops"] = peaks
    rep.log("bf16 matrix product: " + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in peaks.items()))
    tokenizer = paper_tokenizer(args.bpe_vocab)
    shapes = {"train8b": ("llama-3.1-8b", LLAMA31_8B_SHAPE), "train1b": ("llama-3.2-1b", LLAMA32_1B_SHAPE)}
    for section in sections:
        if time.perf_counter() > deadline:
            rep.data["skipped"].append({"section": section, "why": "budget"})
            continue
        try:        # a section that breaks (a first run on new hardware) leaves the others to run
            if section == "decode":
                decode_section(rep, tokenizer, device, args, deadline)
            else:
                label, shape = shapes[section]
                llm, vision = (TINY["llm"], TINY["vision"]) if args.dry_run else (shape, DINOV2_L14_SHAPE)
                train_section(rep, label, llm, vision, tokenizer, device, args, peaks, deadline)
        except Exception as e:                                      # noqa: BLE001 (recorded, not hidden)
            rep.data.setdefault("errors", []).append({"section": section, "error": repr(e),
                                                      "traceback": traceback.format_exc()})
            rep.log(f"[{section}] failed: {e!r}")
            rep.save()
        release()                                    # the section's models, also where it failed
    rep.data["meta"]["seconds"] = round(time.perf_counter() - start, 1)
    rep.save()
    rep.log(f"done in {rep.data['meta']['seconds']} s: {rep.out / 'gpu_suite.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
