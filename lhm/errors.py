"""The error users see: bad input, named, with what to do about it."""
from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used (image, mask, motion, weights): the message names the problem and the fix.

    The CLI exits with code 2 on it, the Space shows it as ``gr.Error``, the ComfyUI nodes raise it as is.
    """
