"""`capellm app`: a local web page to try a checkpoint on your own pictures (Gradio).

    capellm app --checkpoint DIR [--port 7860]        then open http://127.0.0.1:7860
"""

from __future__ import annotations

import argparse

from capellm.cli.common import add_device_argument, error, pick_device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="capellm app", description="A local web page to try a checkpoint (Gradio).")
    p.add_argument("--checkpoint", required=True, help="model folder (train.out_dir/model)")
    p.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (default 7860)")
    add_device_argument(p)
    args = p.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        error("capellm app", "needs Gradio: pip install 'capellm[app]' (or pip install 'gradio>=4')")
        return 2
    from capellm.app import HOST, build_app, launch
    from capellm.model.capellm import CapeLLM

    model = CapeLLM.from_pretrained(args.checkpoint, device=pick_device(args.device), dtype=args.dtype)
    print(f"capellm app: {model.describe()}\nopen http://{HOST}:{args.port} in a browser (Ctrl-C stops)")
    launch(build_app(model), args.port, block=True)
    return 0
