"""ComfyUI plugin for ``lhm``: one photo to an animatable 3D Gaussian avatar.

ComfyUI imports this folder as a package named after the folder (any name works); the nodes live in
``nodes.py`` and only call the installed ``lhm`` package.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
