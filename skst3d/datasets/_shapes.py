"""Procedural triangle meshes: primitives (sphere, box, ...) and mechanical-ish solids.

Every builder returns ``(vertices, faces)`` with ``vertices`` float64 ``(V, 3)`` and ``faces``
int64 ``(F, 3)``, closed and wound counter-clockwise seen from outside (outward normals), so that
the virtual scanner can cull back faces. Solids of revolution go through :func:`_revolve`, prisms
(with holes) through :func:`_extrude`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

from ._sampling import _as_generator

__all__ = ["procedural_shape", "PROCEDURAL_SHAPES"]


# ----------------------------------------------------------------------------- mesh helpers
def _signed_volume(vertices, faces):
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _orient_outward(vertices, faces):
    """Flip the winding of a closed mesh whose signed volume is negative."""
    if _signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    return vertices, faces


def _concatenate(meshes):
    vertices, faces, offset = [], [], 0
    for v, f in meshes:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices).astype(np.float64), np.concatenate(faces).astype(np.int64)


def _transform(mesh, rotation=None, translation=None, scale=None):
    v, f = mesh
    v = np.asarray(v, dtype=np.float64)
    if scale is not None:
        v = v * np.asarray(scale, dtype=np.float64)
    if rotation is not None:
        v = v @ np.asarray(rotation).T
    if translation is not None:
        v = v + np.asarray(translation, dtype=np.float64)
    return v, f


def _rotation_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rotation_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rotation_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _grid_faces(n_rows, n_cols, wrap_cols=False):
    """Two triangles per quad of a ``n_rows x n_cols`` vertex grid (row-major)."""
    cols = n_cols if wrap_cols else n_cols - 1
    i, j = np.meshgrid(np.arange(n_rows - 1), np.arange(cols), indexing="ij")
    i, j = i.ravel(), j.ravel()
    j1 = (j + 1) % n_cols
    a, b = i * n_cols + j, i * n_cols + j1
    c, d = (i + 1) * n_cols + j1, (i + 1) * n_cols + j
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int64)


def _revolve(radius, height, segments=48, closed=False):
    """Surface of revolution of the profile ``(radius[i], height[i])`` about the z axis.

    An open profile should start and end on the axis (radius 0); ``closed=True`` joins the last
    profile point to the first (tori, tubes).
    """
    r = np.asarray(radius, dtype=np.float64)
    z = np.asarray(height, dtype=np.float64)
    if closed:
        r, z = np.append(r, r[0]), np.append(z, z[0])
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    vertices = np.stack(
        [r[:, None] * np.cos(phi), r[:, None] * np.sin(phi), np.broadcast_to(z[:, None], (len(z), segments))],
        axis=-1,
    ).reshape(-1, 3)
    faces = _grid_faces(len(r), segments, wrap_cols=True)
    return _orient_outward(vertices, faces)


def _polygon_area(loop):
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _inside_polygon(points, loop):
    """Even-odd ray casting test of ``points`` (m, 2) against a closed ``loop`` (k, 2)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = loop[:, 0], loop[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return np.count_nonzero(crosses & (x < xi), axis=1) % 2 == 1


def _circle(center, radius, segments):
    t = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], 1)


def _rectangle(width, depth, center=(0.0, 0.0)):
    w, d = width / 2.0, depth / 2.0
    return np.array([[-w, -d], [w, -d], [w, d], [-w, d]]) + np.asarray(center)


def _densify(loop, max_edge):
    out = []
    for p, q in zip(loop, np.roll(loop, -1, axis=0)):
        k = max(1, int(np.ceil(np.linalg.norm(q - p) / max_edge)))
        t = np.arange(k)[:, None] / k
        out.append(p + t * (q - p))
    return np.concatenate(out)


def _triangulate(outer, holes=()):
    """Triangulate a polygon with holes (2-D Delaunay of the boundary, filtered by centroid)."""
    loops = [outer, *holes]
    points = np.concatenate(loops)
    tri = Delaunay(points).simplices
    centroids = points[tri].mean(axis=1)
    keep = _inside_polygon(centroids, outer)
    for hole in holes:
        keep &= ~_inside_polygon(centroids, hole)
    tri = tri[keep]
    a, b, c = points[tri[:, 0]], points[tri[:, 1]], points[tri[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri[cross < 0] = tri[cross < 0][:, ::-1]
    return points, tri.astype(np.int64)


def _extrude(outer, holes=(), z0=0.0, z1=1.0, max_edge=None):
    """Prism over a polygon with holes, between heights ``z0 < z1``; outward winding."""
    outer = np.asarray(outer, dtype=np.float64)
    if _polygon_area(outer) < 0:
        outer = outer[::-1]
    holes = [np.asarray(h, dtype=np.float64) for h in holes]
    holes = [h[::-1] if _polygon_area(h) > 0 else h for h in holes]  # holes clockwise
    if max_edge is not None:
        outer = _densify(outer, max_edge)
        holes = [_densify(h, max_edge) for h in holes]
    points, tri = _triangulate(outer, holes)
    n = len(points)
    bottom = np.column_stack([points, np.full(n, z0)])
    top = np.column_stack([points, np.full(n, z1)])
    vertices = np.concatenate([bottom, top])
    faces = [tri[:, ::-1], tri + n]
    start = 0
    for loop in [outer, *holes]:
        k = len(loop)
        i = start + np.arange(k)
        j = start + (np.arange(k) + 1) % k
        faces.append(np.stack([i, j, j + n], 1))
        faces.append(np.stack([i, j + n, i + n], 1))
        start += k
    return vertices, np.concatenate(faces).astype(np.int64)


def _box(size, center=(0.0, 0.0, 0.0)):
    sx, sy, sz = size
    cx, cy, cz = center
    return _extrude(_rectangle(sx, sy, (cx, cy)), (), cz - sz / 2.0, cz + sz / 2.0)


# ----------------------------------------------------------------------------- primitives
def sphere(radius=0.5, segments=32):
    t = np.linspace(-np.pi / 2, np.pi / 2, segments // 2 + 1)
    return _revolve(radius * np.cos(t), radius * np.sin(t), segments)


def box(size=(1.0, 1.0, 1.0)):
    return _box(size)


def cylinder(radius=0.5, height=1.0, segments=48):
    h = height / 2.0
    return _revolve([0, radius, radius, 0], [-h, -h, h, h], segments)


def cone(radius=0.5, height=1.0, segments=48):
    h = height / 2.0
    return _revolve([0, radius, 0], [-h, -h, h], segments)


def torus(major_radius=0.35, minor_radius=0.15, segments=48):
    t = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    return _revolve(major_radius + minor_radius * np.cos(t), minor_radius * np.sin(t), segments, closed=True)


def capsule(radius=0.25, length=1.0, segments=32):
    h = max(length / 2.0 - radius, 0.0)
    t = np.linspace(0.0, np.pi / 2, 9)
    r = np.concatenate([radius * np.sin(t), radius * np.cos(t)])
    z = np.concatenate([-h - radius * np.cos(t), h + radius * np.sin(t)])
    return _revolve(r, z, segments)


def tube(outer_radius=0.5, inner_radius=0.3, height=1.0, segments=48):
    h = height / 2.0
    return _revolve(
        [inner_radius, outer_radius, outer_radius, inner_radius], [-h, -h, h, h], segments, closed=True
    )


def gear(n_teeth=12, radius=0.5, tooth_depth=0.08, bore=0.15, thickness=0.25):
    k = 4 * n_teeth
    t = np.arange(k) * 2.0 * np.pi / k
    r = np.where((np.arange(k) // 2) % 2 == 0, radius, radius - tooth_depth)
    outer = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    return _extrude(outer, [_circle((0, 0), bore, 32)], -thickness / 2, thickness / 2, max_edge=radius / 8)


def hex_nut(radius=0.5, bore=0.25, thickness=0.4):
    outer = _circle((0, 0), radius, 6)
    return _extrude(outer, [_circle((0, 0), bore, 32)], -thickness / 2, thickness / 2, max_edge=radius / 6)


def l_bracket(length=1.0, height=0.8, thickness=0.2, width=0.6):
    outer = np.array([[0, 0], [length, 0], [length, thickness], [thickness, thickness], [thickness, height], [0, height]])
    v, f = _extrude(outer, (), -width / 2, width / 2, max_edge=thickness)
    return _transform((v, f), rotation=_rotation_x(np.pi / 2))


def flange(radius=0.5, thickness=0.12, hub_radius=0.22, hub_height=0.25, bore=0.12, n_bolts=6):
    bolts = [
        _circle((0.75 * radius * np.cos(a), 0.75 * radius * np.sin(a)), 0.08 * radius, 16)
        for a in np.arange(n_bolts) * 2.0 * np.pi / n_bolts
    ]
    disc = _extrude(_circle((0, 0), radius, 64), [_circle((0, 0), bore, 32), *bolts], 0.0, thickness)
    hub = _extrude(_circle((0, 0), hub_radius, 48), [_circle((0, 0), bore, 32)], thickness, thickness + hub_height)
    return _concatenate([disc, hub])


def t_beam(length=1.0, width=0.5, height=0.5, web=0.1, flange_thickness=0.1):
    top = _box((length, width, flange_thickness), (0, 0, height - flange_thickness / 2))
    stem = _box((length, web, height - flange_thickness), (0, 0, (height - flange_thickness) / 2))
    return _concatenate([top, stem])


def _u(rng, low, high):
    return float(rng.uniform(low, high))


_RANDOM_PARAMETERS = {
    "sphere": lambda r: {},
    "box": lambda r: {"size": tuple(r.uniform(0.2, 1.0, 3))},
    "cylinder": lambda r: {"radius": _u(r, 0.1, 0.5), "height": _u(r, 0.3, 1.0)},
    "cone": lambda r: {"radius": _u(r, 0.15, 0.5), "height": _u(r, 0.3, 1.0)},
    "torus": lambda r: {"major_radius": _u(r, 0.25, 0.4), "minor_radius": _u(r, 0.05, 0.15)},
    "capsule": lambda r: {"radius": _u(r, 0.1, 0.3), "length": _u(r, 0.7, 1.0)},
    "tube": lambda r: {"outer_radius": _u(r, 0.3, 0.5), "inner_radius": _u(r, 0.1, 0.25), "height": _u(r, 0.2, 1.0)},
    "gear": lambda r: {"n_teeth": int(r.integers(8, 24)), "tooth_depth": _u(r, 0.04, 0.1), "thickness": _u(r, 0.1, 0.4)},
    "hex_nut": lambda r: {"bore": _u(r, 0.15, 0.3), "thickness": _u(r, 0.2, 0.5)},
    "l_bracket": lambda r: {"height": _u(r, 0.4, 1.0), "thickness": _u(r, 0.08, 0.25), "width": _u(r, 0.3, 0.8)},
    "flange": lambda r: {"hub_height": _u(r, 0.1, 0.35), "n_bolts": int(r.integers(4, 9))},
    "t_beam": lambda r: {"width": _u(r, 0.3, 0.6), "height": _u(r, 0.3, 0.6)},
}

_BUILDERS = {
    "sphere": sphere,
    "box": box,
    "cylinder": cylinder,
    "cone": cone,
    "torus": torus,
    "capsule": capsule,
    "tube": tube,
    "gear": gear,
    "hex_nut": hex_nut,
    "l_bracket": l_bracket,
    "flange": flange,
    "t_beam": t_beam,
}

#: Names accepted by :func:`procedural_shape`.
PROCEDURAL_SHAPES = tuple(_BUILDERS)


def procedural_shape(name, random_state=None, **params):
    """Build a procedural closed triangle mesh.

    Parameters
    ----------
    name : str
        One of :data:`PROCEDURAL_SHAPES`: ``"sphere"``, ``"box"``, ``"cylinder"``, ``"cone"``,
        ``"torus"``, ``"capsule"``, ``"tube"``, ``"gear"``, ``"hex_nut"``, ``"l_bracket"``,
        ``"flange"``, ``"t_beam"``. Shapes are roughly unit sized.
    random_state : int, RandomState instance, Generator or None, default=None
        When given, shape parameters (aspect ratios, tooth counts, ...) not passed in
        ``params`` are drawn at random; when None, the defaults are used.
    **params
        Keyword arguments of the builder (e.g. ``radius``, ``height``, ``size``).

    Returns
    -------
    vertices : ndarray of shape (V, 3), float64
    faces : ndarray of shape (F, 3), int64
        Counter-clockwise seen from outside (outward normals).

    Examples
    --------
    >>> from skst3d.datasets import procedural_shape
    >>> vertices, faces = procedural_shape("torus")
    >>> vertices.shape[1], faces.dtype
    (3, dtype('int64'))
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown procedural shape {name!r}; choose from {PROCEDURAL_SHAPES}")
    if random_state is not None:
        rng = _as_generator(random_state)
        params = {**_RANDOM_PARAMETERS[name](rng), **params}
    v, f = _BUILDERS[name](**params)
    return np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)
