"""`capellm report`: the five MP-100 splits' metrics files averaged into the paper's Table 2.

    capellm report --metrics M1.json ... [--out table.md] [--paper]
"""

from __future__ import annotations

import argparse

from capellm.cli.common import error


def main(argv=None) -> int:
    from capellm.report import ReportError, collect, markdown

    p = argparse.ArgumentParser(prog="capellm report",
                                description="Average the five MP-100 splits' metrics files into the paper's Table 2.")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics JSON files written by `capellm eval`")
    p.add_argument("--out", default="", help="also write the markdown here")
    p.add_argument("--name", default="CapeLLM (ours)", help="method name in the rows")
    p.add_argument("--paper", action="store_true", help="append the published means for comparison")
    args = p.parse_args(argv)
    try:
        text = markdown(collect(args.metrics), args.name, args.paper)
    except ReportError as e:
        error("capellm report", str(e))
        return 2
    print(text)
    if args.out:
        from capellm.utils import atomic_write_text

        atomic_write_text(args.out, text)
    return 0
