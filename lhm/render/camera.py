"""The one camera type of the project: OpenCV pinhole (x right, y down, z forward)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Camera:
    """Pinhole camera(s) in the OpenCV convention.

    K [...,3,3] intrinsics in pixels (pixel centres at +0.5); viewmat [...,4,4] world-to-camera;
    width/height in pixels. Leading batch dimensions describe several cameras or frames.
    """

    K: torch.Tensor
    viewmat: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.K.shape[-2:] != (3, 3) or self.viewmat.shape[-2:] != (4, 4):
            raise ValueError(f"Camera needs K [...,3,3] and viewmat [...,4,4], got {tuple(self.K.shape)} and {tuple(self.viewmat.shape)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Camera size must be positive, got {self.width}x{self.height}")

    @property
    def batch_shape(self) -> torch.Size:
        """Leading shape of the camera batch (empty for one camera)."""
        return torch.broadcast_shapes(self.K.shape[:-2], self.viewmat.shape[:-2])

    def __len__(self) -> int:
        shape = self.batch_shape
        return shape[0] if len(shape) else 1

    def __getitem__(self, i) -> "Camera":
        shape = self.batch_shape
        K = self.K.expand(*shape, 3, 3)[i]
        V = self.viewmat.expand(*shape, 4, 4)[i]
        return Camera(K, V, self.width, self.height)

    def to(self, *args, **kwargs) -> "Camera":
        """Move/cast the matrices (like ``Tensor.to``)."""
        return Camera(self.K.to(*args, **kwargs), self.viewmat.to(*args, **kwargs), self.width, self.height)

    @property
    def center(self) -> torch.Tensor:
        """Camera centre(s) in world coordinates [...,3]."""
        R = self.viewmat[..., :3, :3]
        t = self.viewmat[..., :3, 3:]
        return -(R.transpose(-1, -2) @ t)[..., 0]

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points [...,N,3] in camera coordinates [...,N,3] (z = depth); leading dims broadcast with the batch."""
        V = self.viewmat.to(points)
        return points @ V[..., :3, :3].transpose(-1, -2) + V[..., None, :3, 3]

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates [...,N,2] (pixel centres at +0.5) of world points [...,N,3].

        Leading dims broadcast with the batch; depth is clamped at 1e-6 so points on or behind the
        camera plane stay finite.
        """
        p = self.world_to_camera(points)
        K = self.K.to(points)
        uv = p[..., :2] / p[..., 2:].clamp_min(1e-6)
        return uv @ K[..., :2, :2].transpose(-1, -2) + K[..., None, :2, 2]

    def scaled(self, height: int, width: int | None = None) -> "Camera":
        """The same view on the image resized to ``height`` rows and ``width`` columns.

        ``width`` defaults to the width scaled like the height, rounded; K is scaled per axis by
        the actual size ratios, so pixel coordinates scale exactly with the image.
        """
        s = height / self.height
        if width is None:
            width = round(self.width * s)
        K = self.K.clone()
        K[..., 0, :] *= width / self.width
        K[..., 1, :] *= s
        return Camera(K, self.viewmat, width, height)

    @staticmethod
    def intrinsics(width: int, height: int, fov_y_deg: float | None = None, focal: float | None = None,
                   dtype=torch.float32) -> torch.Tensor:
        """A centred K for an image size and either a vertical field of view or a focal length."""
        if focal is None:
            if fov_y_deg is None:
                raise ValueError("give fov_y_deg or focal")
            focal = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)

    @classmethod
    def look_at(cls, eye, target, width: int, height: int, fov_y_deg: float = 30.0,
                up=(0.0, 1.0, 0.0), focal: float | None = None) -> "Camera":
        """A camera at ``eye`` looking at ``target`` (world y-up by default); eye/target may be batched [...,3]."""
        eye = torch.as_tensor(eye, dtype=torch.float32)
        target = torch.as_tensor(target, dtype=torch.float32)
        up = torch.as_tensor(up, dtype=torch.float32).expand_as(eye)
        z = torch.nn.functional.normalize(target - eye, dim=-1)  # forward
        x = torch.nn.functional.normalize(torch.cross(z, up, dim=-1), dim=-1)  # right; y = z × x points down
        y = torch.cross(z, x, dim=-1)
        R = torch.stack([x, y, z], dim=-2)
        V = torch.zeros(*eye.shape[:-1], 4, 4)
        V[..., :3, :3] = R
        V[..., :3, 3] = -(R @ eye[..., None])[..., 0]
        V[..., 3, 3] = 1.0
        K = cls.intrinsics(width, height, fov_y_deg=fov_y_deg, focal=focal)
        return cls(K.expand(*eye.shape[:-1], 3, 3).clone(), V, width, height)
