"""The `capellm` command: one module per subcommand, each a `main(argv) -> exit status`.

    capellm demo    [--out runs/demo]                      train + evaluate on unseen synthetic categories (CPU)
    capellm ablate  [--study instruction|rounds|all]       the paper's Tables 3 and 4 on the synthetic benchmark
    capellm train   [--preset NAME] [--config FILE] [--resume] [--<field> VALUE ...]
    capellm eval    --checkpoint DIR --ann FILE [--out metrics.json] [--protocol pairs --shots 1|5]
    capellm predict --checkpoint DIR --image IMG --category NAME_OR_FILE [--box x,y,w,h]
    capellm config  [--preset NAME] [--config FILE]        print the resolved configuration
    capellm data synth --out DIR                           generate the synthetic benchmark
    capellm data check-mp100 --root DIR [--ann-dir DIR]    which MP-100 images are present, per category
    capellm report --metrics M1.json ... [--out table.md]  average the 5 splits into the paper's Table 2
    capellm category new NAME --keypoints "a,b,c"          start a category file for your own object
    capellm app     --checkpoint DIR                       web app (needs the `app` extra)

Every config field is also a flag named by its dotted path (`--train.lr 1e-4`), derived from the
dataclasses in capellm.config. Tests call each `main` in-process. A subcommand's module is
imported only when it runs, so `capellm --help` starts without torch.
"""

from __future__ import annotations

import importlib
import logging
import sys

COMMANDS = ("demo", "ablate", "train", "eval", "predict", "config", "data", "report", "category", "app")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip().split("\n\n")[1])
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command '{argv[0]}'", file=sys.stderr)
            return 2
        return 0
    from capellm.errors import EXIT_BAD_INPUT, CapellmError

    command = importlib.import_module(f"capellm.cli.{argv[0]}")
    try:
        return command.main(argv[1:]) or 0
    except CapellmError as e:
        print(f"capellm {argv[0]}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:              # a missing file, a full disk, no permission: one line, no traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"capellm {argv[0]}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
