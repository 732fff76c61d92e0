"""Where does the demo's training step spend its time, and what would a cheaper softmax save?

1. The torch profiler over --steps training steps of the demo preset (bf16 on a CPU with bf16
   units, the frozen-feature pool built once, data loading included), its self time per step
   split four ways: matrix products and element-wise work, each on the attention scores
   ([B, H, T, T]) or elsewhere.
2. The forward + backward of the whole model with the training attention of today
   (capellm.inference.attention: the softmax in float32 between casts) and with a variant that
   keeps the softmax in bf16, puts the scale on the query and adds the mask in place, batch by
   batch in the order A B B A, so that neither a change in the machine's speed nor running
   second on a batch (its tensors warm in the caches) favours one of them.

    python research/step_profile.py --data data/synth

The answers are in research/demo_reading.md, section 10.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_SCORES = re.compile(r"\[\d+, \d+, (\d+), \1\]|\[\d+, (\d+), \2\]")    # [B, H, T, T] or [B*H, T, T]
_PRODUCTS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def bf16_softmax_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                           **kwargs):
    """The variant: the softmax in the scores' dtype (bf16 under autocast), the scale on the
    query, the mask added in place. Padding masks only (as the demo's batches)."""
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query * scale, key.transpose(-1, -2))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros(attention_mask.shape, dtype=scores.dtype).masked_fill_(
                ~attention_mask, torch.finfo(scores.dtype).min)
        scores.add_(attention_mask)
    return torch.matmul(scores.softmax(-1), value).transpose(1, 2).contiguous(), None


def profile_split(state, steps: int) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.train_step import run_steps

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run_steps(state, steps)
    split = Counter()
    for e in prof.key_averages(group_by_input_shape=True):
        where = "attention scores" if _SCORES.search(str(e.input_shapes)) else "elsewhere"
        kind = "matrix products" if e.key in _PRODUCTS else "element-wise and other"
        split[f"{kind}, {where}"] += e.self_cpu_time_total / 1000 / steps
    return dict(split)


def attention_ab(model, ds, batches, rounds: int) -> dict[str, list[float]]:
    from transformers import AttentionInterface

    import capellm.inference.attention as attention
    from capellm.data.dataset import collate

    data = [collate([ds[j] for j in b], model.tokenizer.pad_token_id) for b in batches]
    ctx = attention.training_attention(model, torch.device("cpu"), "bf16")
    variants = {"float32 softmax (today)": attention._matmul_attention, "bf16 softmax": bf16_softmax_attention}
    model.train()

    def forward_backward(fn, batch) -> float:
        AttentionInterface._global_mapping[attention._MATMUL] = fn
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16), ctx:
            loss = model(batch)["loss"]
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    times = {k: [] for k in variants}
    try:
        for batch in data[:3]:                                           # warm-up
            for fn in variants.values():
                forward_backward(fn, batch)
        order = list(variants.items())
        for _ in range(rounds):
            for i, batch in enumerate(data):
                for name, fn in order if i % 2 == 0 else order[::-1]:
                    times[name].append(forward_backward(fn, batch))
    finally:
        AttentionInterface._global_mapping[attention._MATMUL] = attention._matmul_attention
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/synth")
    p.add_argument("--steps", type=int, default=30, help="profiled training steps")
    p.add_argument("--batches", type=int, default=40, help="batches of the attention comparison")
    p.add_argument("--rounds", type=int, default=3, help="passes over those batches")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from benchmarks.train_step import build, run_steps

    bench = argparse.Namespace(data=args.data, steps=1, warmup=0, mlp=0, question="", precision="bf16")
    state, _ = build(bench, True)
    cfg, model, ds, batches = state[0], state[2], state[3], state[6]
    run_steps(state, 5)                                                  # warm-up
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, demo preset, batch {cfg.train.batch_size}")
    split = profile_split(state, args.steps)
    print(f"profiler, self time per step over {args.steps} steps: {sum(split.values()):.1f} ms")
    for k, v in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<48} {v:6.1f} ms")
    times = attention_ab(model, ds, batches[:args.batches], args.rounds)
    print(f"forward + backward of the model, {len(next(iter(times.values())))} batches each, alternating:")
    for name, t in times.items():
        print(f"  {name:<28} mean {1000 * statistics.mean(t):6.2f} ms  median {1000 * statistics.median(t):6.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
