"""The distribution of a coordinate answer, read from its digit tokens.

Under the coordinate grammar (capellm.inference.grammar) a number is an integer digit (0 or 1)
and decimal slots. Its distribution, per number of an answer:

- the integer digit's soft-max gives P(1.0);
- the first decimal slot's soft-max (over the digits it admits) is exact: one distribution over
  10 values (over 1000 for a tokenizer that spells three digits as one token, such as Llama 3's);
- where a second decimal slot follows, the engine enumerates the first slot's candidates in one
  forward call (all candidates fed as sibling branches of the row, each seeing only the context
  and itself) and reads the second slot's soft-max under each: the joint distribution over both
  slots is exact too;
- digits after that are not enumerated: each value stands for the centre of its grid cell.

The answers of x and y are read in order, so y's distribution is conditioned on the decoded x.
From the distribution: the expected value, the mode (the most probable value, which may differ
from the greedy answer that fixes one digit after the other) and the spread (standard deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class NumberDistribution:
    """A distribution over a number's values in [0, 1] (crop-normalised)."""

    values: np.ndarray      # float [M]
    probs: np.ndarray       # float [M], sums to 1

    @property
    def mean(self) -> float:
        return float(self.values @ self.probs)

    @property
    def mode(self) -> float:
        return float(self.values[int(self.probs.argmax())])

    @property
    def std(self) -> float:
        m = self.mean
        return float(np.sqrt(max(((self.values - m) ** 2) @ self.probs, 0.0)))


def number_distributions(grammar, probs: list[torch.Tensor], second: dict[int, torch.Tensor],
                         picks: torch.Tensor) -> list[list[NumberDistribution]]:
    """Per row, [x, y] distributions from the slots' admitted-candidate probabilities.

    probs[s]: [Q, F_s] soft-max of slot s over its candidates (zero where not admitted).
    second[s]: [Q, F_s, F_{s+1}] for a first decimal slot s that was enumerated: the next slot's
    probabilities under each candidate of s. picks: [Q, S] chosen candidate index per slot.
    """
    q = picks.shape[0]
    out: list[list[NumberDistribution]] = [[None, None] for _ in range(q)]
    for number in (0, 1):
        idx = [s for s, slot in enumerate(grammar.slots) if slot.number == number]
        int_s, dec = idx[0], idx[1:]
        int_slot = grammar.slots[int_s]
        one = int_slot.fills.index("1") if "1" in int_slot.fills else None
        widths = [len(grammar.slots[s].fills[0]) for s in dec]
        total = sum(widths)
        first = dec[0]
        f1 = np.array([int(f) for f in grammar.slots[first].fills], dtype=np.float64)
        if first in second:
            f2 = np.array([int(f) for f in grammar.slots[dec[1]].fills], dtype=np.float64)
            used = widths[0] + widths[1]
            values = (f1[:, None] / 10 ** widths[0] + f2[None, :] / 10 ** used).reshape(-1)
            joint = (probs[first][:, :, None] * second[first]).reshape(q, -1)
        else:
            used = widths[0]
            values = f1 / 10 ** used
            joint = probs[first]
        values = values + (10.0 ** -used - 10.0 ** -total) / 2      # centre of the cells' later digits
        joint = joint.double().cpu().numpy()
        p_one = probs[int_s][:, one].double().cpu().numpy() if one is not None else np.zeros(q)
        int_pick = picks[:, int_s].cpu().numpy()
        for i in range(q):
            below = joint[i] / max(joint[i].sum(), 1e-300)
            if one is not None and int_pick[i] == one:
                # decimals were read after "1.": nothing is known of them under "0."
                below = np.full_like(below, 1.0 / below.size)
            vals = np.append(values, 1.0)
            ps = np.append((1.0 - p_one[i]) * below, p_one[i])
            out[i][number] = NumberDistribution(vals, ps / ps.sum())
    return out
