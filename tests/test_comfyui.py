"""The ComfyUI plugin (comfyui/): node contracts, example workflows, and the nodes run end to end on CPU.

ComfyUI is not on PyPI, so ``comfy_harness`` stands in for the modules the plugin imports
(folder_paths, comfy.utils, comfy.model_management, comfy_api.latest) and imports the plugin folder
the way ComfyUI does.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import comfy_harness as H
import lhm
from lhm.body.canonical import CanonicalSpace, sample_surface
from lhm.errors import InputError
from lhm.io import load_ply, load_splat
from lhm.io.ply import SH_C0
from lhm.pipeline import timed_motion
from lhm.render import frame_points

PLUGIN = Path(__file__).resolve().parents[1] / "comfyui"
WORKFLOWS = PLUGIN / "workflows"
API_WORKFLOW = WORKFLOWS / "lhm_photo_to_animation_api.json"
UI_WORKFLOW = WORKFLOWS / "lhm_photo_to_animation.json"
FOLDER_NAME = "ComfyUI-LHM"  # what users call the link in custom_nodes; any name must work


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A ComfyUI base folder with the stand-in modules and the plugin linked into custom_nodes."""
    harness = H.Harness(tmp_path_factory.mktemp("ComfyUI"))
    extra = str(harness.root / "elsewhere" / "lhm")
    # as extra_model_paths.yaml does before custom nodes load
    harness.folder_paths.add_model_folder_path("lhm", extra)
    link = harness.root / "custom_nodes" / FOLDER_NAME
    link.symlink_to(PLUGIN, target_is_directory=True)
    harness.plugin = harness.load_plugin(link)
    harness.extra_models = extra
    H.LoadImage.input_dir = str(harness.root / "input")
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def nodes(comfy):
    """Every node a workflow may use: ours and the core stand-ins."""
    return {**H.CORE_NODES, **comfy.plugin.NODE_CLASS_MAPPINGS}


def _synthetic_person(width: int = 192, height: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """The free body in the T-pose as coloured Gaussians (skin head, blue top, grey trousers), front view."""
    body = lhm.load_body("free")
    space = CanonicalSpace.from_samples(body, sample_surface(body, 6000, seed=0))
    n = len(space)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    g = lhm.Gaussians(space.points.clone(), quats, torch.full((n, 3), 0.012), torch.full((n,), 0.95), torch.zeros(n, 3))
    avatar = lhm.Avatar.from_canonical(space, body, g)
    posed = avatar.tpose()
    y = posed.means[:, 1]
    t = (y - y.min()) / (y.max() - y.min())
    colors = torch.where(t[:, None] > 0.85, torch.tensor([0.85, 0.65, 0.5]),
                         torch.where(t[:, None] > 0.5, torch.tensor([0.15, 0.3, 0.8]), torch.tensor([0.35, 0.35, 0.38])))
    posed = posed.replace(colors=colors)
    out = lhm.render(posed, frame_points(posed.means, width, height, margin=0.1), background=1.0)
    return out.rgb.numpy(), (out.alpha[..., 0] > 0.5).float().numpy()


@pytest.fixture(scope="module")
def photo(comfy):
    """The synthetic photo as person.png in ComfyUI's input folder, and its person mask [1,H,W]."""
    rgb, mask = _synthetic_person()
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(comfy.root / "input" / "person.png")
    return torch.from_numpy(mask)[None]


def _fast(prompt: dict, mask: torch.Tensor) -> dict:
    """The example workflow as a user would shrink it for a quick try, with the person mask supplied.

    The mask stands in for a segmentation node: background removal would need rembg's model (a download).
    """
    prompt = copy.deepcopy(prompt)
    by_type = {n["class_type"]: n for n in prompt.values()}
    by_type["LHMMotion"]["inputs"]["frame_count"] = 4
    by_type["LHMAnimate"]["inputs"].update(width=96, height=128)
    by_type["LHMReconstruct"]["inputs"]["mask"] = mask
    return prompt


@pytest.fixture(scope="module")
def run(comfy, nodes, photo):
    """The example API workflow executed once: (outputs by node id, ui by node id, the prompt run)."""
    prompt = _fast(json.loads(API_WORKFLOW.read_text()), photo)
    outputs, ui = H.run_api_workflow(prompt, nodes)
    return outputs, ui, prompt


def _node_id(prompt: dict, class_type: str) -> str:
    return next(i for i, n in prompt.items() if n["class_type"] == class_type)


# ---------------------------------------------------------------------------------------------
# contract


def test_every_node_follows_the_comfyui_contract(comfy):
    mappings, names = comfy.plugin.NODE_CLASS_MAPPINGS, comfy.plugin.NODE_DISPLAY_NAME_MAPPINGS
    assert set(mappings) == {"LHMLoadModel", "LHMReconstruct", "LHMMotion", "LHMAnimate", "LHMSaveGaussians",
                             "LHMToSplat"}
    for key, cls in mappings.items():
        assert key.startswith("LHM") and names[key].startswith("LHM "), key
        assert cls.CATEGORY == "LHM" and callable(getattr(cls, cls.FUNCTION)), key
        assert isinstance(cls.RETURN_TYPES, tuple) and len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES), key
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES), key
        assert isinstance(getattr(cls, "OUTPUT_NODE", False), bool)
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"} and spec["required"], key
        for section in ("required", "optional"):
            for name, value in spec.get(section, {}).items():
                where = f"{key}.{name}"
                assert isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict), where
                kind, opts = value
                assert isinstance(kind, list) or (isinstance(kind, str) and kind.isupper()), where
                assert opts.get("tooltip"), f"{where} has no tooltip"
                if isinstance(kind, list):
                    assert kind and opts["default"] in kind, where
                elif kind in H.WIDGET_TYPES:
                    H.check_value(value, opts["default"], where)
                    if kind in ("INT", "FLOAT"):
                        assert opts["min"] <= opts["max"], where


def test_model_folder_is_registered_and_keeps_extra_paths(comfy):
    paths, extensions = comfy.folder_paths.folder_names_and_paths["lhm"]
    assert os.path.join(comfy.folder_paths.models_dir, "lhm") in paths and comfy.extra_models in paths
    assert ".safetensors" in extensions  # a filtered set: an empty one would match every file
    assert comfy.folder_paths.get_folder_paths("lhm") == paths


def test_older_comfyui_without_splat_type_gets_every_node_but_to_splat(tmp_path, caplog):
    harness = H.Harness(tmp_path, splat=False)
    try:
        copy_dir = tmp_path / "custom_nodes" / "lhm nodes (copy)"
        shutil.copytree(PLUGIN, copy_dir, ignore=shutil.ignore_patterns("__pycache__"))
        with caplog.at_level(logging.INFO):
            plugin = harness.load_plugin(copy_dir)
        assert "LHMToSplat" not in plugin.NODE_CLASS_MAPPINGS and len(plugin.NODE_CLASS_MAPPINGS) == 5
        assert "LHMToSplat" not in plugin.NODE_DISPLAY_NAME_MAPPINGS
        assert any("no SPLAT type" in r.getMessage() for r in caplog.records)
    finally:
        harness.close()


def test_example_workflows_are_valid_and_agree(comfy, nodes, photo):
    api = json.loads(API_WORKFLOW.read_text())
    ui = json.loads(UI_WORKFLOW.read_text())
    H.validate_api_workflow(api, nodes)
    H.validate_ui_workflow(ui, nodes)
    assert {n["class_type"] for n in api.values()} == {n["type"] for n in ui["nodes"]}
    api_links = {(int(v[0]), v[1], int(i), k) for i, n in api.items() for k, v in n["inputs"].items() if H.is_link(v)}
    ui_inputs = {n["id"]: n["inputs"] for n in ui["nodes"]}
    ui_links = {(src, slot, dst, ui_inputs[dst][dslot]["name"]) for _, src, slot, dst, dslot, _ in ui["links"]}
    assert api_links == ui_links
    for n in ui["nodes"]:  # the same widget values in both formats
        if n["type"] in comfy.plugin.NODE_CLASS_MAPPINGS:
            widgets = [k for k, s in H.input_specs(nodes[n["type"]]).items() if H.is_widget(s)]
            assert dict(zip(widgets, n["widgets_values"])) == {k: api[str(n["id"])]["inputs"][k] for k in widgets}


# ---------------------------------------------------------------------------------------------
# end to end


def test_workflow_runs_end_to_end(comfy, run):
    outputs, ui, prompt = run
    avatar, crop, crop_mask = outputs[_node_id(prompt, "LHMReconstruct")]
    assert isinstance(avatar, lhm.Avatar)
    assert crop.dtype == torch.float32 and crop.dim() == 4 and crop.shape[0] == 1 and crop.shape[-1] == 3
    assert crop_mask.shape == crop.shape[:3] and 0 <= crop.min() and crop.max() <= 1
    assert 0 <= crop_mask.min() and crop_mask.max() <= 1 and crop_mask.mean() > 0.05

    frames, alpha, fps = outputs[_node_id(prompt, "LHMAnimate")]
    assert frames.shape == (4, 128, 96, 3) and frames.dtype == torch.float32
    assert alpha.shape == (4, 128, 96) and alpha.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1 and 0 <= alpha.min() and alpha.max() <= 1
    assert alpha.mean() > 0.02 and fps == 30.0
    # the background is the colour asked for where the avatar is absent
    assert torch.allclose(frames[alpha < 1e-3], torch.ones(3), atol=1 / 255)
    assert ui[_node_id(prompt, "SaveAnimatedWEBP")]["images"][0] == {"frames": 4, "fps": 30.0}
    bars = [b for b in comfy.bars if b.total == 4]  # Animate's bar counts frames
    assert bars and bars[-1].current == 4

    ply, splat = outputs[_node_id(prompt, "LHMSaveGaussians")]
    assert Path(ply).parent == comfy.root / "output" / "lhm" and Path(ply).name == "avatar_00001_.ply"
    assert Path(splat).name == "avatar_00001_.splat"
    assert ui[_node_id(prompt, "LHMSaveGaussians")] == {"text": ["lhm/avatar_00001_.ply", "lhm/avatar_00001_.splat"]}
    tpose = avatar.tpose().detach().to("cpu")
    back = load_ply(ply)
    assert len(back) == len(avatar) and torch.allclose(back.means, tpose.means, atol=1e-5)
    assert len(load_splat(splat)) == len(avatar)


def test_save_gaussians_numbers_files_and_poses_motion_frames(comfy, run):
    outputs, _, prompt = run
    avatar = outputs[_node_id(prompt, "LHMReconstruct")][0]
    motion = comfy.plugin.NODE_CLASS_MAPPINGS["LHMMotion"]().motion("wave", 0, 10, 0.0, 0.0)[0]
    save = comfy.plugin.NODE_CLASS_MAPPINGS["LHMSaveGaussians"]()
    result = save.save(avatar, "motion frame", "lhm/avatar", motion=motion, frame=7)
    ply = Path(result["result"][0])
    assert ply.name == "avatar_00002_.ply"
    expected = avatar.posed(7, lhm.load_motion("wave", body=avatar)).detach().to("cpu")
    assert torch.allclose(load_ply(ply).means, expected.means, atol=1e-5)
    with pytest.raises(InputError, match="needs a motion"):
        save.save(avatar, "motion frame", "lhm/avatar")
    with pytest.raises(InputError, match="outside the motion"):
        save.save(avatar, "motion frame", "lhm/avatar", motion=motion, frame=10)


def test_to_splat_builds_comfyui_splat(comfy, run):
    outputs, _, prompt = run
    avatar = outputs[_node_id(prompt, "LHMReconstruct")][0]
    (splat,) = comfy.plugin.NODE_CLASS_MAPPINGS["LHMToSplat"]().to_splat(avatar, "tpose")
    assert isinstance(splat, H.SPLAT)
    g = avatar.tpose().detach().to("cpu")
    n = len(g)
    assert splat.positions.shape == (1, n, 3) and splat.scales.shape == (1, n, 3)
    assert splat.rotations.shape == (1, n, 4) and splat.opacities.shape == (1, n, 1) and splat.sh.shape == (1, n, 1, 3)
    assert splat.counts.tolist() == [n]
    for t in (splat.positions, splat.scales, splat.rotations, splat.opacities, splat.sh):
        assert t.dtype == torch.float32 and t.device.type == "cpu"
    assert torch.allclose(splat.positions[0], g.means) and torch.allclose(splat.scales[0], g.scales)
    assert (splat.scales > 0).all() and 0 <= splat.opacities.min() and splat.opacities.max() <= 1
    assert torch.allclose(splat.rotations.norm(dim=-1), torch.ones(1, n), atol=1e-5)
    assert torch.allclose(splat.sh[0, :, 0] * SH_C0 + 0.5, g.colors, atol=1e-5)  # rgb back from the DC term


def test_animate_stops_when_interrupted(comfy, run):
    outputs, _, prompt = run
    model = outputs[_node_id(prompt, "LHMLoadModel")][0]
    avatar = outputs[_node_id(prompt, "LHMReconstruct")][0]
    motion = comfy.plugin.NODE_CLASS_MAPPINGS["LHMMotion"]().motion("wave", 0, 6, 0.0, 0.0)[0]
    sys.modules["comfy.model_management"].interrupt_current_processing(True)  # the user pressed Cancel
    with pytest.raises(H.InterruptProcessingException):
        comfy.plugin.NODE_CLASS_MAPPINGS["LHMAnimate"]().animate(model, avatar, motion, 32, 32, "#000000", "front")
    assert comfy.bars[-1].total == 6 and comfy.bars[-1].current == 0  # stopped after the first frame


def test_load_model_is_cached_and_missing_checkpoints_name_the_folder(comfy, run, monkeypatch):
    outputs, _, prompt = run
    load = comfy.plugin.NODE_CLASS_MAPPINGS["LHMLoadModel"]()
    assert load.load("Fit", "auto", "auto")[0] is outputs[_node_id(prompt, "LHMLoadModel")][0]
    monkeypatch.delenv("LHM_MODELS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        load.load("LHM-MINI", "cpu", "auto")
    message = str(err.value)
    assert "LHM-MINI" in message  # the loader's own message, then where ComfyUI keeps models
    assert os.path.join(comfy.folder_paths.models_dir, "lhm") in message and comfy.extra_models in message
    assert "extra_model_paths.yaml" in message and "LHM_MODELS_DIR" not in os.environ


# ---------------------------------------------------------------------------------------------
# inputs


def test_motion_node_cuts_retimes_loops_and_reads_pasted_paths(comfy, tmp_path):
    node = comfy.plugin.NODE_CLASS_MAPPINGS["LHMMotion"]()

    def loaded(*args, **kwargs) -> lhm.Motion:
        return node.motion(*args, **kwargs)[0].load()

    full = lhm.load_motion("wave")
    cut = loaded("wave", 5, 10, 0.0, 0.0)
    assert len(cut) == 10 and torch.allclose(cut.body_pose, full.body_pose[5:15])
    assert len(loaded("wave", 0, 0, 15.0, 0.0)) == pytest.approx(len(full) / 2, abs=1)
    looped = loaded("wave", 0, 0, 0.0, full.duration * 2)
    assert looped.duration == pytest.approx(full.duration * 2, abs=1 / 30)

    folder = tmp_path / "my motions"
    folder.mkdir()
    lhm.save_motion(cut, folder / "cut.npz")
    for pasted in (f'"{folder / "cut.npz"}"', f"  '{folder / 'cut.npz'}' "):
        assert len(loaded("walk", 0, 0, 0.0, 0.0, motion_file=pasted)) == 10
    shutil.copy(folder / "cut.npz", comfy.root / "input" / "cut.npz")
    assert len(loaded("walk", 0, 0, 0.0, 0.0, motion_file="cut.npz")) == 10  # ComfyUI's input folder
    with pytest.raises(lhm.MotionError):
        node.motion("wave", 0, 0, 0.0, 0.0, motion_file=str(folder / "missing.npz"))
    with pytest.raises(InputError, match="past the end"):
        node.motion("wave", len(full), 0, 0.0, 0.0)


def test_presets_are_fitted_to_the_avatars_own_body(comfy, run):
    """A preset on an avatar with longer legs than the free body's takes its strides, as ``lhm avatar`` does."""
    outputs, _, prompt = run
    model = outputs[_node_id(prompt, "LHMLoadModel")][0]
    reconstructed = outputs[_node_id(prompt, "LHMReconstruct")][0]
    betas = torch.zeros_like(reconstructed.betas)
    betas[0] = 2.0
    avatar = dataclasses.replace(reconstructed, betas=betas)
    fitted, free = timed_motion("walk", 10.0, body=avatar), timed_motion("walk", 10.0)
    assert float((fitted.trans - free.trans).abs().max()) > 0.01  # the bodies differ enough to tell apart

    request = comfy.plugin.NODE_CLASS_MAPPINGS["LHMMotion"]().motion("walk", 0, 0, 10.0, 0.0)[0]
    frames, alpha, _ = comfy.plugin.NODE_CLASS_MAPPINGS["LHMAnimate"]().animate(
        model, avatar, request, 32, 32, "#000000", "front")
    # the command line's call: the preset by name, loaded for the avatar inside Pipeline.animate
    cli = model.animate(avatar, "walk", size=32, camera="front", fps=10.0, background=0.0)
    assert torch.equal(frames, cli.rgb.float() / 255) and torch.equal(alpha, cli.alpha)
    on_free_body = model.animate(avatar, free, size=32, camera="front", background=0.0)
    assert not torch.equal(frames, on_free_body.rgb.float() / 255)

    last = len(fitted) - 1
    (splat,) = comfy.plugin.NODE_CLASS_MAPPINGS["LHMToSplat"]().to_splat(avatar, "motion frame", request, last)
    torch.testing.assert_close(splat.positions[0], avatar.posed(last, fitted).detach().means)
    result = comfy.plugin.NODE_CLASS_MAPPINGS["LHMSaveGaussians"]().save(avatar, "motion frame", "lhm/tall",
                                                                         motion=request, frame=last)
    torch.testing.assert_close(load_ply(result["result"][0]).means, splat.positions[0])


def test_bad_inputs_raise_messages_a_user_can_act_on(comfy, run):
    outputs, _, prompt = run
    model = outputs[_node_id(prompt, "LHMLoadModel")][0]
    avatar = outputs[_node_id(prompt, "LHMReconstruct")][0]
    motion = outputs[_node_id(prompt, "LHMMotion")][0]
    animate = comfy.plugin.NODE_CLASS_MAPPINGS["LHMAnimate"]()
    with pytest.raises(InputError, match="hex colour"):
        animate.animate(model, avatar, motion, 32, 32, "white-ish", "front")
    with pytest.raises(InputError, match="no camera of its own"):
        animate.animate(model, avatar, motion, 32, 32, "#fff", "motion")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            comfy.plugin.NODE_CLASS_MAPPINGS["LHMLoadModel"]().load("Fit", "cuda", "auto")
