"""Synthetic industrial parts, scanned from above, with labelled defects."""

from __future__ import annotations

import numpy as np
from sklearn.utils import Bunch

from ._defects import DEFECT_KINDS, _inject, _spacing
from ._sampling import _as_generator, _subsample
from ._scan import _zbuffer_scan
from ._shapes import (
    _box,
    _circle,
    _concatenate,
    _extrude,
    _rectangle,
    _revolve,
    _rotation_x,
    _rotation_y,
    _rotation_z,
    _transform,
    flange,
)

__all__ = ["make_synthetic_parts", "make_part_mesh", "PART_TYPES"]


def _j(rng, value, variation):
    """``value`` scaled by a random factor 1 + variation * N(0, 1) (clipped at 2.5 sigma)."""
    return value * (1.0 + variation * float(np.clip(rng.standard_normal(), -2.5, 2.5)))


def _plate(rng, var):
    length, width, thick = _j(rng, 100.0, var), _j(rng, 60.0, var), _j(rng, 5.0, var)
    inset, r_hole, r_centre = _j(rng, 10.0, var), _j(rng, 4.0, var), _j(rng, 8.0, var)
    holes = [
        _circle((sx * (length / 2 - inset), sy * (width / 2 - inset)), r_hole, 24) for sx in (-1, 1) for sy in (-1, 1)
    ] + [_circle((0.0, 0.0), r_centre, 40)]
    plate = _extrude(_rectangle(length, width), holes, 0.0, thick, max_edge=5.0)
    rib_h, rib_w, rib_l = _j(rng, 6.0, var), _j(rng, 4.0, var), _j(rng, 0.6, var) * length
    ribs = [_box((rib_l, rib_w, rib_h), (0.0, s * width / 4, thick + rib_h / 2)) for s in (-1, 1)]
    return _concatenate([plate, *ribs])


def _bracket(rng, var):
    length, width, base = _j(rng, 80.0, var), _j(rng, 50.0, var), _j(rng, 10.0, var)
    step_l, step_h = _j(rng, 30.0, var), _j(rng, 20.0, var)
    hole = _circle((-length / 4, 0.0), _j(rng, 7.0, var), 32)
    slab = _extrude(_rectangle(length, width), [hole], 0.0, base, max_edge=5.0)
    step = _box((step_l, width, step_h), (length / 2 - step_l / 2, 0.0, base + step_h / 2))
    return _concatenate([slab, step])


def _rod(rng, var):
    half, r1, r2, shoulder = _j(rng, 50.0, var), _j(rng, 10.0, var), _j(rng, 7.0, var), _j(rng, 10.0, var)
    ch = 1.0
    radius = [0, r1 - ch, r1, r1, r2, r2, r2 - ch, 0]
    height = [-half, -half, -half + ch, shoulder, shoulder, half - ch, half, half]
    v, f = _revolve(radius, height, segments=96)
    return _transform((v, f), rotation=_rotation_y(np.pi / 2), translation=(0.0, 0.0, r1))


def _flange(rng, var):
    s = _j(rng, 1.0, var)
    return flange(
        radius=40.0 * s,
        thickness=_j(rng, 8.0, var),
        hub_radius=_j(rng, 18.0, var),
        hub_height=_j(rng, 12.0, var),
        bore=_j(rng, 10.0, var),
        n_bolts=6,
    )


def _panel(rng, var):
    width, length, thick, radius = _j(rng, 100.0, var), _j(rng, 70.0, var), _j(rng, 3.0, var), _j(rng, 150.0, var)
    theta0 = np.arcsin(width / 2 / radius)
    t = np.linspace(theta0, -theta0, 60)
    top = np.stack([radius * np.sin(t), radius * np.cos(t)], 1)
    bottom = np.stack([(radius - thick) * np.sin(t[::-1]), (radius - thick) * np.cos(t[::-1])], 1)
    profile = np.concatenate([top, bottom])
    profile[:, 1] -= (radius - thick) * np.cos(theta0)
    v, f = _extrude(profile, (), -length / 2, length / 2, max_edge=1.0)
    return _transform((v, f), rotation=_rotation_x(np.pi / 2))


_PARTS = {"plate": _plate, "bracket": _bracket, "rod": _rod, "flange": _flange, "panel": _panel}

#: Part types of :func:`make_synthetic_parts`.
PART_TYPES = tuple(_PARTS)


def make_part_mesh(part_type, shape_variation=0.0, random_state=None):
    """Triangle mesh of a synthetic part in its rest pose (lying on z = 0, centred in x, y).

    Parameters
    ----------
    part_type : {"plate", "bracket", "rod", "flange", "panel"}
        ``plate``: 100 x 60 x 5 plate with four corner holes, a centre hole and two ribs;
        ``bracket``: 80 x 50 x 10 block with a through hole and a 20 high step at one end;
        ``rod``: stepped shaft (diameters 20 and 14, length 100) lying along x;
        ``flange``: disc of radius 40 with a hub, a bore and six bolt holes;
        ``panel``: 100 x 70 x 3 sheet bent to a radius of 150 (convex side up).
        Units are millimetre-like.
    shape_variation : float, default=0.0
        Relative standard deviation of every dimension (0.02 = 2 %).
    random_state : int, RandomState instance, Generator or None, default=None

    Returns
    -------
    vertices : ndarray of shape (V, 3), float64
    faces : ndarray of shape (F, 3), int64

    Examples
    --------
    >>> from skst3d.datasets import make_part_mesh
    >>> vertices, faces = make_part_mesh("plate")
    >>> bool(abs(vertices[:, 0].max() - 50.0) < 1e-9)
    True
    """
    if part_type not in _PARTS:
        raise ValueError(f"unknown part type {part_type!r}; choose from {PART_TYPES}")
    return _PARTS[part_type](_as_generator(random_state), float(shape_variation))


def _rotation_about(axis, angle):
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _random_pose(rng, rotation, tilt, translation):
    r_z = _rotation_z(rng.uniform(-rotation, rotation))
    phi = rng.uniform(0, 2 * np.pi)
    r_tilt = _rotation_about((np.cos(phi), np.sin(phi), 0.0), rng.uniform(0.0, tilt))
    shift = np.array([*rng.uniform(-translation, translation, 2), 0.0])
    return r_tilt @ r_z, shift


def _draw_count(rng, n_defects):
    if np.isscalar(n_defects):
        return int(n_defects)
    low, high = n_defects
    return int(rng.integers(int(low), int(high) + 1))


def _scan_part(part_type, rng, n_points, noise, kinds, n_defects, shape_variation, rotation, tilt, translation):
    vertices, faces = _PARTS[part_type](rng, shape_variation)
    rot, shift = _random_pose(rng, rotation, tilt, translation)
    vertices = vertices @ rot.T + shift
    view = np.array([0.0, 0.0, 1.0])
    target = 2.0 * n_points
    for _ in range(6):
        points, normals, _ = _zbuffer_scan(vertices, faces, view, rng, target_pixels=target)
        if len(points) >= 1.3 * n_points:
            break
        target *= 2.0 * n_points / max(len(points), 1)
    labels = np.zeros(len(points), np.int64)
    applied = []
    if kinds:
        applied = [kinds[i] for i in rng.integers(0, len(kinds), n_defects)]
        spacing = _spacing(points) * np.sqrt(len(points) / n_points)
        spacing = max(spacing, 5.0 * noise)
        points, normals, labels = _inject(points, normals, applied, rng, spacing, candidates=normals @ view > 0.5)
    idx = _subsample(len(points), labels, n_points, rng)
    points, labels = points[idx], labels[idx]
    if noise:
        points = points + rng.normal(0.0, noise, size=(len(points), 1)) * view
    return points.astype(np.float32), labels, applied


def make_synthetic_parts(
    n_train=12,
    n_test=8,
    part_types=None,
    n_points=4096,
    noise=0.05,
    defect_kinds=DEFECT_KINDS,
    defect_fraction=0.5,
    n_defects=(1, 2),
    shape_variation=0.02,
    rotation=np.pi / 6,
    tilt=np.deg2rad(3.0),
    translation=5.0,
    random_state=None,
):
    """Range scans of synthetic industrial parts, good for training and good/defective for testing.

    Each part (see :func:`make_part_mesh`) gets a normal variation of its dimensions, a random
    pose (in-plane rotation, small tilt, translation) and is scanned from above by the virtual
    orthographic range scanner of :func:`scan_mesh` (only the visible surface, one point per
    pixel, about ``2 * n_points`` pixels). Defects are injected into the dense scan (see
    :func:`add_defects` for their geometry; centres lie on faces seen within 60 degrees of the
    view), then the scan is reduced to exactly ``n_points`` points by a stratified uniform
    random subsample (each defect region keeps its share of points, at least 5), and Gaussian
    sensor noise is added along the view direction (z).

    Parameters
    ----------
    n_train : int, default=12
        Good training parts per part type.
    n_test : int, default=8
        Test parts per part type; ``round(defect_fraction * n_test)`` of them are defective,
        the order is shuffled.
    part_types : sequence of str or None, default=None
        Subset of :data:`PART_TYPES` (``"plate"``, ``"bracket"``, ``"rod"``, ``"flange"``,
        ``"panel"``); None uses all.
    n_points : int, default=4096
        Points per cloud (exact).
    noise : float, default=0.05
        Sensor noise standard deviation along z, in part units (parts are 50-100 units wide;
        the point spacing at 4,096 points is about 1-1.3 units).
    defect_kinds : sequence of str, default=DEFECT_KINDS
        Kinds drawn uniformly for each defect.
    defect_fraction : float, default=0.5
        Fraction of defective test parts.
    n_defects : int or (int, int), default=(1, 2)
        Defects per defective part, or an inclusive range drawn uniformly.
    shape_variation : float, default=0.02
        Relative standard deviation of every part dimension.
    rotation : float, default=pi/6
        Maximum in-plane rotation (radians, uniform in +-rotation); pi gives any orientation.
    tilt : float, default=3 degrees
        Maximum tilt (radians) about a random horizontal axis.
    translation : float, default=5.0
        Maximum in-plane translation (uniform in +-translation along x and y).
    random_state : int, RandomState instance, Generator or None, default=None

    Returns
    -------
    data : sklearn.utils.Bunch
        ``train`` (list of (n_points, 3) float32 good clouds), ``train_part_types``,
        ``test`` (list of clouds), ``test_labels`` (list of (n_points,) int64 arrays: 0 normal,
        1..R one id per defect region, all zero for good parts), ``test_part_types``,
        ``test_defect_kinds`` (list of lists, empty for good parts, ``kinds[i - 1]`` is the
        kind of region ``i``), ``part_types``.

    Examples
    --------
    >>> from skst3d.datasets import make_synthetic_parts
    >>> data = make_synthetic_parts(n_train=1, n_test=2, part_types=["plate"], n_points=1024,
    ...                             random_state=0)
    >>> len(data.train), data.test[0].shape, data.test_labels[0].dtype
    (1, (1024, 3), dtype('int64'))
    """
    rng = _as_generator(random_state)
    part_types = PART_TYPES if part_types is None else tuple(part_types)
    for p in part_types:
        if p not in _PARTS:
            raise ValueError(f"unknown part type {p!r}; choose from {PART_TYPES}")
    for k in defect_kinds:
        if k not in DEFECT_KINDS:
            raise ValueError(f"unknown defect kind {k!r}; choose from {DEFECT_KINDS}")
    if not 0.0 <= defect_fraction <= 1.0:
        raise ValueError(f"defect_fraction must be in [0, 1], got {defect_fraction}")
    n_points = int(n_points)
    common = dict(
        n_points=n_points, noise=float(noise), shape_variation=shape_variation, rotation=rotation, tilt=tilt,
        translation=translation,
    )
    data = Bunch(
        train=[], train_part_types=[], test=[], test_labels=[], test_part_types=[], test_defect_kinds=[],
        part_types=list(part_types),
    )
    for part in part_types:
        for _ in range(n_train):
            cloud, _, _ = _scan_part(part, rng, kinds=(), n_defects=0, **common)
            data.train.append(cloud)
            data.train_part_types.append(part)
        n_bad = int(round(defect_fraction * n_test))
        defective = rng.permutation(np.arange(n_test) < n_bad)
        for bad in defective:
            kinds = tuple(defect_kinds) if bad else ()
            count = _draw_count(rng, n_defects) if bad else 0
            cloud, labels, applied = _scan_part(part, rng, kinds=kinds, n_defects=count, **common)
            data.test.append(cloud)
            data.test_labels.append(labels)
            data.test_part_types.append(part)
            data.test_defect_kinds.append(applied)
    return data
