"""`capellm app`: a local web page to try a checkpoint on your own pictures (Gradio).

    capellm app --checkpoint DIR [--port 7860]        then open http://127.0.0.1:7860

Upload an image, pick a shipped MP-100 category or type your own keypoints (one
"name: description" per line), optionally give a box; the page shows the keypoints drawn on the
image, each with an ellipse of its spread (one standard deviation of its answer's distribution,
capellm.inference.uncertainty), and a table of their coordinates in the image's pixels.

Design choices:
- The page is a thin shell over the same functions as `capellm predict` (`CapeLLM.predict`,
  `draw_result`): same EXIF handling, large-image reading, box clipping and coordinates.
  `run` holds all the logic and is a plain function, so tests check it without a browser.
- Gradio hands over the uploaded FILE (type="filepath", image_mode=None), not decoded pixels, so
  EXIF orientation, 16-bit and large images are read by capellm's own reader, not Gradio's. A file
  that Gradio itself cannot open reaches `run` too, which names it in a one-line message (Gradio
  would only show "Error").
- Served on 127.0.0.1 only: the page runs a model on uploaded files and has no authentication.
- Offline: analytics off and system fonts in the theme, so neither the server nor the browser
  reaches the internet.
- Gradio is an optional dependency (`pip install capellm[app]`); only `capellm app` imports this module.
"""

from __future__ import annotations

import inspect
import threading
import time

from capellm.data.categories import Category, CategoryError, mp100_categories
from capellm.data.crops import BoxError, parse_box
from capellm.data.images import ImageError, ImageSource
from capellm.predict import draw_result

HOST = "127.0.0.1"
TABLE_HEADERS = ["keypoint", "x", "y", "confidence", "spread (px)", "note"]
KEYPOINT_HELP = ("Your own keypoints, one per line as  name: description  (the description may be empty). "
                 "When this box is not empty it is used instead of the category above.")
EXAMPLE_KEYPOINTS = ("spout tip: The open end of the teapot's spout, the point farthest from the handle.\n"
                     "lid knob: The top of the knob on the lid, the highest point of the teapot.\n"
                     "handle top: Where the handle joins the body at its upper end, opposite the spout.")


def category_choices() -> dict[str, Category]:
    """Dropdown label -> shipped MP-100 category ("002 horse_body (17 keypoints)")."""
    return {f"{cid:03d} {c.name} ({c.num_keypoints} keypoints)": c for cid, c in sorted(mp100_categories().items())}


def parse_keypoint_text(text: str, name: str = "custom") -> Category:
    """Lines of "name: description" (or just "name") -> a Category; '#' lines are comments.

    Raises CategoryError naming the line, e.g. "keypoints box, line 3: empty keypoint name".
    """
    kps = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kname, _, desc = line.partition(":")
        if not kname.strip():
            raise CategoryError(f"keypoints box, line {n}: empty keypoint name in '{line}'")
        kps.append({"name": kname.strip(), "description": desc.strip()})
    if not kps:
        raise CategoryError("keypoints box: no keypoints (one 'name: description' per line)")
    return Category.from_dict({"name": name, "keypoints": kps}, source="keypoints box")


def run(model, image_path, category_label, keypoint_text, box_text, categories: dict[str, Category],
        lock: threading.Lock | None = None):
    """One click of "Find keypoints": (picture or None, table rows, status markdown)."""
    if not image_path:
        return None, [], "**Upload an image first.**"
    try:
        if keypoint_text and keypoint_text.strip():
            category = parse_keypoint_text(keypoint_text)
        elif category_label in categories:
            category = categories[category_label]
        else:
            return None, [], "**Pick a category or type your own keypoints.**"
        box = parse_box(box_text)
        source = ImageSource.open(image_path)
        t0 = time.perf_counter()
        with lock or threading.Lock():
            pred = model.predict(source, category, box, distribution=True)
        seconds = time.perf_counter() - t0
        picture = draw_result(source, category, pred)
        used_box = pred.box
    except (CategoryError, BoxError, ImageError) as e:
        return None, [], f"**Error:** {e}"
    rows = []
    for i, kp in enumerate(pred.to_dict()["keypoints"]):
        spread = kp.get("spread")
        rows.append([kp["name"], kp["x"], kp["y"], kp["confidence"],
                     None if spread is None else round(max(spread), 1), pred.missing.get(i, "")])
    found = sum(r[1] is not None for r in rows)
    w, h = source.size
    status = (f"{found} of {len(rows)} keypoints of **{category.name}** found in {seconds:.1f} s "
              f"(image {w}x{h}, box {', '.join(f'{v:g}' for v in used_box)}).")
    return picture, rows, status


def build_app(model, categories: dict[str, Category] | None = None):
    import gradio as gr

    categories = category_choices() if categories is None else categories
    labels = list(categories)
    lock = threading.Lock()

    with gr.Blocks(title="CapeLLM keypoints", analytics_enabled=False, **_theme_kwargs(gr, gr.Blocks.__init__)) as demo:
        gr.Markdown("## CapeLLM: keypoints from names and descriptions, no example images")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", image_mode=None, label="Image", sources=["upload", "clipboard"],
                                 height=360, elem_id="image-in")
                _hand_on_undecodable(image)
                category = gr.Dropdown(labels, value=labels[0] if labels else None, label="MP-100 category",
                                       filterable=True, elem_id="category")
                keypoints = gr.Textbox(label=KEYPOINT_HELP, lines=5, placeholder=EXAMPLE_KEYPOINTS, elem_id="keypoints")
                box = gr.Textbox(label="Box x,y,w,h in pixels (optional; empty: the whole image)", elem_id="box")
                button = gr.Button("Find keypoints", variant="primary", elem_id="run")
            with gr.Column():
                picture = gr.Image(type="pil", format="png", label="Keypoints", interactive=False, height=360,
                                   elem_id="image-out")
                status = gr.Markdown(elem_id="status")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="Coordinates (image pixels)", interactive=False,
                                     elem_id="table")
        button.click(lambda *a: run(model, *a, categories=categories, lock=lock),
                     inputs=[image, category, keypoints, box], outputs=[picture, table, status])
    return demo


def _hand_on_undecodable(image):
    """Let `image` (a gr.Image of type "filepath") hand on the uploaded file's path when Gradio
    cannot open it, so that `run` reports the file in one line instead of Gradio's bare "Error".
    The path has been through Gradio's upload checks by then. (Set on the instance: a subclass of
    a Gradio component makes Gradio write a .pyi file next to this module.)"""
    decode = image.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except Exception:        # noqa: BLE001 - any decoder failure; run() re-reads and names it
            if payload is None or getattr(payload, "path", None) is None:
                raise
            return str(payload.path)

    image.preprocess = preprocess
    return image


def _theme_kwargs(gr, fn) -> dict:
    """System fonts (the default theme loads Google Fonts); `theme` moved to launch() in Gradio 6."""
    if "theme" not in inspect.signature(fn).parameters:
        return {}
    sans = ["ui-sans-serif", "system-ui", "sans-serif"]
    return {"theme": gr.themes.Default(font=sans, font_mono=["ui-monospace", "monospace"])}


def launch(demo, port: int = 7860, block: bool = True):
    """Serve on 127.0.0.1 only; returns Gradio's (app, local_url, share_url)."""
    return demo.launch(server_name=HOST, server_port=port, share=False, prevent_thread_lock=not block,
                       quiet=not block, **_theme_kwargs(__import__("gradio"), demo.launch))
