"""Geometric defects injected into point clouds: dents, bumps, cracks, holes, contamination.

Conventions shared by :func:`add_defects` and :func:`make_synthetic_parts`:

* labels are int64 per point: 0 normal, 1..R one id per defect region (ids never shared);
* a defect lives on the surface patch around a random centre point ``c`` with normal ``n``:
  points within the defect footprint (measured in the tangent plane of ``c``) whose normal
  agrees with ``n`` (cosine > 0.3) and whose offset along ``n`` is small;
* ``dent`` / ``bump``: points inside a disc of radius ``r`` move by ``-/+ depth * (1 - t**2)``
  along ``n`` (``t`` = distance / r, a paraboloid, i.e. a ball imprint); all points of the disc
  are labelled;
* ``crack``: a straight groove of length ``~4 r`` and width ``~1.2`` point spacings, points inside
  sink by ``depth * (0.6 + 0.4 * (1 - (2 b / w)**2))`` (``b`` across the groove); all labelled;
* ``hole``: points inside a disc of radius ``~0.7 r`` are removed; the points left on its rim,
  within 1.5 point spacings of the hole edge, form the labelled region;
* ``contamination``: a rough ellipsoidal blob (semi-axes ``~0.6 r`` and ``0.6-1`` times that) of foreign material
  of height ``~1.5 depth`` sits on
  the surface; the surface points under it are removed (the scanner cannot see them) and the
  blob's own points, sampled at the local point density, form the labelled region.

The default size ``r`` is the radius holding a fraction (uniform in ``[0.01, 0.04]``) of the
cloud's points; the default ``depth`` is uniform in ``[1.5, 3]`` point spacings (mean
nearest-neighbour distance at the final density).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ._sampling import _as_generator, _subsample

__all__ = ["add_defects", "estimate_normals", "DEFECT_KINDS"]

#: Defect kinds understood by :func:`add_defects`.
DEFECT_KINDS = ("dent", "bump", "crack", "hole", "contamination")

_FRACTION = (0.01, 0.04)
_DEPTH = (1.5, 3.0)


def estimate_normals(cloud, k=16, orient_towards=(0.0, 0.0, 1.0)):
    """Unit normals by local PCA over the ``k`` nearest neighbours.

    Parameters
    ----------
    cloud : array-like of shape (n, 3)
    k : int, default=16
        Neighbourhood size (the point itself included).
    orient_towards : array-like of shape (3,) or "centroid", default=(0, 0, 1)
        A direction: each normal is flipped to have a non-negative dot product with it (right
        for single-view scans: pass the view direction). ``"centroid"``: normals point away
        from the cloud centroid (right for closed, roughly convex objects).

    Returns
    -------
    normals : ndarray of shape (n, 3), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.datasets import estimate_normals
    >>> grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    >>> plane = np.column_stack([grid, np.zeros(100)])
    >>> bool(np.allclose(estimate_normals(plane), [0, 0, 1]))
    True
    """
    points = np.asarray(cloud, dtype=np.float64)
    k = int(min(k, len(points)))
    _, idx = cKDTree(points).query(points, k=k)
    neighbours = points[idx] - points[idx].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", neighbours, neighbours)
    _, vectors = np.linalg.eigh(cov)
    normals = vectors[:, :, 0]
    if isinstance(orient_towards, str):
        if orient_towards != "centroid":
            raise ValueError(f"orient_towards must be a 3-vector or 'centroid', got {orient_towards!r}")
        ref = points - points.mean(axis=0)
    else:
        ref = np.broadcast_to(np.asarray(orient_towards, dtype=np.float64), points.shape)
    normals *= np.where(np.einsum("ij,ij->i", normals, ref) < 0, -1.0, 1.0)[:, None]
    return normals


def _tangent_basis(n):
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    t1 = np.cross(n, helper)
    t1 /= np.linalg.norm(t1)
    return t1, np.cross(n, t1)


def _inject(points, normals, kinds, rng, spacing, size=None, depth=None, candidates=None, max_tries=50):
    """Inject one defect per entry of ``kinds``; returns ``(points, normals, labels)``.

    ``spacing`` is the point spacing at the *final* density (crack width, rim width and default
    depth are expressed in it); ``candidates`` (bool mask) restricts the defect centres.
    """
    points = np.asarray(points, dtype=np.float64).copy()
    normals = np.asarray(normals, dtype=np.float64).copy()
    labels = np.zeros(len(points), dtype=np.int64)
    candidates = np.ones(len(points), bool) if candidates is None else np.asarray(candidates, bool).copy()
    for region, kind in enumerate(kinds, start=1):
        if kind not in DEFECT_KINDS:
            raise ValueError(f"unknown defect kind {kind!r}; choose from {DEFECT_KINDS}")
        tree = cKDTree(points)
        local_spacing = float(np.mean(tree.query(points[:: max(1, len(points) // 500)], k=2)[0][:, 1]))
        for _ in range(max_tries):
            pool = np.flatnonzero(candidates & (labels == 0))
            if len(pool) == 0:
                break
            c_idx = rng.choice(pool)
            c = points[c_idx]
            if size is None:
                k = max(8, int(rng.uniform(*_FRACTION) * len(points)))
                r = float(tree.query(c, k=k)[0][-1])
            else:
                r = float(size) * rng.uniform(0.8, 1.2)
            h_depth = float(depth) if depth is not None else rng.uniform(*_DEPTH) * spacing
            near = np.asarray(tree.query_ball_point(c, 2.5 * r if kind == "crack" else 1.5 * r), dtype=np.int64)
            n = normals[tree.query(c, k=min(8, len(points)))[1]].mean(axis=0)
            n /= np.linalg.norm(n)
            t1, t2 = _tangent_basis(n)
            rel = points[near] - c
            u, v, h = rel @ t1, rel @ t2, rel @ n
            patch = (normals[near] @ n > 0.3) & (np.abs(h) < 0.5 * r + 2 * spacing)
            result = _apply(kind, points, near, patch, u, v, n, t1, t2, c, r, h_depth, spacing, local_spacing, rng)
            if result is None:
                continue
            region_idx, removed, new_points = result
            touched = np.concatenate([region_idx, removed])
            region_size = len(new_points) if kind == "contamination" else len(region_idx)
            if region_size < 8 or np.any(labels[touched] > 0):
                continue
            break
        else:
            raise RuntimeError(f"could not place a {kind!r} defect after {max_tries} tries")
        if kind in ("dent", "bump", "crack"):
            points[region_idx] += new_points
        labels[region_idx] = region
        keep = np.ones(len(points), bool)
        keep[removed] = False
        if kind == "contamination":
            points = np.concatenate([points[keep], new_points])
            normals = np.concatenate([normals[keep], np.broadcast_to(n, new_points.shape)])
            labels = np.concatenate([labels[keep], np.full(len(new_points), region, np.int64)])
            candidates = np.concatenate([candidates[keep], np.zeros(len(new_points), bool)])
        else:
            points, normals, labels, candidates = points[keep], normals[keep], labels[keep], candidates[keep]
    return points, normals, labels


def _apply(kind, points, near, patch, u, v, n, t1, t2, c, r, depth, spacing, local_spacing, rng):
    """Geometry of one defect: ``(region indices, removed indices, displacements or new points)``."""
    empty = np.zeros(0, np.int64)
    rho = np.hypot(u, v)
    if kind in ("dent", "bump"):
        inside = patch & (rho < r)
        t = rho[inside] / r
        sign = -1.0 if kind == "dent" else 1.0
        return near[inside], empty, sign * depth * (1.0 - t**2)[:, None] * n
    if kind == "crack":
        alpha = rng.uniform(0, np.pi)
        a = u * np.cos(alpha) + v * np.sin(alpha)
        b = -u * np.sin(alpha) + v * np.cos(alpha)
        length = r * rng.uniform(3.0, 5.0)
        width = spacing * rng.uniform(1.0, 1.5)
        inside = patch & (np.abs(a) <= length / 2) & (np.abs(b) <= width / 2)
        prof = 0.6 + 0.4 * (1.0 - (2.0 * b[inside] / width) ** 2)
        return near[inside], empty, -depth * prof[:, None] * n
    if kind == "hole":
        radius = max(0.7 * r * rng.uniform(0.85, 1.15), 2.0 * spacing)
        removed = patch & (rho < radius)
        rim = patch & (rho >= radius) & (rho < radius + 1.5 * spacing)
        if removed.sum() < 4:
            return None
        return near[rim], near[removed], None
    # contamination
    a_axis = 0.6 * r * rng.uniform(0.85, 1.15)
    b_axis = a_axis * rng.uniform(0.6, 1.0)
    height = 1.5 * depth * rng.uniform(0.8, 1.2)
    beta = rng.uniform(0, np.pi)
    ua = u * np.cos(beta) + v * np.sin(beta)
    va = -u * np.sin(beta) + v * np.cos(beta)
    under = patch & ((ua / a_axis) ** 2 + (va / b_axis) ** 2 < 1.0)
    if under.sum() < 4:
        return None
    # the blob is a height field over a jittered grid at the local scan density
    g = np.arange(-a_axis, a_axis + local_spacing, local_spacing)
    gu, gv = np.meshgrid(g, g[np.abs(g) <= b_axis + local_spacing], indexing="ij")
    gu = gu.ravel() + rng.uniform(-0.5, 0.5, gu.size) * local_spacing
    gv = gv.ravel() + rng.uniform(-0.5, 0.5, gv.size) * local_spacing
    q = 1.0 - (gu / a_axis) ** 2 - (gv / b_axis) ** 2
    gu, gv, q = gu[q > 0], gv[q > 0], q[q > 0]
    phases = rng.uniform(0, 2 * np.pi, 3)
    freqs = rng.uniform(1.0, 3.0, 3) * np.pi / a_axis
    rough = sum(np.sin(f * (gu * np.cos(p) + gv * np.sin(p)) + p) for f, p in zip(freqs, phases)) / 3.0
    lift = height * np.sqrt(q) * (1.0 + 0.15 * rough)
    # sit the blob on the removed surface (nearest removed point's offset along the normal)
    base = np.asarray([u[under], v[under]]).T
    _, nearest = cKDTree(base).query(np.column_stack([gu, gv]))
    # local (u, v) back to world: tangent frame of the centre plus the surface offset
    h_surface = ((points[near[under]] - c) @ n)[nearest]
    new = c + gu[:, None] * (np.cos(beta) * t1 + np.sin(beta) * t2) + gv[:, None] * (
        -np.sin(beta) * t1 + np.cos(beta) * t2
    ) + (h_surface + lift)[:, None] * n
    return np.zeros(0, np.int64), near[under], new


def add_defects(
    cloud,
    normals=None,
    kinds=DEFECT_KINDS,
    n_defects=1,
    size=None,
    depth=None,
    n_points=None,
    orient_towards=(0.0, 0.0, 1.0),
    return_kinds=False,
    random_state=None,
):
    """Inject geometric defects into a point cloud and label them.

    Parameters
    ----------
    cloud : array-like of shape (n, 3)
        A surface point cloud (a scan or a surface sampling), ideally denser than ``n_points``.
    normals : array-like of shape (n, 3) or None, default=None
        Outward (for scans: camera-facing) unit normals. None estimates them by local PCA over
        16 neighbours (:func:`estimate_normals`), oriented by ``orient_towards``.
    kinds : sequence of str, default=DEFECT_KINDS
        Kinds to draw from (uniformly, with replacement): ``"dent"``, ``"bump"``, ``"crack"``,
        ``"hole"``, ``"contamination"``. See the module notes for the exact geometry.
    n_defects : int, default=1
        Number of separate defects; each gets its own region id 1..n_defects.
    size : float or None, default=None
        Defect radius ``r`` in cloud units (jittered by +-20 %). None: the radius holding a
        random 1-4 % of the cloud's points.
    depth : float or None, default=None
        Dent/bump/crack depth in cloud units (contamination height is 1.5x). None: uniform in
        1.5-3 point spacings, where the spacing is the mean nearest-neighbour distance at the
        final density (after the reduction to ``n_points``, if given).
    n_points : int or None, default=None
        Reduce the result to exactly this many points by a stratified uniform random
        subsample: each region keeps its share of points (and at least 5). None returns every
        point (holes remove points, contamination adds some, so the count changes).
    orient_towards : array-like of shape (3,) or "centroid", default=(0, 0, 1)
        Orientation of estimated normals, see :func:`estimate_normals`; unused when ``normals``
        is given. Dents go against the normal, bumps and contamination along it.
    return_kinds : bool, default=False
        Also return the list of drawn kinds (``kinds[i - 1]`` is the kind of region ``i``).
    random_state : int, RandomState instance, Generator or None, default=None

    Returns
    -------
    new_cloud : ndarray of shape (m, 3), float32
    labels : ndarray of shape (m,), int64
        0 for normal points, ``i`` for points of the i-th defect region (each non-empty).
    kinds : list of str
        Only when ``return_kinds``.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.datasets import add_defects
    >>> xy = np.random.default_rng(0).uniform(0, 60, size=(8000, 2))
    >>> plate = np.column_stack([xy, np.zeros(8000)])
    >>> cloud, labels = add_defects(plate, kinds=("dent",), n_defects=2, n_points=4096, random_state=0)
    >>> cloud.shape, sorted(set(labels.tolist()))
    ((4096, 3), [0, 1, 2])
    >>> bool(cloud[labels > 0, 2].max() <= 0 and cloud[labels > 0, 2].min() < -1)
    True
    """
    rng = _as_generator(random_state)
    points = np.asarray(cloud, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 32:
        raise ValueError(f"cloud must be an (n, 3) array with n >= 32, got shape {points.shape}")
    if normals is None:
        normals = estimate_normals(points, orient_towards=orient_towards)
    else:
        normals = np.asarray(normals, dtype=np.float64)
        normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    spacing = _spacing(points)
    if n_points is not None:
        spacing *= np.sqrt(len(points) / float(n_points))
    kinds = tuple(kinds)
    chosen = [kinds[i] for i in rng.integers(0, len(kinds), int(n_defects))]
    new_points, _, labels = _inject(points, normals, chosen, rng, spacing, size=size, depth=depth)
    if n_points is not None:
        idx = _subsample(len(new_points), labels, int(n_points), rng)
        new_points, labels = new_points[idx], labels[idx]
    if return_kinds:
        return new_points.astype(np.float32), labels, chosen
    return new_points.astype(np.float32), labels


def _spacing(points):
    """Mean nearest-neighbour distance (on a subsample of at most 2,000 points)."""
    tree = cKDTree(points)
    probe = points[:: max(1, len(points) // 2000)]
    return float(np.mean(tree.query(probe, k=2)[0][:, 1]))
