"""Keypoint decoding speed: the official CapeLLM decoding, a fair Hugging Face baseline, and
capellm's engine, side by side in one process on the same model and the same inputs.

(a) reference  The official code's decoding: every keypoint a separate prompt (batch 1) carrying
               its own copy of the image tokens, HF `generate` for a fixed 13 new tokens, and the
               vision encoder run again at every generated token. Emulated faithfully: a forward
               pre-hook on the LLM re-encodes the image at every decoding step after the prefill
               (whose image tokens come from one encoder pass before `generate`), i.e. 13 encoder
               passes per keypoint, their result discarded as the official loop discards it.
(b) hf-batch   A fair modern baseline: per instance the image is encoded once, and HF greedy
               `generate` answers the K prompts of the instance as ONE left-padded batch
               ([pad][image][prompt] as inputs_embeds), generating the answer template's length
               (14 tokens with SmolLM2: "[0.123,0.456]" and the end marker).
(c) engine     `CapeLLM.predict_crops` (capellm.inference): image + shared prompt prefix prefilled
               once per instance, coordinate grammar, fixed tokens fed without decoding steps. Run
               at one instance per call (the same granularity as (b)) and at all instances in one
               call; single-keypoint prompts (as (a) and (b)) and multi-round (k per conversation).
(d) <KEYPOINT> The paper's appendix variant (App. B.2): the same base weights answering with a
               <KEYPOINT> token whose hidden state a small decoder (random here) maps to (x, y):
               one forward pass per conversation, no decoding steps. Its answers are positions by
               construction; the row measures speed only.

CPU (default): the real SmolLM2-135M-Instruct weights (preset `smollm2`, GGUF de-quantised to fp32)
with a DINOv2-S/14-shaped random encoder at 224 px (256 image tokens).
`--gpu`: Llama-3.1-8B and DINOv2-L/14 shapes with random weights in bf16 on CUDA (SmolLM2's
tokenizer and chat format stand in for Llama 3's, which is not available offline; the vocabulary
keeps Llama 3's 128,256 rows so the output head costs what it costs), batch-1 latency per
instance and the engine's throughput at a large batch.

The prompts ask for the K = 17 keypoints of an MP-100 category (002_horse_body by default) on
random crops. Times are wall-clock after one warm-up call of each method; the methods that go
instance by instance are timed interleaved, so that a change in machine load hits them alike.

    python benchmarks/decode.py --ablations --breakdown   # CPU, 3 instances (docs/performance.md)
    python benchmarks/decode.py --gpu --breakdown         # CUDA (not run yet: no GPU so far)
    python benchmarks/decode.py --bf16                    # CPU, also the engine with bf16 weights
    python benchmarks/decode.py --accuracy runs/demo/model  # float32 vs bf16 answers of the demo model
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from capellm.data.categories import Category, load_category
from capellm.data.instructions import ParseError, parse_coords, render_conversation
from capellm.model.capellm import CapeLLM

CATEGORIES = Path(__file__).resolve().parents[1] / "capellm" / "categories" / "mp100"
REFERENCE_NEW_TOKENS = 13                     # what the official code asks `generate` for

LLAMA31_8B_SHAPE = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                    "vocab_size": 128256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
                    "rope_theta": 500000.0, "tie_word_embeddings": False}
DINOV2_L14_SHAPE = {"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24,
                    "num_attention_heads": 16, "intermediate_size": 4096, "image_size": 224,
                    "patch_size": 14}


# ---------------------------------------------------------------------------------------------
# Model and inputs
# ---------------------------------------------------------------------------------------------


def build_model(gpu: bool, answer: str = "text") -> CapeLLM:
    """answer "keypoint_token": the same base weights, answering with a <KEYPOINT> token read by
    a (random) decoder (App. B.2): one forward pass per conversation instead of decoding."""
    from dataclasses import replace

    from capellm.config import preset
    from capellm.model.language_model import build_tokenizer

    cfg = preset("smollm2").model
    cfg.instruction = replace(cfg.instruction, answer=answer)
    # inference only: no LoRA wrappers around the base weights
    cfg.vision.mode = cfg.llm.mode = "frozen"
    if not gpu:
        torch.manual_seed(0)
        return CapeLLM(cfg).eval()
    tok = build_tokenizer(cfg.llm)                # SmolLM2's tokenizer (chatml)
    cfg.vision.random_config = dict(DINOV2_L14_SHAPE)
    cfg.llm.name_or_path, cfg.llm.gguf_file = "random", ""
    cfg.llm.random_config = dict(LLAMA31_8B_SHAPE)
    torch.manual_seed(0)
    return build_in_bf16(cfg, tok, torch.device("cuda")).eval()


def build_in_bf16(cfg, tokenizer, device: torch.device) -> CapeLLM:
    """A CapeLLM whose random weights are made directly in bf16 on `device` (the 8B shapes in
    float32 on the CPU first would take minutes and 32 GB)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            return CapeLLM(cfg, tokenizer=tokenizer)
    finally:
        torch.set_default_dtype(default)


def make_crops(model: CapeLLM, category: Category, n: int, seed: int = 0):
    from PIL import Image

    from capellm.data.crops import crop_instance

    rng = np.random.default_rng(seed)
    k = category.num_keypoints
    crops = []
    for _ in range(n):
        image = Image.fromarray(rng.integers(0, 255, (320, 400, 3), dtype=np.uint8))
        box = np.array([rng.uniform(0, 80), rng.uniform(0, 60), rng.uniform(200, 300), rng.uniform(180, 240)],
                       np.float32)
        crops.append(crop_instance(image, box, np.zeros((k, 2), np.float32), np.zeros(k, bool), model.cfg.crop))
    return crops


def prompts_of(model: CapeLLM, category: Category) -> list[list[int]]:
    return [model.segment_tokenizer(render_conversation(category, [kp], None, model.cfg.instruction, model.fmt))[0]
            for kp in range(category.num_keypoints)]


def parses(text: str) -> bool:
    try:
        parse_coords(text)
        return True
    except ParseError:
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# The three decoders
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def reference(model: CapeLLM, crops, category: Category, keypoints: int | None = None) -> list[str]:
    """(a): one prompt per keypoint, fixed 13 new tokens, the encoder re-run at every step."""
    llm, dev = model.llm, model.device
    emb = llm.get_input_embeddings()
    prompts = prompts_of(model, category)[:keypoints]
    state = {"calls": 0, "pix": None}

    def reencode(_module, _args):
        state["calls"] += 1
        if state["calls"] > 1:                    # every decoding step after the prefill
            model.encode_images(state["pix"])

    hook = llm.register_forward_pre_hook(reencode)
    texts = []
    try:
        for crop in crops:
            pix = crop.pixel_values[None].to(dev)
            for p in prompts:
                state["calls"], state["pix"] = 0, pix
                img = model.encode_images(pix)                                         # [1, N, D]
                x = torch.cat([img.to(emb.weight.dtype), emb(torch.tensor([p], device=dev))], 1)
                out = llm.generate(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long, device=dev),
                                   do_sample=False, num_beams=1, max_new_tokens=REFERENCE_NEW_TOKENS,
                                   min_new_tokens=REFERENCE_NEW_TOKENS, pad_token_id=model.tokenizer.pad_token_id)
                texts.append(model.tokenizer.decode(out[0].tolist(), skip_special_tokens=False))
    finally:
        hook.remove()
    return texts


@torch.no_grad()
def hf_batch(model: CapeLLM, crops, category: Category, full_answers: bool = True,
             budget: int | None = None) -> list[str]:
    """(b): per instance, the K prompts as one left-padded HF generate batch, image encoded once.

    full_answers: generate the whole answer template (14 tokens for SmolLM2) even if a row stops
    earlier: what a trained model does, and the untrained benchmark model would otherwise stop at
    a random early end marker."""
    llm, dev = model.llm, model.device
    emb = llm.get_input_embeddings()
    prompts = prompts_of(model, category)
    end = model.end_ids()
    grammar = model.answer_grammar()
    if budget is None:
        budget = grammar.template_length() if grammar is not None else model.cfg.max_new_tokens
    pad = model.tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=dev)
    text_mask = torch.zeros(len(prompts), width, dtype=torch.long, device=dev)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, device=dev)
        text_mask[i, width - len(p):] = 1
    texts = []
    for crop in crops:
        img = model.encode_images(crop.pixel_values[None].to(dev)).to(emb.weight.dtype)   # [1, N, D]
        n = img.shape[1]
        tok = emb(ids)                                                                  # [K, W, D]
        x = torch.empty(len(prompts), n + width, tok.shape[-1], dtype=tok.dtype, device=dev)
        mask = torch.zeros(len(prompts), n + width, dtype=torch.long, device=dev)
        for i, p in enumerate(prompts):
            lead = width - len(p)                 # [pad][image][prompt]
            x[i, :lead] = tok[i, :lead]
            x[i, lead:lead + n] = img[0]
            x[i, lead + n:] = tok[i, lead:]
            mask[i, lead:] = 1
        out = llm.generate(inputs_embeds=x, attention_mask=mask, do_sample=False, num_beams=1,
                           max_new_tokens=budget, min_new_tokens=budget if full_answers else None,
                           eos_token_id=end[-1], pad_token_id=pad)
        for row in out.tolist():
            if end[-1] in row:
                row = row[:row.index(end[-1]) + 1 - len(end)]
            texts.append(model.tokenizer.decode(row, skip_special_tokens=False))
    return texts


@torch.no_grad()
def engine(model: CapeLLM, crops, category: Category, batch: int, mode: str = "single") -> list[str]:
    """(c): capellm's decoding engine, `batch` instances per call."""
    texts = []
    for i in range(0, len(crops), batch):
        chunk = crops[i:i + batch]
        for p in model.predict_crops(chunk, [category] * len(chunk), mode=mode):
            texts.extend(p.answers)
    return texts


def engine_breakdown(model: CapeLLM, crops, category: Category, batch: int) -> dict[str, float]:
    """Seconds of the engine spent in: the vision encoder, the prefill of image + shared prefix,
    the prefill of each query's own suffix, the decoding steps (decoder body), the output head,
    and the rest (projector, cache copies, grammar, prompts, Python). Decoder calls are told
    apart by their shape."""
    from capellm.inference.decoder import decoder_body

    dev = model.device
    spent = {"encoder": 0.0, "prefill image + prefix": 0.0, "prefill own suffix": 0.0, "decoding steps": 0.0,
             "output head": 0.0}
    n_img = model.vision.num_tokens(model.cfg.crop.input_size)
    start = {}

    def pre(name):
        def f(_m, args, kwargs):
            sync(dev)
            start[name] = time.perf_counter()
        return f

    def post(name):
        def f(_m, args, kwargs, out):
            sync(dev)
            t = time.perf_counter() - start[name]
            if name in ("encoder", "output head"):
                spent[name] += t
            else:
                width = kwargs["inputs_embeds"].shape[1]
                key = ("prefill image + prefix" if width >= n_img else
                       "prefill own suffix" if width > 3 else "decoding steps")
                spent[key] += t
        return f

    hooks = []
    for name, module in (("encoder", model.vision), ("llm", decoder_body(model.llm)),
                         ("output head", model.llm.get_output_embeddings())):
        hooks.append(module.register_forward_pre_hook(pre(name), with_kwargs=True))
        hooks.append(module.register_forward_hook(post(name), with_kwargs=True))
    try:
        total, _ = timed(lambda: engine(model, crops, category, batch), dev)
    finally:
        for h in hooks:
            h.remove()
    spent["rest"] = total - sum(spent.values())
    spent["total"] = total
    return spent


# ---------------------------------------------------------------------------------------------
# Timing and report
# ---------------------------------------------------------------------------------------------


def timed(fn, device, repeat: int = 1) -> tuple[float, list[str]]:
    best, out = float("inf"), []
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def bf16_accuracy(checkpoint: str, data: str = "data/synth") -> int:
    """Decode the split 1 test instances with the checkpoint's float32 LLM and with a bf16 copy,
    interleaved batch by batch; print the share of identical answers, PCK@0.2 of each and the
    time of each."""
    from capellm.config import EvalConfig
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import predict_instances
    from capellm.metrics import PCKAccumulator

    test = load_keypoint_dataset(f"{data}/annotations/synth_split1_test.json", f"{data}/images")
    cats = categories_for(test, f"{data}/categories")
    models = {"float32": CapeLLM.from_pretrained(checkpoint), "bfloat16": CapeLLM.from_pretrained(checkpoint,
                                                                                                 dtype="bfloat16")}
    cfg = EvalConfig(batch_size=32)
    preds = {k: [] for k in models}
    seconds = {k: 0.0 for k in models}
    for i in range(0, len(test.instances), cfg.batch_size):
        chunk = test.instances[i:i + cfg.batch_size]
        for k, m in models.items():
            t = time.perf_counter()
            preds[k] += predict_instances(m, chunk, cats, cfg.batch_size, cfg.mode, progress=False)["grammar"]
            seconds[k] += time.perf_counter() - t
    answers = {k: [a for p in v for a in p.answers] for k, v in preds.items()}
    same = sum(a == b for a, b in zip(answers["float32"], answers["bfloat16"]))
    print(f"{hardware(torch.device('cpu'))}; {checkpoint}, {len(test.instances)} instances, "
          f"{len(answers['float32'])} answers")
    for k, v in preds.items():
        acc = PCKAccumulator((0.2,))
        for x, p in zip(test.instances, v):
            acc.add(0, p.keypoints, x.keypoints, x.visible, x.bbox)
        print(f"  {k:<9} PCK@0.2 {100 * acc.result()['overall']['PCK@0.2']:.2f}  {seconds[k]:.1f} s")
    print(f"  identical answers: {same}/{len(answers['float32'])} ({100 * same / len(answers['float32']):.1f} %); "
          f"time float32/bf16 {seconds['float32'] / seconds['bfloat16']:.2f}x")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Keypoint decoding speed: reference vs HF batch vs capellm's engine.")
    p.add_argument("--gpu", action="store_true", help="Llama-3.1-8B / DINOv2-L/14 shapes, bf16, CUDA")
    p.add_argument("--category", default="002_horse_body", help="MP-100 category file (17 keypoints)")
    p.add_argument("--instances", type=int, default=None, help="instances (default: 3 on CPU, 4 on GPU)")
    p.add_argument("--reference-instances", type=int, default=None,
                   help="instances for (a) (default: all on CPU, 1 on GPU); keypoints/s is per keypoint")
    p.add_argument("--big-batch", type=int, default=32, help="--gpu: instances per engine call for throughput")
    p.add_argument("--skip", default="", help="comma list of methods to skip: reference,hf-batch,multi,"
                                               "keypoint-token")
    p.add_argument("--ablations", action="store_true",
                   help="also time the engine without its CPU grouped-query attention kernel path")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--breakdown", action="store_true", help="also split the engine's time into its phases")
    p.add_argument("--repeat", type=int, default=1, help="time each call this many times, keep the fastest")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--bf16", action="store_true", help="also time the engine with the LLM's weights in bf16")
    p.add_argument("--accuracy", default="", metavar="CHECKPOINT",
                   help="instead: float32 against bf16 decoding of a trained checkpoint (the demo's) on the "
                        "synthetic split 1 test file: identical answers, PCK@0.2, time")
    args = p.parse_args(argv)
    if args.gpu and not torch.cuda.is_available():
        p.error("--gpu needs CUDA")
    if args.accuracy:
        if args.threads:
            torch.set_num_threads(args.threads)
        return bf16_accuracy(args.accuracy)
    skip = set(filter(None, args.skip.split(",")))
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model = build_model(args.gpu)
    device = model.device
    category = load_category(CATEGORIES / f"{args.category}.yaml")
    k = category.num_keypoints
    n = args.instances or (4 if args.gpu else 3)
    n_ref = min(n, args.reference_instances or (1 if args.gpu else n))
    crops = make_crops(model, category, n)
    print(f"model: {model.describe()}; built in {time.perf_counter() - t0:.1f} s")
    print(f"device: {hardware(device)}")
    grammar = model.answer_grammar()
    prompt_lens = [len(q) for q in prompts_of(model, category)]
    print(f"category {category.name}: K = {k} keypoints, {model.vision.num_tokens(model.cfg.crop.input_size)} image "
          f"tokens, prompts of {min(prompt_lens)}-{max(prompt_lens)} tokens, answer template "
          f"{grammar.template_length() if grammar else '-'} tokens in {len(grammar.slots) if grammar else '-'} decoding steps")

    # warm-up (allocator, kernels) on one instance each
    engine(model, crops[:1], category, 1)
    if "hf-batch" not in skip:
        hf_batch(model, crops[:1], category)
    if "reference" not in skip:
        reference(model, crops[:1], category, keypoints=1)

    # sanity: unconstrained, the engine is greedy decoding: HF generate's answers, token for token
    if "hf-batch" not in skip:
        ref = hf_batch(model, crops[:1], category, full_answers=False, budget=model.cfg.max_new_tokens)
        got = model.predict_crops(crops[:1], [category], constrained=False)[0].answers
        print(f"check: unconstrained engine == HF generate on {sum(a == b for a, b in zip(got, ref))}/{k} answers "
              f"of instance 0 (e.g. {ref[0]!r})")

    rows = []

    def record(name: str, instances: int, seconds: float, texts: list[str]):
        kps = instances * k
        rows.append({"method": name, "instances": instances, "keypoints": kps, "seconds": round(seconds, 3),
                     "keypoints_per_s": kps / seconds, "ms_per_instance": 1000 * seconds / instances,
                     "parsed": sum(map(parses, texts)) / max(len(texts), 1)})
        r = rows[-1]
        print(f"  {name:<28} {kps:>5} kp {seconds:>8.2f} s {r['keypoints_per_s']:>8.2f} kp/s "
              f"{r['ms_per_instance']:>9.1f} ms/instance  parsed {100 * r['parsed']:.0f}%", flush=True)

    # Methods that work instance by instance are timed interleaved, instance after instance, so
    # that a change in machine load (a shared CPU) hits them alike.
    import capellm.inference.attention as attention

    def engine_hf_attention(crops_):
        attention.USE_GQA_KERNEL = False
        try:
            return engine(model, crops_, category, 1)
        finally:
            attention.USE_GQA_KERNEL = True

    per_instance = [("(a) reference", lambda c: reference(model, c, category), n_ref)] * ("reference" not in skip)
    per_instance += [("(b) hf-batch", lambda c: hf_batch(model, c, category), n)] * ("hf-batch" not in skip)
    per_instance += [("(c) engine, batch 1", lambda c: engine(model, c, category, 1), n)]
    per_instance += [(f"(c) engine multi k={model.cfg.instruction.k}, b 1",
                      lambda c: engine(model, c, category, 1, mode="multi"), n)] * ("multi" not in skip)
    per_instance += [("(c) engine b 1, HF attention", engine_hf_attention, n)] * args.ablations
    bf16 = None
    if args.bf16:
        import copy

        bf16 = copy.deepcopy(model)
        bf16.set_inference_dtype("bfloat16")
        engine(bf16, crops[:1], category, 1)                                          # warm-up
        per_instance += [("(c) engine, batch 1, bf16", lambda c: engine(bf16, c, category, 1), n)]
    kp_model = None
    if "keypoint-token" not in skip:
        # (d): the <KEYPOINT> answer (App. B.2): no decoding steps, one forward pass per conversation
        kp_model = build_model(args.gpu, answer="keypoint_token")
        engine(kp_model, crops[:1], category, 1)                                      # warm-up
        per_instance += [("(d) <KEYPOINT>, batch 1", lambda c: engine(kp_model, c, category, 1), n)]
        per_instance += [(f"(d) <KEYPOINT> multi k={model.cfg.instruction.k}, b 1",
                          lambda c: engine(kp_model, c, category, 1, mode="multi"), n)] * ("multi" not in skip)
    spent = {name: [0.0, []] for name, _, _ in per_instance}
    for i in range(n):
        for name, fn, upto in per_instance:
            if i < upto:
                s, texts = timed(lambda: fn(crops[i:i + 1]), device, repeat=args.repeat)
                spent[name][0] += s
                spent[name][1] += texts
    for name, _, upto in per_instance:
        record(name, upto, *spent[name])
    s, texts = timed(lambda: engine(model, crops, category, n), device, repeat=args.repeat)
    record(f"(c) engine, batch {n}", n, s, texts)
    if bf16 is not None:
        s, texts16 = timed(lambda: engine(bf16, crops, category, n), device, repeat=args.repeat)
        record(f"(c) engine, batch {n}, bf16", n, s, texts16)
        same = sum(a == b for a, b in zip(texts, texts16))
        print(f"  bf16 answers identical to float32: {same}/{len(texts)} ({100 * same / len(texts):.1f} %)")
    if kp_model is not None:
        s, texts = timed(lambda: engine(kp_model, crops, category, n), device, repeat=args.repeat)
        record(f"(d) <KEYPOINT>, batch {n}", n, s, texts)
    if args.gpu:
        big = make_crops(model, category, args.big_batch, seed=1)
        engine(model, big, category, args.big_batch)
        s, texts = timed(lambda: engine(model, big, category, args.big_batch), device, repeat=args.repeat)
        record(f"(c) engine, batch {args.big_batch}", args.big_batch, s, texts)
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")

    breakdown = {}
    if args.breakdown:
        for b in (1, n):
            breakdown[f"batch {b}"] = engine_breakdown(model, crops, category, b)
            print(f"  engine batch {b}, seconds per instance: " + ", ".join(
                f"{k} {v / n:.3f}" for k, v in breakdown[f'batch {b}'].items()), flush=True)

    by = {r["method"]: r for r in rows}
    print("ratios (keypoints per second):")
    for base in ("(a) reference", "(b) hf-batch"):
        if base not in by:
            continue
        for r in rows:
            if r["method"].startswith(("(c)", "(d)")):
                print(f"  {r['method']:<28} / {base:<14} = {r['keypoints_per_s'] / by[base]['keypoints_per_s']:6.2f}x")
    if "(a) reference" in by and "(b) hf-batch" in by:
        print(f"  {'(b) hf-batch':<28} / {'(a) reference':<14} = "
              f"{by['(b) hf-batch']['keypoints_per_s'] / by['(a) reference']['keypoints_per_s']:6.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": hardware(device), "gpu": args.gpu, "rows": rows,
                                               "breakdown": breakdown}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
