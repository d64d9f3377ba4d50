"""A virtual orthographic range scanner: only the surface a camera would see, one point per pixel.

The scanner samples the mesh surface densely (faces weighted by their projected area, so every
pixel receives about the same number of samples), projects the samples onto the image plane
perpendicular to the view direction and keeps, per pixel, the sample nearest to the camera
(a z-buffer). Two safeguards keep hidden surfaces out of the scan:

* back-face culling: faces whose outward normal points away from the camera are not sampled
  (closed meshes whose winding is globally inverted are flipped first, by the sign of their volume);
* a depth-consistency filter: a pixel lying more than a slope-dependent tolerance behind the
  median depth of its 3 x 3 neighbourhood is dropped (it shows a hidden surface through a pixel
  that happened to receive no sample of the front surface).
"""

from __future__ import annotations

import numpy as np

from ._meshes import _as_mesh
from ._sampling import _as_generator, _face_geometry, _sample_faces, _subsample
from ._shapes import _signed_volume

__all__ = ["scan_mesh"]

_SAMPLES_PER_PIXEL = 8.0


def _view_frame(view):
    d = np.asarray(view, dtype=np.float64).reshape(3)
    norm = np.linalg.norm(d)
    if not norm > 0:
        raise ValueError("view must be a non-zero 3-vector")
    d = d / norm
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(helper, d)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    return e1, e2, d


def _zbuffer_scan(vertices, faces, view, rng, target_pixels=8192, resolution=None, backface_culling=True):
    """Scan a mesh; returns ``(points, normals, pixel_size)`` with one point per hit pixel."""
    e1, e2, d = _view_frame(view)
    if backface_culling and _signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1]
    normals, areas = _face_geometry(vertices, faces)
    cos = normals @ d
    if backface_culling:
        weights = np.where(cos > 1e-9, areas * cos, 0.0)
    else:
        weights = areas * np.abs(cos)
    projected_area = weights.sum() if backface_culling else 0.5 * weights.sum()
    if not projected_area > 0:
        raise ValueError("no surface of the mesh faces the camera")
    if resolution is None:
        pixel = np.sqrt(projected_area / target_pixels)
    else:
        pixel = float(resolution)
        if not pixel > 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
    n_samples = int(np.ceil(_SAMPLES_PER_PIXEL * projected_area / pixel**2 * (1 if backface_culling else 2)))
    n_samples = min(max(n_samples, 1000), 20_000_000)
    points, face = _sample_faces(vertices, faces, weights, n_samples, rng)
    x, y, depth = points @ e1, points @ e2, points @ d
    ix = np.floor((x - x.min()) / pixel).astype(np.int64)
    iy = np.floor((y - y.min()) / pixel).astype(np.int64)
    nx, ny = int(ix.max()) + 2, int(iy.max()) + 2
    key = ix * ny + iy
    # one sort: by pixel, then nearest-to-camera first (depth rescaled into [0, 0.5))
    span = float(depth.max() - depth.min()) or 1.0
    order = np.argsort(key - 0.5 * (depth - depth.min()) / (span * (1 + 1e-9)))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order[1:]] != key[order[:-1]]
    keep = order[first]
    # depth-consistency filter against hidden surfaces seen through unsampled pixels
    grid = np.full((nx + 2, ny + 2), np.nan)
    grid[ix[keep] + 1, iy[keep] + 1] = depth[keep]
    neighbourhood = np.stack(
        [grid[ix[keep] + 1 + di, iy[keep] + 1 + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1)], axis=1
    )
    median = np.nanmedian(neighbourhood, axis=1)
    c = np.clip(np.abs(cos[face[keep]]), 0.1, 1.0)
    slope = np.sqrt(1.0 - c**2) / c
    tolerance = pixel * (2.0 + 2.0 * slope)
    keep = keep[depth[keep] >= median - tolerance]
    point_normals = normals[face[keep]]
    if not backface_culling:
        point_normals = point_normals * np.where(point_normals @ d < 0, -1.0, 1.0)[:, None]
    return points[keep], point_normals, pixel


def scan_mesh(
    mesh,
    view=(0.0, 0.0, 1.0),
    n_points=4096,
    noise=0.0,
    resolution=None,
    oversample=2.0,
    backface_culling=True,
    return_normals=False,
    random_state=None,
):
    """Simulate a single-view range scan of a triangle mesh.

    The camera is orthographic and looks along ``-view``: it sees the surface parts whose
    normals point towards ``view`` and are not occluded. The mesh surface is sampled densely
    (area-weighted in projection), projected onto the image plane perpendicular to ``view``, and
    per pixel the sample nearest to the camera is kept (z-buffer); Gaussian noise is then added
    along the view direction and the result is reduced to ``n_points`` by a uniform random
    choice without replacement.

    Parameters
    ----------
    mesh : trimesh.Trimesh, tuple (vertices, faces) or path-like
        The object; a path is read with :func:`load_mesh`.
    view : array-like of shape (3,), default=(0, 0, 1)
        Direction from the object towards the camera (need not be unit length).
    n_points : int or None, default=4096
        Number of returned points; None returns every hit pixel.
    noise : float, default=0.0
        Standard deviation of the Gaussian sensor noise along the view direction (mesh units).
    resolution : float or None, default=None
        Pixel size in mesh units. None chooses it so that about ``oversample * n_points``
        pixels are hit (``oversample * 4096`` when ``n_points`` is None); if fewer than
        ``n_points`` are hit the scan is repeated at a finer resolution.
    oversample : float, default=2.0
        Hit pixels per returned point when ``resolution`` is None.
    backface_culling : bool, default=True
        Sample only faces whose normal points towards the camera. Needs consistently wound
        faces (outward normals; a globally inverted closed mesh is flipped automatically).
        Set False for meshes with inconsistent winding.
    return_normals : bool, default=False
        Also return the (outward, camera-facing) normal of the triangle of each point.
    random_state : int, RandomState instance, Generator or None, default=None
        Seeds sampling, noise and the final reduction.

    Returns
    -------
    points : ndarray of shape (n_points, 3), float32
        In the mesh's coordinate frame.
    normals : ndarray of shape (n_points, 3), float32
        Only when ``return_normals``.

    Raises
    ------
    ValueError
        If an explicit ``resolution`` hits fewer than ``n_points`` pixels.

    See Also
    --------
    sample_surface : all-around surface sampling (pretraining scenes).

    Examples
    --------
    >>> from skst3d.datasets import procedural_shape, scan_mesh
    >>> cube = procedural_shape("box", size=(2.0, 2.0, 2.0))
    >>> points = scan_mesh(cube, view=(0, 0, 1), n_points=1000, random_state=0)
    >>> points.shape, points.dtype, bool(np.allclose(points[:, 2], 1.0))
    ((1000, 3), dtype('float32'), True)
    """
    rng = _as_generator(random_state)
    vertices, faces = _as_mesh(mesh)
    target = oversample * (4096 if n_points is None else int(n_points))
    for attempt in range(6):
        points, normals, pixel = _zbuffer_scan(
            vertices, faces, view, rng, target_pixels=target, resolution=resolution, backface_culling=backface_culling
        )
        if n_points is None or len(points) >= n_points:
            break
        if resolution is not None:
            raise ValueError(
                f"resolution={resolution} hits only {len(points)} pixels, fewer than n_points={n_points}; "
                "use a finer resolution or fewer points"
            )
        target *= 1.2 * n_points * oversample / max(len(points), 1)
    else:
        raise ValueError(f"the scan hits only {len(points)} pixels, fewer than n_points={n_points}")
    if n_points is not None:
        idx = _subsample(len(points), None, int(n_points), rng)
        points, normals = points[idx], normals[idx]
    if noise:
        d = _view_frame(view)[2]
        points = points + rng.normal(0.0, noise, size=(len(points), 1)) * d
    if return_normals:
        return points.astype(np.float32), normals.astype(np.float32)
    return points.astype(np.float32)
