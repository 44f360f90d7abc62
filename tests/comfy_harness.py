"""Stand-ins for the parts of ComfyUI a custom-node plugin touches, to test the plugin without ComfyUI.

ComfyUI itself is not installable from PyPI, so this reproduces the interface documented in
shared/docs/comfyui-notes.md (ComfyUI 0.33 and the 2026 splat nodes): ``folder_paths``,
``comfy.utils.ProgressBar``, ``comfy.model_management``'s interruption, and optionally
``comfy_api.latest.Types.SPLAT``; the plugin is imported the way ComfyUI imports a custom-node
folder. It also executes and validates workflows in ComfyUI's API ("prompt") and UI (litegraph)
formats, with stand-ins for the few core nodes the example workflows use.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SUPPORTED_PT_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")


class InterruptProcessingException(Exception):
    """Raised by ``throw_exception_if_processing_interrupted`` after the user pressed Cancel."""


class SPLAT:
    """ComfyUI's Gaussian-splat batch: positions/scales (B,N,3), rotations (B,N,4) wxyz, opacities (B,N,1), sh (B,N,K,3)."""

    def __init__(self, positions, scales, rotations, opacities, sh, counts=None):
        self.positions = positions
        self.scales = scales
        self.rotations = rotations
        self.opacities = opacities
        self.sh = sh
        self.counts = counts


class ProgressBar:
    """``comfy.utils.ProgressBar``: ``update(n)`` advances by n; every bar is recorded on the harness."""

    instances: list["ProgressBar"] = []

    def __init__(self, total: int):
        self.total = total
        self.current = 0
        ProgressBar.instances.append(self)

    def update(self, value: int) -> None:
        """Advance by ``value`` steps."""
        self.current += value


class Harness:
    """A ComfyUI base folder (models, input, output, temp) with its modules installed in ``sys.modules``."""

    def __init__(self, root: Path, splat: bool = True):
        self.root = Path(root)
        self.interrupted = False
        for sub in ("models", "input", "output", "temp", "custom_nodes"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._saved = {}  # what the stand-ins and plugins replaced in sys.modules (None: was absent)
        self._plugins: list[str] = []
        ProgressBar.instances = []
        modules = {"folder_paths": self._folder_paths(), "comfy": types.ModuleType("comfy"),
                   "comfy.utils": self._module("comfy.utils", ProgressBar=ProgressBar),
                   "comfy.model_management": self._model_management()}
        modules["comfy"].utils = modules["comfy.utils"]
        modules["comfy"].model_management = modules["comfy.model_management"]
        # without ``splat`` it is an older ComfyUI: comfy_api.latest exists but has no SPLAT type
        latest = self._module("comfy_api.latest", Types=type("Types", (), {"SPLAT": SPLAT} if splat else {}))
        modules["comfy_api"] = self._module("comfy_api", latest=latest)
        modules["comfy_api.latest"] = latest
        for name, module in modules.items():
            self._install(name, module)
        self.folder_paths = modules["folder_paths"]

    def _install(self, name: str, module: types.ModuleType) -> None:
        self._saved.setdefault(name, sys.modules.get(name))
        sys.modules[name] = module

    @staticmethod
    def _module(name: str, **attrs) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        return module

    @property
    def bars(self) -> list[ProgressBar]:
        """Progress bars created since the harness was installed."""
        return ProgressBar.instances

    def close(self) -> None:
        """Remove the stand-ins and the plugins (with their submodules) from ``sys.modules``, restoring what was there.

        Only those: modules the plugin imported on the way (lhm, torch internals) stay loaded, as in a
        real process; importing them a second time would duplicate classes and torch op registrations.
        """
        for plugin in self._plugins:
            for name in [n for n in sys.modules if n == plugin or n.startswith(plugin + ".")]:
                del sys.modules[name]
        for name, previous in self._saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous

    # -----------------------------------------------------------------------------------------
    def _folder_paths(self) -> types.ModuleType:
        fp = types.ModuleType("folder_paths")
        fp.base_path = str(self.root)
        fp.models_dir = str(self.root / "models")
        fp.supported_pt_extensions = set(SUPPORTED_PT_EXTENSIONS)
        fp.folder_names_and_paths = {"checkpoints": ([str(self.root / "models" / "checkpoints")],
                                                     set(SUPPORTED_PT_EXTENSIONS))}
        fp.get_input_directory = lambda: str(self.root / "input")
        fp.get_output_directory = lambda: str(self.root / "output")
        fp.get_temp_directory = lambda: str(self.root / "temp")

        def add_model_folder_path(name: str, path: str, is_default: bool = False) -> None:
            paths, exts = fp.folder_names_and_paths.setdefault(name, ([], set()))
            if path in paths:
                paths.remove(path)
            paths.insert(0, path) if is_default else paths.append(path)

        def get_folder_paths(name: str) -> list[str]:
            return list(fp.folder_names_and_paths[name][0])

        def get_filename_list(name: str) -> list[str]:
            paths, exts = fp.folder_names_and_paths[name]
            found = []
            for base in paths:
                for dirpath, _, files in os.walk(base):
                    for f in files:
                        if not exts or os.path.splitext(f)[1].lower() in exts:
                            found.append(os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/"))
            return sorted(set(found))

        def get_full_path(name: str, filename: str) -> str | None:
            for base in fp.folder_names_and_paths[name][0]:
                path = os.path.join(base, filename)
                if os.path.isfile(path):
                    return path
            return None

        def get_full_path_or_raise(name: str, filename: str) -> str:
            path = get_full_path(name, filename)
            if path is None:
                raise FileNotFoundError(f"Model in folder '{name}' with filename '{filename}' not found.")
            return path

        def get_save_image_path(filename_prefix: str, output_dir: str, image_width=0, image_height=0):
            """(full_output_folder, filename, counter, subfolder, filename_prefix); counter follows '<name>_NNNNN_.*'."""
            subfolder = os.path.dirname(os.path.normpath(filename_prefix))
            filename = os.path.basename(os.path.normpath(filename_prefix))
            full_output_folder = os.path.join(output_dir, subfolder)
            if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
                raise Exception("Saving image outside the output folder is not allowed.")
            os.makedirs(full_output_folder, exist_ok=True)
            counters = []
            for f in os.listdir(full_output_folder):
                head, _, rest = f.partition(filename + "_")
                number = rest.split("_")[0]
                if head == "" and rest and number.isdigit():
                    counters.append(int(number))
            return full_output_folder, filename, max(counters, default=0) + 1, subfolder, filename_prefix

        fp.__dict__.update(add_model_folder_path=add_model_folder_path, get_folder_paths=get_folder_paths,
                           get_filename_list=get_filename_list, get_full_path=get_full_path,
                           get_full_path_or_raise=get_full_path_or_raise, get_save_image_path=get_save_image_path)
        return fp

    def _model_management(self) -> types.ModuleType:
        mm = types.ModuleType("comfy.model_management")

        def interrupt_current_processing(value: bool = True) -> None:
            self.interrupted = value

        def processing_interrupted() -> bool:
            return self.interrupted

        def throw_exception_if_processing_interrupted() -> None:
            if self.interrupted:
                self.interrupted = False
                raise InterruptProcessingException()

        mm.__dict__.update(InterruptProcessingException=InterruptProcessingException,
                           interrupt_current_processing=interrupt_current_processing,
                           processing_interrupted=processing_interrupted,
                           throw_exception_if_processing_interrupted=throw_exception_if_processing_interrupted)
        return mm

    # -----------------------------------------------------------------------------------------
    def load_plugin(self, folder: Path, name: str | None = None) -> types.ModuleType:
        """Import a custom-node folder as ComfyUI does: a package named after the folder, from its __init__.py."""
        folder = Path(folder)
        name = name or folder.name
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
        module = importlib.util.module_from_spec(spec)
        self._plugins.append(name)
        self._install(name, module)
        spec.loader.exec_module(module)
        return module


# ---------------------------------------------------------------------------------------------
# core nodes used by the example workflows (their ComfyUI names, inputs and outputs)


class LoadImage:
    """Core LoadImage: a file of the input folder -> IMAGE [1,H,W,3], MASK [1,H,W] (1 where transparent)."""

    CATEGORY = "image"
    FUNCTION = "load_image"
    RETURN_TYPES = ("IMAGE", "MASK")
    input_dir: str = ""

    @classmethod
    def INPUT_TYPES(cls):
        files = sorted(os.listdir(cls.input_dir)) if cls.input_dir else []
        return {"required": {"image": (files, {"image_upload": True})}}

    def load_image(self, image: str):
        img = Image.open(os.path.join(self.input_dir, image))
        rgb = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]
        if "A" in img.getbands():
            mask = 1.0 - torch.from_numpy(np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0)
        else:
            mask = torch.zeros(64, 64)
        return rgb, mask[None]


class PreviewImage:
    """Core PreviewImage (output node): shows IMAGE."""

    CATEGORY = "image"
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def save_images(self, images):
        return {"ui": {"images": [{"shape": tuple(images.shape)}]}}


class SaveAnimatedWEBP:
    """Core SaveAnimatedWEBP (output node): IMAGE frames as an animated .webp at ``fps``."""

    CATEGORY = "image/animation"
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE",),
            "filename_prefix": ("STRING", {"default": "ComfyUI"}),
            "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
            "lossless": ("BOOLEAN", {"default": True}),
            "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
            "method": (["default", "fastest", "slowest"],),
        }}

    def save_images(self, images, filename_prefix, fps, lossless, quality, method):
        return {"ui": {"images": [{"frames": images.shape[0], "fps": fps}]}}


CORE_NODES = {"LoadImage": LoadImage, "PreviewImage": PreviewImage, "SaveAnimatedWEBP": SaveAnimatedWEBP}


# ---------------------------------------------------------------------------------------------
# workflows


def is_link(value) -> bool:
    """An API-format input that is a link: [source node id, output index]."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def input_specs(cls) -> dict[str, tuple]:
    """Required and optional input specs of a node class, in declaration order."""
    spec = cls.INPUT_TYPES()
    return {**spec.get("required", {}), **spec.get("optional", {})}


def is_widget(spec: tuple) -> bool:
    """Whether an input is a widget (a value typed in the node) rather than a socket."""
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def check_value(spec: tuple, value, where: str) -> None:
    """Raise AssertionError when a widget value does not fit its spec."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list):
        assert value in kind, f"{where}: {value!r} is not one of {kind}"
        return
    want = {"INT": int, "FLOAT": (int, float), "STRING": str, "BOOLEAN": bool}[kind]
    assert isinstance(value, want) and not (kind != "BOOLEAN" and isinstance(value, bool)), \
        f"{where}: {value!r} is not a {kind}"
    if kind in ("INT", "FLOAT"):
        assert opts.get("min", -np.inf) <= value <= opts.get("max", np.inf), f"{where}: {value} outside min/max"


def validate_api_workflow(prompt: dict, nodes: dict) -> None:
    """Every node type exists, required inputs are given, links point at outputs of the input's type."""
    for node_id, node in prompt.items():
        cls = nodes.get(node["class_type"])
        assert cls is not None, f"node {node_id}: unknown type {node['class_type']}"
        specs = input_specs(cls)
        missing = set(cls.INPUT_TYPES().get("required", {})) - set(node["inputs"])
        assert not missing, f"node {node_id} ({node['class_type']}) lacks required inputs {missing}"
        for name, value in node["inputs"].items():
            assert name in specs, f"node {node_id}: unknown input {name}"
            where = f"node {node_id} ({node['class_type']}).{name}"
            if is_link(value):
                src = prompt.get(value[0])
                assert src is not None, f"{where}: links to missing node {value[0]}"
                outputs = nodes[src["class_type"]].RETURN_TYPES
                assert value[1] < len(outputs), f"{where}: links to output {value[1]} of {src['class_type']}"
                want = specs[name][0]
                assert outputs[value[1]] == want, f"{where}: {outputs[value[1]]} linked to a {want} input"
            else:
                assert is_widget(specs[name]), f"{where}: socket input given a value instead of a link"
                check_value(specs[name], value, where)


def validate_ui_workflow(workflow: dict, nodes: dict) -> None:
    """Node types exist; every link joins an output and an input of its type and both ends list it."""
    by_id = {n["id"]: n for n in workflow["nodes"]}
    assert len(by_id) == len(workflow["nodes"]), "duplicate node ids"
    for n in workflow["nodes"]:
        cls = nodes.get(n["type"])
        assert cls is not None, f"node {n['id']}: unknown type {n['type']}"
        assert [o["type"] for o in n.get("outputs", [])] == list(cls.RETURN_TYPES), f"node {n['id']}: outputs differ"
        specs = input_specs(cls)
        for slot in n.get("inputs", []):
            assert slot["name"] in specs, f"node {n['id']}: unknown input {slot['name']}"
            assert slot["type"] == specs[slot["name"]][0], f"node {n['id']}.{slot['name']}: type {slot['type']}"
        if n["type"] not in CORE_NODES:
            widgets = [k for k, s in specs.items() if is_widget(s)]
            assert len(n["widgets_values"]) == len(widgets), f"node {n['id']}: widgets_values do not match {widgets}"
            for name, value in zip(widgets, n["widgets_values"]):
                check_value(specs[name], value, f"node {n['id']}.{name}")
    seen = set()
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        assert link_id not in seen, f"duplicate link {link_id}"
        seen.add(link_id)
        assert src in by_id and dst in by_id, f"link {link_id}: missing node"
        out = by_id[src]["outputs"][src_slot]
        inp = by_id[dst]["inputs"][dst_slot]
        assert out["type"] == kind == inp["type"], f"link {link_id}: {out['type']} -> {inp['type']} as {kind}"
        assert link_id in (out.get("links") or []) and inp["link"] == link_id, f"link {link_id}: ends disagree"
    assert workflow["last_link_id"] >= max(seen, default=0) and workflow["last_node_id"] >= max(by_id)


def run_api_workflow(prompt: dict, nodes: dict) -> tuple[dict, dict]:
    """Execute an API-format prompt in dependency order; returns ({node id: outputs}, {node id: ui})."""
    outputs, ui, pending = {}, {}, dict(prompt)
    while pending:
        ready = [i for i, n in pending.items()
                 if all(not is_link(v) or v[0] in outputs for v in n["inputs"].values())]
        assert ready, f"cycle or dangling link among {sorted(pending)}"
        for node_id in ready:
            node = pending.pop(node_id)
            cls = nodes[node["class_type"]]
            kwargs = {k: outputs[v[0]][v[1]] if is_link(v) else v for k, v in node["inputs"].items()}
            result = getattr(cls(), cls.FUNCTION)(**kwargs)
            if isinstance(result, dict):
                ui[node_id] = result.get("ui")
                result = result.get("result", ())
            outputs[node_id] = tuple(result)
    return outputs, ui
