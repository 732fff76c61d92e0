"""The synthetic CAPE benchmark: MP-100's format and protocol on images capellm draws itself.

- `benchmark`: the categories, the splits, and `generate` (what `capellm data synth` runs).
- `render`: drawing one instance. `geometry`: what the families are built from.
- `families`: the twelve families, one module each.
"""

from capellm.synth.benchmark import (
                                     CATEGORIES,
                                     PRESETS,
                                     SYNTH_VERSION,
                                     TINY_CATEGORIES,
                                     SynthConfig,
                                     category_definition,
                                     category_names,
                                     family_of,
                                     generate,
                                     is_complete,
                                     make_splits,
                                     stale_note,
)
from capellm.synth.render import render_instance

__all__ = ["CATEGORIES", "PRESETS", "SYNTH_VERSION", "TINY_CATEGORIES", "SynthConfig", "category_definition",
           "category_names", "family_of", "generate", "is_complete", "make_splits", "render_instance",
           "stale_note"]
