"""Switches for the exact shortcuts, so a benchmark and the tests can run the naive path beside them.

The shortcuts give the same logits to float rounding (``tests/test_every_method.py`` checks it):
the text tower stops at the last pooled end-of-text token (:func:`bench.model.prompting.pooled_span`),
and class prompts that do not depend on the image are encoded once per prediction over a label
space (:meth:`bench.model.method.Method.one_label_space`), and text prompts that depend on the image run
the positions before the class name once per image (:mod:`bench.model.shared_prefix`).  ``naive()`` turns
them all off::

    with naive():                    # full 77-token text tower, class prompts re-encoded every batch
        reference = predict(method, test, 32, device)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass


@dataclass
class Shortcuts:
    truncate_text: bool = True  # run the text tower only up to the last pooled EOT position
    memoise_text: bool = True  # image-independent text features once per label space in a prediction
    share_prefix: bool = True  # per-image text prompts: the positions before the class name once per image


ACTIVE = Shortcuts()


@contextlib.contextmanager
def naive():
    """Inside, no shortcut is taken (the path a straight port of the official code runs)."""
    saved = (ACTIVE.truncate_text, ACTIVE.memoise_text, ACTIVE.share_prefix)
    ACTIVE.truncate_text = ACTIVE.memoise_text = ACTIVE.share_prefix = False
    try:
        yield
    finally:
        ACTIVE.truncate_text, ACTIVE.memoise_text, ACTIVE.share_prefix = saved
