"""A vectorised ray caster over analytic primitives, with solid procedural textures.

Why a ray caster: exact per-pixel depth, validity and world points come for free, it needs no
download and no graphics stack, and in torch it renders several hundred 224x224 frames a second
on two CPU cores.

Scene contents (all in one "scene" frame, metres, y up):
- boxes: centre ``[K, 3]``, rotation local->scene ``[K, 3, 3]``, half sizes ``[K, 3]``, and an
  ``inside`` flag (the room is a box seen from inside: the ray's exit point is the hit). Planes
  are thin boxes.
- spheres: centre ``[M, 3]``, radius ``[M]``, rotation ``[M, 3, 3]`` (orients the texture only).

Each primitive has a material row (see :class:`Materials`); textures are evaluated at the hit
point in the primitive's local coordinates, so a surface looks the same from every view (what
correspondence needs). Shading is Lambert (one directional light, one point light, ambient).

Rays go through integer pixel indices (u, v) without a +0.5 offset, as VGGT's unprojection, so
``depth_to_camera_points`` of the rendered depth reproduces the hit points exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Dict

import torch

_HASH_SIZE = 4096
INF = float("inf")


@dataclass
class Materials:
    """Per-primitive texture parameters (boxes first, then spheres), P = number of primitives.

    ``kind [P]`` long: 0 value noise, 1 checker, 2 stripes; ``freq [P]`` cycles per metre;
    ``color_a``, ``color_b`` ``[P, 3]`` in [0, 1]; ``stripe_dir [P, 3]`` unit; ``offset [P, 3]``
    shifts the noise lattice so equal primitives still differ.
    """

    kind: torch.Tensor
    freq: torch.Tensor
    color_a: torch.Tensor
    color_b: torch.Tensor
    stripe_dir: torch.Tensor
    offset: torch.Tensor


@dataclass
class Primitives:
    box_center: torch.Tensor
    box_rot: torch.Tensor
    box_half: torch.Tensor
    box_inside: torch.Tensor
    sphere_center: torch.Tensor
    sphere_radius: torch.Tensor
    sphere_rot: torch.Tensor
    materials: Materials
    light_dir: torch.Tensor  # [3] unit, pointing from the surface towards the light
    point_light: torch.Tensor  # [3] position
    ambient: float = 0.35
    noise_table: torch.Tensor = None  # [_HASH_SIZE] random values in [0, 1]
    tinted: torch.Tensor = None  # [P] bool: albedo mixed with :func:`world_tint` (None: no primitive)
    sky_tint: bool = False  # sky coloured by ray direction instead of one colour

    def to(self, device) -> "Primitives":
        """A copy with every tensor on ``device`` (rendering runs where the rays are)."""
        return _tensors_to(self, device)


def _tensors_to(obj, device):
    moved = {}
    for field in fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, torch.Tensor):
            value = value.to(device)
        elif isinstance(value, Materials):
            value = _tensors_to(value, device)
        moved[field.name] = value
    return replace(obj, **moved)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectorised HSV -> RGB; ``h`` in turns, ``[R]`` each -> ``[R, 3]``."""
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype, device=h.device) + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


def world_tint(point: torch.Tensor) -> torch.Tensor:
    """Colour of a scene point ``[R, 3]`` from where it is: hue = azimuth around the room's
    vertical axis, saturation falls with height, brightness rings every 1.5 m of radius.

    Why: a frame's pose in the scene must be readable from the frame for relative pose to be
    learnable by a small model on a CPU budget; the hue field is global, dense and asymmetric
    (no two view directions see the same colours), the rings and saturation add position.
    """
    x, y, z = point.unbind(-1)
    hue = torch.atan2(z, x) / (2 * torch.pi) % 1.0
    sat = 0.85 - 0.5 * (y / 3.5).clamp(0, 1)
    radius = torch.sqrt(x * x + z * z)
    val = 0.72 + 0.2 * torch.cos(2 * torch.pi * radius / 1.5)
    return _hsv_to_rgb(hue, sat, val)


def sky_colour(dirs: torch.Tensor) -> torch.Tensor:
    """Sky ``[R, 3]`` by ray direction ``[R, 3]`` (scene frame): hue = azimuth, paler upwards."""
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    hue = torch.atan2(d[:, 2], d[:, 0]) / (2 * torch.pi) % 1.0
    elevation = d[:, 1].clamp(-1, 1)
    return _hsv_to_rgb(hue, 0.55 - 0.4 * elevation.clamp(0, 1), torch.full_like(hue, 0.9))


def intersect_boxes(o: torch.Tensor, d: torch.Tensor, prim: Primitives):
    """Slab test. ``o, d [R, 3]`` -> (t ``[R, K]`` (inf = miss), local hit ``[R, K, 3]``)."""
    rot = prim.box_rot  # local -> scene; scene -> local is rot^T
    lo = torch.einsum("kji,rkj->rki", rot, o[:, None, :] - prim.box_center[None])
    ld = torch.einsum("kji,rj->rki", rot, d)
    ld.masked_fill_(ld.abs() < 1e-12, 1e-12)
    inv = 1.0 / ld
    # In place where a temporary is not read again: the [R, K, 3] passes are most of a scene's time.
    t1 = (-prim.box_half[None] - lo).mul_(inv)
    t2 = (prim.box_half[None] - lo).mul_(inv)
    t_near = torch.minimum(t1, t2).amax(-1)
    t_far = torch.maximum(t1, t2, out=t1).amin(-1)
    hit = (t_far >= t_near) & (t_far > 1e-4)
    t = torch.where(t_near > 1e-4, t_near, INF)
    t = torch.where(prim.box_inside[None], t_far, t).masked_fill_(~hit, INF)
    return t, lo, ld


def intersect_spheres(o: torch.Tensor, d: torch.Tensor, prim: Primitives) -> torch.Tensor:
    """``o, d [R, 3]`` -> t ``[R, M]`` of the nearest front hit (inf = miss)."""
    oc = o[:, None, :] - prim.sphere_center[None]
    a = (d * d).sum(-1, keepdim=True)
    b = (oc * d[:, None, :]).sum(-1)
    c = (oc * oc).sum(-1) - prim.sphere_radius[None] ** 2
    disc = b * b - a * c
    sq = disc.clamp_min(0).sqrt()
    t0 = (-b - sq) / a
    t1 = (-b + sq) / a
    t = torch.where(t0 > 1e-4, t0, torch.where(t1 > 1e-4, t1, torch.full_like(t0, INF)))
    return torch.where(disc >= 0, t, torch.full_like(t, INF))


_PRIMES = torch.tensor([73856093, 19349663, 83492791], dtype=torch.int32)


def value_noise(p: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Trilinear value noise in [0, 1]; ``p [R, 3]`` -> ``[R]`` (lattice values hashed into ``table``)."""
    pf = torch.floor(p)
    f = p - pf
    fx, fy, fz = (f * f * (3 - 2 * f)).unbind(1)  # smoothstep: no visible lattice creases
    # Hash each axis once per lattice offset (int32 wraps on overflow, which is what a hash wants).
    primes = _PRIMES.to(p.device)
    h0 = pf.to(torch.int32) * primes
    hx0, hy0, hz0 = h0.unbind(1)
    hx1, hy1, hz1 = (h0 + primes).unbind(1)
    mask = _HASH_SIZE - 1

    def corner(hx, hy, hz):
        return table[(hx ^ hy ^ hz) & mask]

    v00 = torch.lerp(corner(hx0, hy0, hz0), corner(hx0, hy0, hz1), fz)
    v01 = torch.lerp(corner(hx0, hy1, hz0), corner(hx0, hy1, hz1), fz)
    v10 = torch.lerp(corner(hx1, hy0, hz0), corner(hx1, hy0, hz1), fz)
    v11 = torch.lerp(corner(hx1, hy1, hz0), corner(hx1, hy1, hz1), fz)
    return torch.lerp(torch.lerp(v00, v01, fy), torch.lerp(v10, v11, fy), fx)


def fbm(p: torch.Tensor, footprint: torch.Tensor, table: torch.Tensor, octaves: int = 4) -> torch.Tensor:
    """Multi-octave value noise in ~[0, 1]. Octaves finer than the pixel footprint (``[R]``,
    in the same units as ``p``) fade out, a cheap anti-aliasing that keeps far surfaces calm."""
    total = torch.zeros_like(p[:, 0])
    norm = torch.zeros_like(total)
    freq, amp = 1.0, 1.0
    for octave in range(octaves):
        fade = (1.5 - footprint * freq * 2.0).clamp(0, 1)
        shift = torch.tensor([17.3, 5.1, 11.7], dtype=p.dtype, device=p.device) * octave
        total = total + amp * fade * value_noise(p * freq + shift, table)
        norm = norm + amp * fade
        freq, amp = freq * 2.0, amp * 0.55
    return torch.where(norm > 0, total / norm.clamp_min(1e-6), torch.full_like(total, 0.5))


def _soft_square(x: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Filtered square wave of period 1 in [0, 1] (edges blurred over ``width``)."""
    s = torch.sin(2 * torch.pi * x)
    return (0.5 + 0.5 * s / (s.abs() + (width * 6).clamp(0.02, 10))).clamp(0, 1)


def shade_texture(local: torch.Tensor, prim_id: torch.Tensor, footprint: torch.Tensor,
                  prim: Primitives) -> torch.Tensor:
    """Albedo ``[R, 3]`` at local hit points ``[R, 3]`` of primitives ``prim_id [R]``."""
    m = prim.materials
    freq = m.freq[prim_id]
    p = local * freq[:, None] + m.offset[prim_id]
    fp = footprint * freq
    detail = fbm(p * 4.0, fp * 4.0, prim.noise_table, octaves=3)
    base = fbm(p, fp, prim.noise_table)
    kind = m.kind[prim_id]
    sq = [2 * _soft_square(p[:, a], fp) - 1 for a in range(3)]
    checker = 0.5 + 0.5 * sq[0] * sq[1] * sq[2]  # 3D checker: 2D on every flat face
    stripes = _soft_square((p * m.stripe_dir[prim_id]).sum(-1), fp)
    mix = torch.where(kind == 0, base, torch.where(kind == 1, checker, stripes))
    mix = (0.75 * mix + 0.25 * base).clamp(0, 1)
    albedo = m.color_a[prim_id] * (1 - mix[:, None]) + m.color_b[prim_id] * mix[:, None]
    return albedo * (0.7 + 0.6 * detail[:, None])


def cast(origins: torch.Tensor, dirs: torch.Tensor, pixel_angle: torch.Tensor,
         prim: Primitives) -> Dict[str, torch.Tensor]:
    """Cast rays ``origins, dirs [R, 3]`` (scene frame; ``dirs`` need not be unit: the returned
    ``t`` is in units of ``dirs``). ``pixel_angle [R]`` is the angular pixel size (for texture
    filtering). Returns ``t [R]`` (inf = miss), ``point [R, 3]``, ``rgb [R, 3]``, ``hit [R]``."""
    tb, box_local_o, box_local_d = intersect_boxes(origins, dirs, prim)
    ts = intersect_spheres(origins, dirs, prim)
    t_all = torch.cat([tb, ts], dim=1)
    t, idx = t_all.min(dim=1)
    hit = torch.isfinite(t)
    t_safe = torch.where(hit, t, torch.zeros_like(t))
    point = origins + t_safe[:, None] * dirs

    K = tb.shape[1]
    is_box = idx < K
    box_id = idx.clamp(max=max(K - 1, 0))
    sph_id = (idx - K).clamp(min=0, max=max(ts.shape[1] - 1, 0))
    rows = torch.arange(len(t), device=t.device)
    # Box local hit point and normal: the face whose slab is closest (largest |p| / half).
    if K:
        lp = box_local_o[rows, box_id] + t_safe[:, None] * box_local_d[rows, box_id]
        rel = lp / prim.box_half[box_id]
        axis = rel.abs().argmax(-1)
        n_local = torch.zeros_like(lp)
        n_local[rows, axis] = torch.sign(rel[rows, axis])
        n_local = torch.where(prim.box_inside[box_id][:, None], -n_local, n_local)
        n_box = torch.einsum("rij,rj->ri", prim.box_rot[box_id], n_local)
    else:
        lp = torch.zeros_like(point)
        n_box = torch.zeros_like(point)
    if ts.shape[1]:
        rel_s = point - prim.sphere_center[sph_id]
        n_sph = rel_s / prim.sphere_radius[sph_id][:, None]
        lp_s = torch.einsum("rji,rj->ri", prim.sphere_rot[sph_id], rel_s)
    else:
        n_sph = torch.zeros_like(point)
        lp_s = torch.zeros_like(point)
    local = torch.where(is_box[:, None], lp, lp_s)
    normal = torch.where(is_box[:, None], n_box, n_sph)

    ray_len = dirs.norm(dim=-1)
    footprint = t_safe * ray_len * pixel_angle
    albedo = shade_texture(local, idx, footprint, prim)
    if prim.tinted is not None and bool(prim.tinted.any()):
        tint = prim.tinted[idx] & hit
        albedo = torch.where(tint[:, None], 0.35 * albedo + 0.65 * world_tint(point), albedo)
    to_point_light = prim.point_light[None] - point
    dist2 = (to_point_light * to_point_light).sum(-1).clamp_min(1e-3)
    lam_dir = (normal * prim.light_dir[None]).sum(-1).clamp_min(0)
    lam_pt = (normal * to_point_light).sum(-1).clamp_min(0) / dist2.sqrt()
    light = prim.ambient + 0.45 * lam_dir + 0.5 * lam_pt * (6.0 / (3.0 + dist2))
    rgb = (albedo * light[:, None]).clamp(0, 1)
    if prim.sky_tint:
        sky = sky_colour(dirs)
    else:
        sky = torch.tensor([0.62, 0.75, 0.92], dtype=rgb.dtype, device=rgb.device)[None].expand_as(rgb)
    rgb = torch.where(hit[:, None], rgb, sky)
    return {"t": t, "point": point, "rgb": rgb, "hit": hit}
