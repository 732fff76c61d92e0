"""capellm: support-free category-agnostic pose estimation with multimodal LLMs (CapeLLM).

`from capellm import CapeLLM` gives the model class; imports are lazy so that the command line
starts without loading torch for `--help`.
"""

__version__ = "0.1.0"
__all__ = ["CapeLLM", "Category", "load_category", "resolve_category"]


def __getattr__(name):
    if name == "CapeLLM":
        from capellm.model.capellm import CapeLLM

        return CapeLLM
    if name in ("Category", "load_category", "resolve_category"):
        from capellm.data import categories

        return getattr(categories, name)
    raise AttributeError(f"module 'capellm' has no attribute {name!r}")
