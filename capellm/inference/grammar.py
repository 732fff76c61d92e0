"""The answer's coordinate format as tokens: fixed tokens and digit slots.

Where the tokenizer spells "[0.123,0.456]" + end marker token by token (single tokens for "[",
each digit, ".", ",", "]" and the marker), `CoordinateGrammar` holds the answer as a template:
tokens fixed by the format, and digit slots. The engine feeds fixed tokens together with the
preceding choice in one forward call, and a slot takes the argmax over the digit tokens it admits
only: the integer digit is 0 or 1, and after an integer 1 the decimals are 0, so every answer
parses and lies in [0, 1]. Wherever unconstrained greedy decoding produces a well-formed answer,
the constrained one is the same answer (the argmax over all tokens was an admitted token).

The grammar is derived from the tokenizer by encoding sample answers with the same
`SegmentTokenizer` training uses, and verified on every digit value, so the answer tokens are
exactly those of training. Digit groups (a tokenizer that spells "123" as one token, e.g. Llama 3)
become one slot over the 10^n group tokens. Where the format is not token-aligned (a merge such as
"00" that changes the token count with the value, digits of x and y in one token, more than 3
digits per token), `CoordinateGrammar.build` returns None and the engine decodes unconstrained.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import torch

from capellm.data.instructions import format_coords

_LAYOUT_RE = re.compile(r"\[(\d)\.(\d+),(\d)\.(\d+)\]")
_MAX_GROUP = 3                     # digits per token the grammar accepts (Llama 3 groups by 3)


@dataclass
class _Slot:
    """A token position the model chooses: one of `ids`, spelling the digits `fills`."""

    fills: list[str]              # digit string of each candidate, e.g. "0".."9"
    ids: list[int]                # its token id
    after: list[int]              # fixed tokens that follow, up to the next slot
    number: int                   # 0: x, 1: y
    has_int: bool                 # the slot covers the number's integer digit
    int_at: int                   # index of the integer digit within the fill (if has_int)
    ok_free: torch.Tensor = field(default=None)  # bool [F]: admitted candidates
    ok_one: torch.Tensor = field(default=None)   # bool [F]: admitted after the integer digit 1


class CoordinateGrammar:
    """The answer "[x,y]" + end marker as fixed tokens and digit slots (see the module docstring).

    `lead` are the fixed tokens before the first slot; each slot's `after` the fixed tokens up to
    the next slot (the last slot's: "]" and the end marker).
    """

    def __init__(self, lead: list[int], slots: list[_Slot]):
        self.lead = lead
        self.slots = slots
        self._device_ids: dict[torch.device, list[torch.Tensor]] = {}
        # the "not visible" answer (models trained to give it): after `lead`, its first token
        # competes with the first slot's digits; the rest of it is fixed
        self.nv_first: int | None = None
        self.nv_rest: list[int] = []

    def template_length(self) -> int:
        return len(self.lead) + sum(1 + len(s.after) for s in self.slots)

    def ids_on(self, device: torch.device) -> list[torch.Tensor]:
        if device not in self._device_ids:
            self._device_ids[device] = [torch.tensor(s.ids, dtype=torch.long, device=device) for s in self.slots]
        return self._device_ids[device]

    @classmethod
    def build(cls, encode, answer_end: str, decimals: int, answer_start: str = "",
              not_visible: str | None = None) -> "CoordinateGrammar | None":
        """Derive the grammar from `encode` (SegmentTokenizer.encode: text -> ids, as in training)
        for answers `answer_start` + "[x,y]" + `answer_end`, and also `not_visible` where given
        and where it starts with the same tokens as a coordinate answer up to the first digit
        (otherwise the grammar does not admit it: check `nv_first`).

        Returns None where the format is not token-aligned; the caller then decodes unconstrained.
        """
        base = answer_start + format_coords(0.0, 0.0, decimals) + answer_end
        m = _LAYOUT_RE.match(base, len(answer_start))
        if m is None:
            return None
        digit_role = {}                                    # char index -> (number, is integer digit)
        for g, (number, is_int) in enumerate(((0, True), (0, False), (1, True), (1, False)), start=1):
            for p in range(m.start(g), m.end(g)):
                digit_role[p] = (number, is_int)
        ids0 = encode(base)

        def with_digits(chars: dict[int, str]) -> str:
            s = list(base)
            for p, c in chars.items():
                s[p] = c
            return "".join(s)

        def differing(ids: list[int]) -> list[int] | None:
            if len(ids) != len(ids0):
                return None
            return [t for t, (a, b) in enumerate(zip(ids, ids0)) if a != b]

        # which token spells each digit: changing that digit must change exactly that token
        token_of: dict[int, int] = {}
        for p in digit_role:
            for c in "0123456789":
                if c == base[p]:
                    continue
                diff = differing(encode(with_digits({p: c})))
                if diff is None or len(diff) != 1 or token_of.setdefault(p, diff[0]) != diff[0]:
                    return None
        slots: list[_Slot] = []
        positions = sorted(set(token_of.values()))
        for n, t in enumerate(positions):
            chars = sorted(p for p in token_of if token_of[p] == t)
            numbers = {digit_role[p][0] for p in chars}
            if len(numbers) != 1 or len(chars) > _MAX_GROUP or chars != list(range(chars[0], chars[-1] + 1)):
                return None
            ints = [i for i, p in enumerate(chars) if digit_role[p][1]]
            fills, ids = [], []
            for digits in itertools.product("0123456789", repeat=len(chars)):
                enc = encode(with_digits(dict(zip(chars, digits))))
                diff = differing(enc)
                if diff is None or any(d != t for d in diff):
                    return None
                fills.append("".join(digits))
                ids.append(enc[t])
            if len(set(ids)) != len(ids):
                return None
            end = positions[n + 1] if n + 1 < len(positions) else len(ids0)
            has_int = bool(ints)
            int_at = ints[0] if has_int else -1
            ok_free = torch.tensor([not has_int or (f[int_at] in "01" and (f[int_at] == "0" or
                                    set(f[int_at + 1:]) <= {"0"})) for f in fills])
            ok_one = torch.tensor([set(f) <= {"0"} for f in fills])
            slots.append(_Slot(fills, ids, list(ids0[t + 1:end]), numbers.pop(), has_int, int_at, ok_free, ok_one))
        if not slots:
            return None
        grammar = cls(list(ids0[:positions[0]]), slots)
        if not_visible is not None:
            nv = encode(answer_start + not_visible + answer_end)
            n = len(grammar.lead)
            if len(nv) > n and nv[:n] == grammar.lead and nv[n] not in slots[0].ids:
                grammar.nv_first, grammar.nv_rest = nv[n], list(nv[n + 1:])
        # the slots compose: whole answers encode exactly as the template spells them
        for x, y in ((0.0, 0.0), (1.0, 1.0), (0.123, 0.987), (0.5, 1.0), (0.999, 0.001), (0.707, 0.31)):
            text = format_coords(x, y, decimals)
            if encode(answer_start + text + answer_end) != grammar.spell(text[1:-1].replace(".", "").split(",")):
                return None
        return grammar

    def spell(self, numbers: list[str]) -> list[int] | None:
        """Token ids of the answer whose numbers have the digits `numbers` (e.g. ["0123", "0456"])."""
        ids = list(self.lead)
        used = [0, 0]
        for s in self.slots:
            w = len(s.fills[0])
            f = numbers[s.number][used[s.number]:used[s.number] + w]
            used[s.number] += w
            if f not in s.fills:
                return None
            ids.append(s.ids[s.fills.index(f)])
            ids.extend(s.after)
        return ids

