"""How many samples a second does the demo's training step take, per batch size, tokenizer and MLP?

Builds one demo training state per variant (`benchmarks/train_step.py`'s current path: bf16 on a
CPU with bf16 units, the frozen-feature pool built once) and times them interleaved, round by
round (A B C A B C ...), so a change in machine load hits all alike; prints the median samples/s
of the rounds and each round's value. A variant is BATCH/TOKENIZER/MLP, optionally /plain (the
fixed strings around answers not fused into single tokens: model.llm.fuse_fixed_tokens false):

    python research/step_throughput.py --data data/synth 16/bpe:1000/384 16/bpe:1000:2/384 32/bpe:1000:2/384
    python research/step_throughput.py --data data/synth 16/bpe:1000/384/plain 16/bpe:1000/384

The answers are in research/demo_reading.md, sections 9 and 11.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variants", nargs="+", help="BATCH/TOKENIZER/MLP[/plain], e.g. 32/bpe:1000:2/384")
    p.add_argument("--data", default="data/synth")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--samples", type=int, default=480, help="samples per variant and round")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import capellm.demo
    from benchmarks.train_step import build, run_steps

    states = {}
    for v in args.variants:
        batch, tokenizer, mlp, *plain = v.split("/")
        if plain not in ([], ["plain"]):
            p.error(f"variant {v!r}: after BATCH/TOKENIZER/MLP only /plain may follow")
        base = capellm.demo.demo_config

        def config(*a, _b=int(batch), _t=tokenizer, _fuse=plain != ["plain"], **k):
            cfg = base(*a, **k)
            cfg.train.batch_size, cfg.model.llm.tokenizer = _b, _t
            cfg.model.llm.fuse_fixed_tokens = _fuse
            return cfg

        bench = argparse.Namespace(data=args.data, steps=1, warmup=0, mlp=int(mlp), question="", precision="bf16")
        with mock.patch.object(capellm.demo, "demo_config", config):
            state, _ = build(bench, True)
        run_steps(state, 5)                                   # warm-up
        states[v] = (int(batch), state)
    rates = {v: [] for v in states}
    for _ in range(args.rounds):
        for v, (batch, state) in states.items():
            n = max(5, args.samples // batch)
            rates[v].append(batch * n / run_steps(state, n))
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.rounds} interleaved rounds")
    for v, r in rates.items():
        print(f"  {v:<24} {statistics.median(r):7.1f} samples/s (median; rounds: {', '.join(f'{x:.0f}' for x in r)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
