"""SMPL-X motions: the Motion type, files (LHM, AMASS, ours), presets, timing edits and cameras.

``load_motion`` reads a preset name, a folder or a file; ``list_motions`` lists the presets;
``save_motion`` writes our .npz, an LHM folder/zip or AMASS; ``motion_camera`` frames a motion.
"""
from .cameras import motion_camera, posed_points
from .formats import MAX_FRAMES, MotionError, load_motion, save_motion
from .limits import LIMITS, limit_violations
from .motion import POSE_FIELDS, REST_PELVIS, Motion
from .presets import PresetInfo, list_motions
from .timing import loop, mirror, resample, trim

__all__ = [
    "MAX_FRAMES", "LIMITS", "Motion", "MotionError", "POSE_FIELDS", "PresetInfo", "REST_PELVIS",
    "limit_violations", "list_motions", "load_motion", "loop", "mirror", "motion_camera", "posed_points",
    "resample", "save_motion", "trim",
]
