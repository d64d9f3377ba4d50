"""Random numbers, area-weighted surface sampling and label-preserving subsampling."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["sample_surface"]


def _as_generator(random_state):
    """A numpy ``Generator`` from an int, a ``RandomState``, a ``Generator`` or None."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    rs = check_random_state(random_state)
    return np.random.default_rng(rs.randint(0, 2**31 - 1))


def _face_geometry(vertices, faces):
    """Unit face normals and face areas."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    norm = np.linalg.norm(cross, axis=1)
    normals = cross / np.maximum(norm, 1e-300)[:, None]
    return normals, 0.5 * norm


def _sample_faces(vertices, faces, weights, n, rng):
    """``n`` points on the faces, face chosen with probability proportional to ``weights``.

    Returns the points and the index of the face each point lies on.
    """
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if not total > 0:
        raise ValueError("the mesh has no surface area to sample (all faces degenerate or culled)")
    counts = rng.multinomial(n, weights / total)
    face = np.repeat(np.arange(len(faces)), counts)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    used = counts > 0
    a = vertices[faces[used, 0]]  # only the faces that received samples
    ab, ac = vertices[faces[used, 1]] - a, vertices[faces[used, 2]] - a
    local = np.repeat(np.arange(len(a)), counts[used])
    points = a[local]
    points += u[:, None] * ab[local]
    points += v[:, None] * ac[local]
    return points, face


def sample_surface(mesh, n_points, return_normals=False, random_state=None):
    """Sample points uniformly (area-weighted) on a triangle mesh surface.

    Parameters
    ----------
    mesh : trimesh.Trimesh, tuple (vertices, faces) or path-like
        The surface; a path is read with :func:`load_mesh`.
    n_points : int
        Number of points.
    return_normals : bool, default=False
        Also return the normal of the triangle each point was drawn from.
    random_state : int, RandomState instance, Generator or None, default=None
        Seeds the sampling.

    Returns
    -------
    points : ndarray of shape (n_points, 3), float32
    normals : ndarray of shape (n_points, 3), float32
        Only when ``return_normals``; follows the triangle winding.

    Examples
    --------
    >>> from skst3d.datasets import procedural_shape, sample_surface
    >>> points = sample_surface(procedural_shape("sphere", radius=1.0), 500, random_state=0)
    >>> points.shape, bool(abs(np.linalg.norm(points, axis=1) - 1).max() < 0.02)
    ((500, 3), True)
    """
    from ._meshes import _as_mesh

    vertices, faces = _as_mesh(mesh)
    normals, areas = _face_geometry(vertices, faces)
    points, face = _sample_faces(vertices, faces, areas, int(n_points), _as_generator(random_state))
    if return_normals:
        return points.astype(np.float32), normals[face].astype(np.float32)
    return points.astype(np.float32)


def _subsample(n_total, labels, n_points, rng, min_region_points=5):
    """Indices of a stratified uniform random subsample of exactly ``n_points`` points.

    Every labelled region (label > 0) keeps its share of points (rounded), and at least
    ``min(min_region_points, region size)``; the normal points fill the rest. The returned
    indices are in random order.
    """
    if n_points > n_total:
        raise ValueError(f"cannot subsample {n_total} points to {n_points}")
    if labels is None:
        return rng.choice(n_total, n_points, replace=False)
    labels = np.asarray(labels)
    chosen = []
    taken = 0
    regions = [r for r in np.unique(labels) if r > 0]
    for r in regions:
        members = np.flatnonzero(labels == r)
        k = int(round(len(members) * n_points / n_total))
        k = min(len(members), max(k, min_region_points))
        chosen.append(rng.choice(members, k, replace=False))
        taken += k
    normal = np.flatnonzero(labels <= 0)
    k = n_points - taken
    if k < 0 or k > len(normal):
        raise ValueError("cannot subsample: defect regions are too large for n_points")
    chosen.append(rng.choice(normal, k, replace=False))
    return rng.permutation(np.concatenate(chosen))
