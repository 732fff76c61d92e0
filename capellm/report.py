"""`capellm report`: the five MP-100 splits' metrics files averaged into the paper's Table 2 layout.

CapeLLM's Table 2 (like CapeFormer's and GraphCAPE's tables) gives PCK@0.2 per split (1-5) and
their mean, one row per method and setting. Each metrics JSON written by `capellm eval` holds one
split and one protocol; this module groups the files by setting (protocol 1 "query only", or
support-query pairs with its shot count), places each file in its split column, and averages.

Design choices:
- The split is read from the file's `annotation_file` (`mp100_split3_test.json` -> 3), falling back
  to the metrics file's own path, so the order of `--metrics` does not matter. Two files of the
  same setting and split are an error (which one is right?).
- The value is the `overall` entry (mean over instances, or over pairs), as the reference code
  reports it, in percent with two decimals. The mean is over the splits present; with fewer than
  five, the row says how many, since such a mean is not comparable with the paper's.
- A second table gives mPCK (the mean of PCK at 0.05 ... 0.25) the same way. `--paper` adds the
  published means (../shared/mp100/README.md) under the table for comparison.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from capellm.errors import CapellmError

# published PCK@0.2 means over the 5 splits (MP-100 README; CapeLLM paper Table 2)
PAPER_MEANS = [
    ("CapeFormer", "pairs, 1-shot", 85.32), ("CapeFormer", "pairs, 5-shot", 89.30),
    ("GraphCAPE (PoseAnything) small", "pairs, 1-shot", 90.68), ("GraphCAPE (PoseAnything) small", "pairs, 5-shot", 92.83),
    ("CapeX small (text)", "pairs", 91.50),
    ("CapeLLM (paper)", "pairs", 92.60), ("CapeLLM (paper)", "query only", 91.60),
]
SPLITS = (1, 2, 3, 4, 5)


class ReportError(CapellmError):
    """A metrics file cannot be placed in the table; the message names the file."""


def split_of(result: dict, path: str | Path) -> int:
    """The MP-100 split (1-5) a metrics file belongs to, from its annotation file name or its path."""
    for text in (str(result.get("annotation_file", "")), str(path)):
        m = re.findall(r"split[_-]?([1-5])", Path(text).as_posix())
        if m:
            return int(m[-1])
    raise ReportError(f"{path}: cannot tell the split (no 'split<N>' in its annotation_file "
                      f"'{result.get('annotation_file', '')}' nor in its path)")


def setting_of(result: dict, decoding: str | None = None) -> str:
    """'query only' (protocol 1) or 'pairs, N-shot' (protocol 2), and the decoding when the file
    says which (`capellm eval --decode`): 'query only, official decoding'."""
    if "shots" in result or str(result.get("protocol", "")).startswith("support-query"):
        setting = f"pairs, {result.get('shots', '?')}-shot"
    else:
        setting = "query only"
    decoding = decoding or (result.get("decode") if result.get("decode") != "both" else None)
    return f"{setting}, {decoding} decoding" if decoding else setting


def _scored(result: dict) -> list[tuple[str | None, dict]]:
    """(decoding, overall) of each decoding a metrics file holds (None: it does not say)."""
    by = result.get("by_decoding")
    if by:
        return [(d, r.get("overall") or {}) for d, r in by.items()]
    return [(None, result.get("overall") or {})]


def collect(paths: list[str | Path]) -> dict[str, dict[int, dict]]:
    """setting -> split -> {"PCK@0.2", "mPCK", "file"} from the given metrics files."""
    table: dict[str, dict[int, dict]] = {}
    for p in paths:
        try:
            result = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ReportError(f"{p}: cannot read metrics JSON ({e})") from None
        split = None
        for decoding, overall in _scored(result):
            if "PCK@0.2" not in overall:
                raise ReportError(f"{p}: no overall PCK@0.2 (is it a `capellm eval` metrics file?)")
            split = split if split is not None else split_of(result, p)
            setting = setting_of(result, decoding)
            row = table.setdefault(setting, {})
            if split in row:
                raise ReportError(f"{p}: split {split} ({setting}) is also given by {row[split]['file']}")
            row[split] = {"PCK@0.2": float(overall["PCK@0.2"]), "mPCK": float(overall.get("mPCK", float("nan"))),
                          "file": str(p)}
    return table


def _order(setting: str) -> tuple:
    return (not setting.startswith("query only"), setting)


def markdown(table: dict[str, dict[int, dict]], name: str = "CapeLLM (ours)", paper: bool = False) -> str:
    """Two markdown tables (PCK@0.2, mPCK): one row per setting, columns Split1..Split5 and Mean."""
    out = []
    for metric in ("PCK@0.2", "mPCK"):
        out.append(f"**{metric}** on MP-100 (%, mean over test instances or pairs of each split)\n")
        out.append("| Method | Setting | " + " | ".join(f"Split{s}" for s in SPLITS) + " | Mean |")
        out.append("|---|---|" + "---:|" * (len(SPLITS) + 1))
        for setting in sorted(table, key=_order):
            row = table[setting]
            cells = [f"{100 * row[s][metric]:.2f}" if s in row else "" for s in SPLITS]
            vals = [100 * row[s][metric] for s in SPLITS if s in row]
            mean = f"{sum(vals) / len(vals):.2f}" if vals else ""
            if vals and len(vals) < len(SPLITS):
                mean += f" ({len(vals)} splits)"
            out.append(f"| {name} | {setting} | " + " | ".join(cells) + f" | {mean} |")
        out.append("")
    if paper:
        out.append("Published PCK@0.2 means (5 splits), for comparison:\n")
        out.append("| Method | Setting | Mean |\n|---|---|---:|")
        out += [f"| {m} | {s} | {v:.2f} |" for m, s, v in PAPER_MEANS]
        out.append("")
    return "\n".join(out)
