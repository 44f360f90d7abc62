"""CPU Gaussian rasterizer: numba kernels for projection, tiling and compositing, with analytic backward.

The image formation is gsplat's classic 3DGS mode (see ``lhm.render``). A forward pass is three
numba calls covering all frames at once: EWA projection of every Gaussian; opacity-aware pixel
rectangles and per-tile lists in depth order; front-to-back compositing of 16x16 tiles in
parallel. The backward pass replays every tile back to front as in 3DGS, then applies the
projection's vector-Jacobian product. ``torch.autograd.Function`` glues both to autograd.

A Gaussian touches a pixel when ``opacity * exp(-power) >= 1/255``; its pixel rectangle is the
tight box of that ellipse (gsplat >= 1.5 uses the same box), so the result does not depend on
the tiling and equals a plain per-pixel loop over all Gaussians in depth order.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
import torch
from numba import njit, prange

TILE = 16
ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped
ALPHA_MAX = 0.999  # gsplat's clamp (the original 3DGS CUDA code uses 0.99)
T_MIN = 1e-4  # a pixel stops before its transmittance would fall to this
_F32 = np.float32
_ALPHA_MIN32 = _F32(ALPHA_MIN)
_ALPHA_MAX32 = _F32(ALPHA_MAX)
_T_MIN32 = _F32(T_MIN)
# pixel-rectangle slack so float rounding of the ellipse bound never drops a contributing pixel
_RECT_SLACK = 0.01
_U = nb.uintp


# --------------------------------------------------------------------------------------------
# projection (float64 arithmetic, float32 storage). Inputs with a leading axis of 1 are shared
# by all B cameras; outputs are per camera [B,N,...].
# --------------------------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def _mat3(a, b):
    """Product of two row-major 3x3 matrices given as 9-tuples."""
    return (a[0] * b[0] + a[1] * b[3] + a[2] * b[6], a[0] * b[1] + a[1] * b[4] + a[2] * b[7],
            a[0] * b[2] + a[1] * b[5] + a[2] * b[8],
            a[3] * b[0] + a[4] * b[3] + a[5] * b[6], a[3] * b[1] + a[4] * b[4] + a[5] * b[7],
            a[3] * b[2] + a[4] * b[5] + a[5] * b[8],
            a[6] * b[0] + a[7] * b[3] + a[8] * b[6], a[6] * b[1] + a[7] * b[4] + a[8] * b[7],
            a[6] * b[2] + a[7] * b[5] + a[8] * b[8])


@njit(cache=True, error_model="numpy")
def _ewa(means, quats, scales, viewmats, Ks, b, n, width, height):
    """Shared forward terms of Gaussian n seen by camera b (also replayed by the backward).

    Returns the camera point (x, y, z), the unit quaternion and its norm, its rotation Rq, the
    world-to-camera rotation W, A = W Rq diag(s), the Jacobian-clamp terms (tx, ty and whether
    each is unclamped), and the rows T0, T1 of J A (cov2d = [T0; T1] [T0; T1]^T + eps I).
    """
    g = b if means.shape[0] > 1 else 0
    V, K = viewmats[b], Ks[b]
    mx, my, mz = np.float64(means[g, n, 0]), np.float64(means[g, n, 1]), np.float64(means[g, n, 2])
    x = V[0, 0] * mx + V[0, 1] * my + V[0, 2] * mz + V[0, 3]
    y = V[1, 0] * mx + V[1, 1] * my + V[1, 2] * mz + V[1, 3]
    z = V[2, 0] * mx + V[2, 1] * my + V[2, 2] * mz + V[2, 3]
    qw, qx, qy, qz = (np.float64(quats[g, n, 0]), np.float64(quats[g, n, 1]), np.float64(quats[g, n, 2]),
                      np.float64(quats[g, n, 3]))
    qn = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w, i, j, k = qw / qn, qx / qn, qy / qn, qz / qn
    Rq = (1 - 2 * (j * j + k * k), 2 * (i * j - w * k), 2 * (i * k + w * j),
          2 * (i * j + w * k), 1 - 2 * (i * i + k * k), 2 * (j * k - w * i),
          2 * (i * k - w * j), 2 * (j * k + w * i), 1 - 2 * (i * i + j * j))
    s0, s1, s2 = np.float64(scales[g, n, 0]), np.float64(scales[g, n, 1]), np.float64(scales[g, n, 2])
    W = (np.float64(V[0, 0]), np.float64(V[0, 1]), np.float64(V[0, 2]), np.float64(V[1, 0]), np.float64(V[1, 1]),
         np.float64(V[1, 2]), np.float64(V[2, 0]), np.float64(V[2, 1]), np.float64(V[2, 2]))
    A = _mat3(W, (Rq[0] * s0, Rq[1] * s1, Rq[2] * s2, Rq[3] * s0, Rq[4] * s1, Rq[5] * s2,
                  Rq[6] * s0, Rq[7] * s1, Rq[8] * s2))
    fx, fy, cx, cy = np.float64(K[0, 0]), np.float64(K[1, 1]), np.float64(K[0, 2]), np.float64(K[1, 2])
    rz = 1.0 / z
    # as gsplat: the Jacobian is evaluated at the mean clamped to 1.3x the field of view
    lim_x = 0.3 * 0.5 * width / fx
    lim_y = 0.3 * 0.5 * height / fy
    ux = min((width - cx) / fx + lim_x, max(-(cx / fx + lim_x), x * rz))
    uy = min((height - cy) / fy + lim_y, max(-(cy / fy + lim_y), y * rz))
    free_x = ux == x * rz
    free_y = uy == y * rz
    tx, ty = z * ux, z * uy
    T0 = (fx * rz * (A[0] - tx * rz * A[6]), fx * rz * (A[1] - tx * rz * A[7]), fx * rz * (A[2] - tx * rz * A[8]))
    T1 = (fy * rz * (A[3] - ty * rz * A[6]), fy * rz * (A[4] - ty * rz * A[7]), fy * rz * (A[5] - ty * rz * A[8]))
    return (x, y, z), (w, i, j, k), qn, Rq, W, A, (tx, ty, free_x, free_y), T0, T1


@njit(cache=True, parallel=True, error_model="numpy")
def _project(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near, eps2d):
    """Means2d, conics (a, b, c: power = a dx²/2 + b dx dy + c dy²/2), features (RGB, camera z),
    opacities and validity (in front of the near plane, positive-definite, opacity >= 1/255)."""
    B, N = viewmats.shape[0], means.shape[1]
    means2d = np.zeros((B, N, 2), np.float32)
    conics = np.zeros((B, N, 3), np.float32)
    feats = np.empty((B, N, 4), np.float32)
    opac = np.empty((B, N), np.float32)
    valid = np.zeros((B, N), np.bool_)
    for bn in prange(B * N):
        b = bn // N
        n = bn - b * N
        g = b if means.shape[0] > 1 else 0
        gc = b if colors.shape[0] > 1 else 0
        opac[b, n] = opacities[g, n]
        for ch in range(3):
            feats[b, n, ch] = colors[gc, n, ch]
        (x, y, z), _, _, _, _, _, _, T0, T1 = _ewa(means, quats, scales, viewmats, Ks, b, n, width, height)
        feats[b, n, 3] = z
        if not (z > near and opacities[g, n] >= ALPHA_MIN):  # written so that NaNs are culled too
            continue
        sxx = T0[0] * T0[0] + T0[1] * T0[1] + T0[2] * T0[2] + eps2d  # + eps2d: the 0.3-pixel low-pass
        sxy = T0[0] * T1[0] + T0[1] * T1[1] + T0[2] * T1[2]
        syy = T1[0] * T1[0] + T1[1] * T1[1] + T1[2] * T1[2] + eps2d
        det = sxx * syy - sxy * sxy
        if not det > 0:
            continue
        valid[b, n] = True
        conics[b, n, 0] = syy / det
        conics[b, n, 1] = -sxy / det
        conics[b, n, 2] = sxx / det
        K = Ks[b]
        means2d[b, n, 0] = K[0, 0] * x / z + K[0, 2]
        means2d[b, n, 1] = K[1, 1] * y / z + K[1, 2]
    return means2d, conics, feats, opac, valid


@njit(cache=True, error_model="numpy")  # serial: parallel halves ~3 ms but costs ~3 s more compile
def _project_backward(means, quats, scales, viewmats, Ks, width, height, conics, valid, g_means2d, g_conics,
                      g_depths):
    """Vector-Jacobian product of ``_project`` per camera: d/d means, quats, scales [B,N,·]."""
    B, N = valid.shape
    v_means = np.zeros((B, N, 3), np.float32)
    v_quats = np.zeros((B, N, 4), np.float32)
    v_scales = np.zeros((B, N, 3), np.float32)
    for bn in range(B * N):
        b = bn // N
        n = bn - b * N
        if not valid[b, n]:
            continue
        (x, y, z), (w, i, j, k), qn, Rq, W, A, (tx, ty, free_x, free_y), T0, T1 = _ewa(
            means, quats, scales, viewmats, Ks, b, n, width, height)
        g = b if means.shape[0] > 1 else 0
        fx, fy = np.float64(Ks[b, 0, 0]), np.float64(Ks[b, 1, 1])
        rz = 1.0 / z
        # conic = inverse(cov2d): d cov2d = -Q G Q with G the symmetric gradient of the conic matrix Q
        a, c_, c = np.float64(conics[b, n, 0]), np.float64(conics[b, n, 1]), np.float64(conics[b, n, 2])
        ga, gb, gc = np.float64(g_conics[b, n, 0]), 0.5 * np.float64(g_conics[b, n, 1]), np.float64(g_conics[b, n, 2])
        qg00, qg01 = a * ga + c_ * gb, a * gb + c_ * gc
        qg10, qg11 = c_ * ga + c * gb, c_ * gb + c * gc
        v00 = -(qg00 * a + qg01 * c_)
        v01 = -(qg00 * c_ + qg01 * c)
        v11 = -(qg10 * c_ + qg11 * c)
        # cov2d = T T^T with rows T0, T1 of T = J A
        vT0 = (2 * (v00 * T0[0] + v01 * T1[0]), 2 * (v00 * T0[1] + v01 * T1[1]), 2 * (v00 * T0[2] + v01 * T1[2]))
        vT1 = (2 * (v01 * T0[0] + v11 * T1[0]), 2 * (v01 * T0[1] + v11 * T1[1]), 2 * (v01 * T0[2] + v11 * T1[2]))
        j00, j02 = fx * rz, -fx * tx * rz * rz
        j11, j12 = fy * rz, -fy * ty * rz * rz
        vj00 = vT0[0] * A[0] + vT0[1] * A[1] + vT0[2] * A[2]
        vj02 = vT0[0] * A[6] + vT0[1] * A[7] + vT0[2] * A[8]
        vj11 = vT1[0] * A[3] + vT1[1] * A[4] + vT1[2] * A[5]
        vj12 = vT1[0] * A[6] + vT1[1] * A[7] + vT1[2] * A[8]
        vA = (j00 * vT0[0], j00 * vT0[1], j00 * vT0[2], j11 * vT1[0], j11 * vT1[1], j11 * vT1[2],
              j02 * vT0[0] + j12 * vT1[0], j02 * vT0[1] + j12 * vT1[1], j02 * vT0[2] + j12 * vT1[2])
        # camera point: pixel mean, depth, and the Jacobian (tx = x unless clamped, then tx = z * const)
        gu, gv = np.float64(g_means2d[b, n, 0]), np.float64(g_means2d[b, n, 1])
        rz2 = rz * rz
        vx = fx * rz * gu - (fx * rz2 * vj02 if free_x else 0.0)
        vy = fy * rz * gv - (fy * rz2 * vj12 if free_y else 0.0)
        vz = (np.float64(g_depths[b, n]) - (fx * x * gu + fy * y * gv) * rz2 - (fx * vj00 + fy * vj11) * rz2
              + (2.0 if free_x else 1.0) * fx * tx * rz2 * rz * vj02
              + (2.0 if free_y else 1.0) * fy * ty * rz2 * rz * vj12)
        for r in range(3):
            v_means[b, n, r] = W[r] * vx + W[3 + r] * vy + W[6 + r] * vz
        # A = W M, M = Rq diag(s)
        Wt = (W[0], W[3], W[6], W[1], W[4], W[7], W[2], W[5], W[8])
        vM = _mat3(Wt, vA)
        s = (np.float64(scales[g, n, 0]), np.float64(scales[g, n, 1]), np.float64(scales[g, n, 2]))
        for col in range(3):
            v_scales[b, n, col] = vM[col] * Rq[col] + vM[3 + col] * Rq[3 + col] + vM[6 + col] * Rq[6 + col]
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = (vM[0] * s[0], vM[1] * s[1], vM[2] * s[2], vM[3] * s[0],
                                                       vM[4] * s[1], vM[5] * s[2], vM[6] * s[0], vM[7] * s[1],
                                                       vM[8] * s[2])
        # Rq of the unit quaternion (w, i, j, k), then the normalisation
        dw = 2 * (-k * r01 + j * r02 + k * r10 - i * r12 - j * r20 + i * r21)
        di = 2 * (j * r01 + k * r02 + j * r10 - 2 * i * r11 - w * r12 + k * r20 + w * r21 - 2 * i * r22)
        dj = 2 * (-2 * j * r00 + i * r01 + w * r02 + i * r10 + k * r12 - w * r20 + k * r21 - 2 * j * r22)
        dk = 2 * (-2 * k * r00 - w * r01 + i * r02 + w * r10 - 2 * k * r11 + j * r12 + i * r20 + j * r21)
        dot = w * dw + i * di + j * dj + k * dk
        v_quats[b, n, 0] = (dw - w * dot) / qn
        v_quats[b, n, 1] = (di - i * dot) / qn
        v_quats[b, n, 2] = (dj - j * dot) / qn
        v_quats[b, n, 3] = (dk - k * dot) / qn
    return v_means, v_quats, v_scales


# --------------------------------------------------------------------------------------------
# tiles and compositing (float32). Composited features are always RGB + depth (4 channels):
# fixed-width accumulators run ~20% faster than a channel loop. Pixel offsets inside a tile are
# unsigned (uintp) so numba emits no negative-index wraparound.
# --------------------------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def _depth_order(depths, idx):
    """``idx`` sorted by ``depths[idx]`` (all > 0), stable: LSD radix sort of the float32 bit patterns."""
    keys = depths[idx].view(np.uint32)  # positive floats order like their bits
    idx = idx.copy()
    tmp_keys = np.empty_like(keys)
    tmp_idx = np.empty_like(idx)
    for shift in range(0, 32, 11):
        count = np.zeros(2049, np.int64)
        for i in range(keys.shape[0]):
            count[((keys[i] >> shift) & 2047) + 1] += 1
        count = np.cumsum(count)
        for i in range(keys.shape[0]):
            digit = (keys[i] >> shift) & 2047
            tmp_keys[count[digit]] = keys[i]
            tmp_idx[count[digit]] = idx[i]
            count[digit] += 1
        keys, tmp_keys = tmp_keys, keys
        idx, tmp_idx = tmp_idx, idx
    return idx


@njit(cache=True, parallel=True, error_model="numpy")
def _bin_tiles(means2d, conics, opacities, depths, valid, width, height):
    """Pixel rectangles, power cut-offs and per-tile depth-sorted Gaussian lists for every frame."""
    B, N = valid.shape
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    n_tiles = tiles_x * tiles_y
    rects = np.empty((B, N, 4), np.int32)  # x0, x1, y0, y1 inclusive; x1 < x0 when not drawn
    cutoff = np.empty((B, N), np.float32)  # power above which alpha < 1/255 for sure
    for i in prange(B * N):
        b = i // N
        g = i - b * N
        rects[b, g, 0] = 0
        rects[b, g, 1] = -1
        rects[b, g, 2] = 0
        rects[b, g, 3] = -1
        if not valid[b, g]:
            continue
        o = opacities[b, g]
        a = np.float64(conics[b, g, 0])
        c_ = np.float64(conics[b, g, 1])
        c = np.float64(conics[b, g, 2])
        det = a * c - c_ * c_
        if not det > 0.0:
            continue
        # power <= t  <=>  alpha >= 1/255; the ellipse {d^T conic d <= 2t} has half-widths sqrt(2t Σ_ii)
        t = math.log(o / ALPHA_MIN)
        cutoff[b, g] = t + 1e-3  # the margin leaves the exact decision to the alpha test
        ex = math.sqrt(2.0 * t * c / det) + _RECT_SLACK
        ey = math.sqrt(2.0 * t * a / det) + _RECT_SLACK
        mx = means2d[b, g, 0]
        my = means2d[b, g, 1]
        # pixel x is inside when |x + 0.5 - mx| <= ex; clamp in float first so that far-off or
        # huge splats convert to int safely (an empty range stays empty)
        x0 = int(math.ceil(min(max(mx - ex - 0.5, 0.0), width)))
        x1 = int(math.floor(max(min(mx + ex - 0.5, width - 1.0), -1.0)))
        y0 = int(math.ceil(min(max(my - ey - 0.5, 0.0), height)))
        y1 = int(math.floor(max(min(my + ey - 0.5, height - 1.0), -1.0)))
        if x0 <= x1 and y0 <= y1:
            rects[b, g, 0] = x0
            rects[b, g, 1] = x1
            rects[b, g, 2] = y0
            rects[b, g, 3] = y1

    # per frame: drawn Gaussians in depth order, counted then scattered into their tiles
    counts = np.zeros(B * n_tiles + 1, np.int64)
    order = np.empty((B, N), np.int32)
    n_drawn = np.zeros(B, np.int64)
    for b in prange(B):
        drawn = _depth_order(depths[b], np.nonzero(rects[b, :, 1] >= rects[b, :, 0])[0].astype(np.int32))
        n_drawn[b] = drawn.shape[0]
        order[b, :drawn.shape[0]] = drawn
        for g in drawn:
            for ty in range(rects[b, g, 2] // TILE, rects[b, g, 3] // TILE + 1):
                for tx in range(rects[b, g, 0] // TILE, rects[b, g, 1] // TILE + 1):
                    counts[1 + b * n_tiles + ty * tiles_x + tx] += 1
    offsets = np.cumsum(counts)
    ids = np.empty(offsets[-1], np.int32)
    for b in prange(B):
        cursor = offsets[b * n_tiles:(b + 1) * n_tiles].copy()
        for j in range(n_drawn[b]):
            g = order[b, j]
            for ty in range(rects[b, g, 2] // TILE, rects[b, g, 3] // TILE + 1):
                for tx in range(rects[b, g, 0] // TILE, rects[b, g, 1] // TILE + 1):
                    t_ = ty * tiles_x + tx
                    ids[cursor[t_]] = g
                    cursor[t_] += 1
    return rects, cutoff, offsets, ids


@njit(cache=True, inline="always")
def _tile_bounds(bt, n_tiles, tiles_x, width, height):
    """Batch index and inclusive pixel bounds (xl, yl, xh, yh) of flat tile index ``bt``."""
    b = bt // n_tiles
    tile = bt - b * n_tiles
    ty = tile // tiles_x
    xl = (tile - ty * tiles_x) * TILE
    yl = ty * TILE
    return b, xl, yl, min(xl + TILE, width) - 1, min(yl + TILE, height) - 1


@njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def _composite_forward(means2d, conics, feats, opacities, rects, cutoff, offsets, ids, width, height):
    """Front-to-back compositing of every tile; returns features, final transmittance, last index."""
    B, N, _ = feats.shape
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = tiles_x * ((height + TILE - 1) // TILE)
    out = np.zeros((B, height, width, 4), np.float32)
    t_final = np.ones((B, height, width), np.float32)
    last = np.full((B, height, width), -1, np.int64)  # index into ids of the last contributor
    for bt in prange(B * n_tiles):
        b, xl, yl, xh, yh = _tile_bounds(bt, n_tiles, tiles_x, width, height)
        T = np.ones(TILE * TILE, np.float32)
        acc = np.zeros(TILE * TILE * 4, np.float32)
        lst = np.full(TILE * TILE, -1, np.int64)
        done = np.zeros(TILE * TILE, np.bool_)
        row_left = np.full(TILE, xh - xl + 1, np.int32)  # undone pixels per tile row
        left = (xh - xl + 1) * (yh - yl + 1)
        for k in range(offsets[bt], offsets[bt + 1]):
            if left == 0:
                break
            g = ids[k]
            mx = means2d[b, g, 0]
            my = means2d[b, g, 1]
            ha = _F32(0.5) * conics[b, g, 0]
            cb = conics[b, g, 1]
            hc = _F32(0.5) * conics[b, g, 2]
            o = opacities[b, g]
            cut = cutoff[b, g]
            f0, f1, f2, f3 = feats[b, g, 0], feats[b, g, 1], feats[b, g, 2], feats[b, g, 3]
            x0 = max(rects[b, g, 0], xl)
            x1 = min(rects[b, g, 1], xh)
            for y in range(max(rects[b, g, 2], yl), min(rects[b, g, 3], yh) + 1):
                if row_left[y - yl] == 0:
                    continue
                dy = my - (_F32(y) + _F32(0.5))
                power_y = hc * dy * dy
                cross_y = cb * dy
                row = _U((y - yl) * TILE - xl)
                for x in range(x0, x1 + 1):
                    p = row + _U(x)
                    if done[p]:
                        continue
                    dx = mx - (_F32(x) + _F32(0.5))
                    power = ha * dx * dx + cross_y * dx + power_y
                    if power < 0 or power > cut:
                        continue
                    alpha = min(_ALPHA_MAX32, o * math.exp(-power))
                    if alpha < _ALPHA_MIN32:
                        continue
                    t_p = T[p]
                    next_t = t_p * (_F32(1.0) - alpha)
                    if next_t <= _T_MIN32:
                        done[p] = True
                        row_left[y - yl] -= 1
                        left -= 1
                        continue
                    w = alpha * t_p
                    q = p * _U(4)
                    acc[q] += w * f0
                    acc[q + 1] += w * f1
                    acc[q + 2] += w * f2
                    acc[q + 3] += w * f3
                    T[p] = next_t
                    lst[p] = k
        for y in range(yl, yh + 1):
            for x in range(xl, xh + 1):
                p = (y - yl) * TILE + (x - xl)
                t_final[b, y, x] = T[p]
                last[b, y, x] = lst[p]
                for ch in range(4):
                    out[b, y, x, ch] = acc[4 * p + ch]
    return out, t_final, last


@njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def _composite_backward(means2d, conics, feats, opacities, rects, cutoff, offsets, ids, t_final, last,
                        grad_out, grad_alpha, width, height):
    """Back-to-front replay of every tile (as in 3DGS); gradients are written per tile entry
    (no two threads share a slot) and summed per Gaussian afterwards."""
    B, N, _ = feats.shape
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = tiles_x * ((height + TILE - 1) // TILE)
    # per entry: d/d mean2d (2), d/d conic (3), d/d opacity (1), d/d features (4)
    entry = np.zeros((ids.shape[0], 10), np.float32)
    for bt in prange(B * n_tiles):
        b, xl, yl, xh, yh = _tile_bounds(bt, n_tiles, tiles_x, width, height)
        T = np.ones(TILE * TILE, np.float32)
        tf = np.ones(TILE * TILE, np.float32)
        lst = np.full(TILE * TILE, -1, np.int64)
        behind = np.zeros(TILE * TILE * 4, np.float32)  # features behind, normalised by their transmittance
        g_out = np.zeros(TILE * TILE * 4, np.float32)
        g_a = np.zeros(TILE * TILE, np.float32)
        k_max = np.int64(-1)
        for y in range(yl, yh + 1):
            for x in range(xl, xh + 1):
                p = (y - yl) * TILE + (x - xl)
                T[p] = t_final[b, y, x]
                tf[p] = t_final[b, y, x]
                lst[p] = last[b, y, x]
                k_max = max(k_max, lst[p])
                g_a[p] = grad_alpha[b, y, x]
                for ch in range(4):
                    g_out[4 * p + ch] = grad_out[b, y, x, ch]
        for k in range(k_max, offsets[bt] - 1, -1):
            g = ids[k]
            mx = means2d[b, g, 0]
            my = means2d[b, g, 1]
            ha = _F32(0.5) * conics[b, g, 0]
            cb = conics[b, g, 1]
            hc = _F32(0.5) * conics[b, g, 2]
            o = opacities[b, g]
            cut = cutoff[b, g]
            f0, f1, f2, f3 = feats[b, g, 0], feats[b, g, 1], feats[b, g, 2], feats[b, g, 3]
            gmx = gmy = gca = gcb = gcc = go = gf0 = gf1 = gf2 = gf3 = _F32(0.0)
            x0 = max(rects[b, g, 0], xl)
            x1 = min(rects[b, g, 1], xh)
            for y in range(max(rects[b, g, 2], yl), min(rects[b, g, 3], yh) + 1):
                dy = my - (_F32(y) + _F32(0.5))
                power_y = hc * dy * dy  # the same expression as the forward, so alpha is bit-identical
                cross_y = cb * dy
                row = _U((y - yl) * TILE - xl)
                for x in range(x0, x1 + 1):
                    p = row + _U(x)
                    if lst[p] < k:
                        continue
                    dx = mx - (_F32(x) + _F32(0.5))
                    power = ha * dx * dx + cross_y * dx + power_y
                    if power < 0 or power > cut:
                        continue
                    vis = math.exp(-power)
                    alpha = min(_ALPHA_MAX32, o * vis)
                    if alpha < _ALPHA_MIN32:
                        continue
                    one_minus = _F32(1.0) - alpha
                    t_before = T[p] / one_minus
                    w = alpha * t_before
                    q = p * _U(4)
                    go0, go1, go2, go3 = g_out[q], g_out[q + 1], g_out[q + 2], g_out[q + 3]
                    gf0 += w * go0
                    gf1 += w * go1
                    gf2 += w * go2
                    gf3 += w * go3
                    # d out/d alpha = T_before (feature - features behind);
                    # d (1 - T_final)/d alpha = T_final / (1 - alpha)
                    g_alpha = t_before * ((f0 - behind[q]) * go0 + (f1 - behind[q + 1]) * go1
                                          + (f2 - behind[q + 2]) * go2 + (f3 - behind[q + 3]) * go3)
                    g_alpha += g_a[p] * tf[p] / one_minus
                    behind[q] = alpha * f0 + one_minus * behind[q]
                    behind[q + 1] = alpha * f1 + one_minus * behind[q + 1]
                    behind[q + 2] = alpha * f2 + one_minus * behind[q + 2]
                    behind[q + 3] = alpha * f3 + one_minus * behind[q + 3]
                    T[p] = t_before
                    if o * vis <= _ALPHA_MAX32:  # the clamp has zero gradient
                        go += vis * g_alpha
                        g_power = -o * vis * g_alpha
                        # power = a dx²/2 + b dx dy + c dy²/2 with (a, b, c) the conic
                        gmx += g_power * (_F32(2.0) * ha * dx + cross_y)
                        gmy += g_power * (_F32(2.0) * hc * dy + cb * dx)
                        gca += _F32(0.5) * g_power * dx * dx
                        gcb += g_power * dx * dy
                        gcc += _F32(0.5) * g_power * dy * dy
            entry[k, 0] = gmx
            entry[k, 1] = gmy
            entry[k, 2] = gca
            entry[k, 3] = gcb
            entry[k, 4] = gcc
            entry[k, 5] = go
            entry[k, 6] = gf0
            entry[k, 7] = gf1
            entry[k, 8] = gf2
            entry[k, 9] = gf3

    g_means2d = np.zeros((B, N, 2), np.float32)
    g_conics = np.zeros((B, N, 3), np.float32)
    g_opac = np.zeros((B, N), np.float32)
    g_feats = np.zeros((B, N, 4), np.float32)
    for b in prange(B):
        for k in range(offsets[b * n_tiles], offsets[(b + 1) * n_tiles]):
            g = ids[k]
            g_means2d[b, g, 0] += entry[k, 0]
            g_means2d[b, g, 1] += entry[k, 1]
            g_conics[b, g, 0] += entry[k, 2]
            g_conics[b, g, 1] += entry[k, 3]
            g_conics[b, g, 2] += entry[k, 4]
            g_opac[b, g] += entry[k, 5]
            for ch in range(4):
                g_feats[b, g, ch] += entry[k, 6 + ch]
    return g_means2d, g_conics, g_feats, g_opac


# --------------------------------------------------------------------------------------------
# autograd glue, SH and the backend entry point
# --------------------------------------------------------------------------------------------

def _np32(t: torch.Tensor) -> np.ndarray:
    # the kernels take float32 C-contiguous numpy arrays (other devices round-trip through the CPU)
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


class _Rasterize(torch.autograd.Function):
    """Gaussians [G,N,·] (G = 1 or B; colors may have their own G) through cameras [B]
    -> (RGB + accumulated depth [B,H,W,4], alpha [B,H,W])."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, eps2d):
        arrays = tuple(_np32(t) for t in (means, quats, scales, opacities, colors, viewmats, Ks))
        means2d, conics, feats, opac, valid = _project(*arrays, width, height, near_plane, eps2d)
        # contiguous copies keep one compiled signature (numpy calls a slice of size-1 axes contiguous)
        tiles = _bin_tiles(means2d, conics, opac, np.ascontiguousarray(feats[:, :, 3]), valid, width, height)
        out, t_final, last = _composite_forward(means2d, conics, feats, opac, *tiles, width, height)
        ctx.saved = (arrays, means2d, conics, feats, opac, valid, tiles, t_final, last, width, height)
        ctx.like = (means, quats, scales, opacities, colors)
        return (torch.from_numpy(out).to(colors.device, colors.dtype),
                torch.from_numpy(1.0 - t_final).to(colors.device, colors.dtype))

    @staticmethod
    def backward(ctx, grad_out, grad_alpha):
        arrays, means2d, conics, feats, opac, valid, tiles, t_final, last, width, height = ctx.saved
        means, quats, scales, _, _, viewmats, Ks = arrays
        g_means2d, g_conics, g_feats, g_opac = _composite_backward(
            means2d, conics, feats, opac, *tiles, t_final, last, _np32(grad_out), _np32(grad_alpha), width, height)
        g_depths = np.ascontiguousarray(g_feats[:, :, 3])
        v_means, v_quats, v_scales = _project_backward(means, quats, scales, viewmats, Ks, width, height, conics,
                                                       valid, g_means2d, g_conics, g_depths)
        grads = (v_means, v_quats, v_scales, g_opac, g_feats[:, :, :3])
        # per-camera gradients; inputs shared by all cameras get their sum
        out = []
        for grad, like in zip(grads, ctx.like):
            grad = torch.from_numpy(grad)
            if like.shape[0] == 1 and grad.shape[0] > 1:
                grad = grad.sum(0, keepdim=True)
            out.append(grad.to(like.device, like.dtype))
        return (*out, None, None, None, None, None, None)


def project(means, quats, scales, opacities, viewmats, Ks, width, height, near_plane=0.01, eps2d=0.3):
    """The projection step alone (no autograd): means2d [B,N,2], conics [B,N,3], depths [B,N], valid [B,N]."""
    colors = torch.zeros(1, means.shape[1], 3)
    arrays = (_np32(t) for t in (means, quats, scales, opacities, colors, viewmats, Ks))
    means2d, conics, feats, _, valid = _project(*arrays, width, height, near_plane, eps2d)
    return torch.from_numpy(means2d), torch.from_numpy(conics), torch.from_numpy(feats[..., 3]), torch.from_numpy(valid)


_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def eval_sh(degree: int, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Real SH of ``degree`` (0-3) in the 3DGS/gsplat convention: coeffs [...,K,3], dirs [...,3] -> [...,3]."""
    x, y, z = torch.nn.functional.normalize(dirs, dim=-1).unbind(-1)
    basis = [torch.full_like(x, _SH_C0)]
    if degree >= 1:
        basis += [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        basis += [_SH_C2[0] * xy, _SH_C2[1] * yz, _SH_C2[2] * (2 * zz - xx - yy), _SH_C2[3] * xz,
                  _SH_C2[4] * (xx - yy)]
    if degree >= 3:
        basis += [_SH_C3[0] * y * (3 * xx - yy), _SH_C3[1] * xy * z, _SH_C3[2] * y * (4 * zz - xx - yy),
                  _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _SH_C3[4] * x * (4 * zz - xx - yy),
                  _SH_C3[5] * z * (xx - yy), _SH_C3[6] * x * (xx - 3 * yy)]
    basis = torch.stack(basis, dim=-1)
    return (basis[..., None] * coeffs[..., : basis.shape[-1], :]).sum(-2)


def rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds,
              sh_degree=None, near_plane=0.01, eps2d=0.3):
    """CPU backend of ``lhm.render``: Gaussians with a leading axis of 1 or B, B cameras.

    colors are RGB [G,N,3] or SH [G,N,K,3] (then ``sh_degree`` is set); backgrounds [B,3].
    Returns rgb [B,H,W,3], alpha [B,H,W,1] and expected depth [B,H,W] (0 where alpha is 0).
    """
    if sh_degree is not None:
        centers = -(viewmats[:, :3, :3].transpose(-1, -2) @ viewmats[:, :3, 3:])[..., 0]  # [B,3]
        colors = torch.clamp_min(eval_sh(sh_degree, means - centers[:, None], colors) + 0.5, 0.0)
    out, alpha = _Rasterize.apply(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                  near_plane, eps2d)
    alpha = alpha[..., None]
    rgb = out[..., :3] + (1.0 - alpha) * backgrounds[:, None, None, :]
    depth = out[..., 3] / alpha[..., 0].clamp_min(1e-10)
    return rgb, alpha, depth
