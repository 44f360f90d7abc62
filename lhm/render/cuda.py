"""CUDA backend of ``lhm.render``: gsplat's fused rasterizer in classic 3DGS mode.

gsplat is imported inside the function so that CPU-only use never loads it (nor its CUDA build).
"""
from __future__ import annotations


def rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds,
              sh_degree=None, near_plane=0.01, eps2d=0.3):
    """gsplat twin of ``lhm.render.cpu.rasterize`` (same arguments, outputs and conventions)."""
    from gsplat import rasterization

    B = viewmats.shape[0]
    if means.shape[0] == 1:
        # one set of Gaussians seen by B cameras: gsplat's camera axis
        gauss = (means[0], quats[0], scales[0], opacities[0], colors[0])
        cams = (viewmats, Ks, backgrounds)
    else:
        # Gaussians of frame b seen by camera b: gsplat's batch axis with one camera each
        gauss = (means, quats, scales, opacities, colors)
        cams = (viewmats[:, None], Ks[:, None], backgrounds[:, None])
    img, alpha, _ = rasterization(
        *gauss, cams[0], cams[1], width, height, near_plane=near_plane, eps2d=eps2d, sh_degree=sh_degree,
        packed=True, backgrounds=cams[2], render_mode="RGB+ED", rasterize_mode="classic")
    img = img.reshape(B, height, width, 4)
    return img[..., :3], alpha.reshape(B, height, width, 1), img[..., 3]
