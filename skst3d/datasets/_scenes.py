"""Synthetic pretraining scenes for the teacher network (paper, section 4.1)."""

from __future__ import annotations

import numpy as np

from ._meshes import _as_mesh, list_meshes
from ._sampling import _as_generator, _face_geometry, _sample_faces
from ._shapes import PROCEDURAL_SHAPES, _rotation_x, _rotation_y, _rotation_z, procedural_shape

__all__ = ["make_pretraining_scenes"]

#: Dense surface samples per output point before farthest point sampling.
_DENSE_FACTOR = 4


def _normalise(vertices):
    """Centre on the bounding-box centre and scale the longest bounding-box side to 1."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise ValueError("degenerate mesh (zero extent)")
    return (vertices - (lo + hi) / 2.0) / extent


def _farthest_point_sampling():
    try:
        from skst3d.geometry import farthest_point_sampling
    except ImportError as exc:
        raise ImportError(
            "make_pretraining_scenes needs skst3d.geometry.farthest_point_sampling "
            f"(torch), which could not be imported: {exc}"
        ) from exc
    return farthest_point_sampling


def make_pretraining_scenes(
    n_scenes,
    n_points=16384,
    n_objects=10,
    mesh_dir=None,
    include_procedural=True,
    noise=0.0,
    random_state=None,
):
    """Random scenes of objects, as used to pretrain the teacher in the 3D-ST paper.

    Each scene holds ``n_objects`` objects drawn uniformly (with replacement) from the pool:
    every name of :data:`PROCEDURAL_SHAPES` (with random shape parameters per instance) and
    every mesh file under ``mesh_dir``. Each object is centred, scaled so that the longest side
    of its bounding box is 1, rotated about the x, y and z axes by angles drawn uniformly from
    [0, 2 pi] (``R = Rz Ry Rx``), and placed at a location drawn uniformly from [-3, 3]^3. The
    surfaces of all objects are sampled densely (area-weighted, ``4 * n_points`` points; hidden
    and inner surfaces included, as in a full surface model) and reduced to ``n_points`` by
    farthest point sampling (:func:`skst3d.geometry.farthest_point_sampling`, torch).

    Parameters
    ----------
    n_scenes : int
    n_points : int, default=16384
        Points per scene (the paper uses 64,000).
    n_objects : int, default=10
    mesh_dir : str, path-like or None, default=None
        Folder searched recursively for OFF/PLY/STL/OBJ meshes (needs trimesh). Each file is
        read at most once per call.
    include_procedural : bool, default=True
        Put the procedural shapes in the pool.
    noise : float, default=0.0
        Standard deviation of isotropic Gaussian noise added to every point (augmentation),
        in scene units (objects have size 1).
    random_state : int, RandomState instance, Generator or None, default=None
        Seeds everything, including the farthest point sampling start points.

    Returns
    -------
    scenes : list of ndarray of shape (n_points, 3), float32

    Examples
    --------
    >>> from skst3d.datasets import make_pretraining_scenes
    >>> scenes = make_pretraining_scenes(2, n_points=256, random_state=0)
    >>> len(scenes), scenes[0].shape, scenes[0].dtype
    (2, (256, 3), dtype('float32'))
    """
    rng = _as_generator(random_state)
    pool = list(PROCEDURAL_SHAPES) if include_procedural else []
    if mesh_dir is not None:
        pool += list_meshes(mesh_dir)
    if not pool:
        raise ValueError("the object pool is empty: give a mesh_dir with meshes or include_procedural=True")
    fps = _farthest_point_sampling()
    import torch

    cache = {}
    scenes = []
    for _ in range(int(n_scenes)):
        meshes = []
        for choice in rng.integers(0, len(pool), int(n_objects)):
            item = pool[choice]
            if item in PROCEDURAL_SHAPES:
                vertices, faces = procedural_shape(item, random_state=rng)
            else:
                if item not in cache:
                    vertices, faces = _as_mesh(item)
                    cache[item] = (_normalise(vertices), faces)
                vertices, faces = cache[item]
            vertices = _normalise(vertices)
            ax, ay, az = rng.uniform(0.0, 2.0 * np.pi, 3)
            rotation = _rotation_z(az) @ _rotation_y(ay) @ _rotation_x(ax)
            meshes.append((vertices @ rotation.T + rng.uniform(-3.0, 3.0, 3), faces))
        offsets = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])
        vertices = np.concatenate([v for v, _ in meshes])
        faces = np.concatenate([f + o for (_, f), o in zip(meshes, offsets)])
        _, areas = _face_geometry(vertices, faces)
        dense, _ = _sample_faces(vertices, faces, areas, _DENSE_FACTOR * int(n_points), rng)
        seed = int(rng.integers(0, 2**31 - 1))
        idx = fps(torch.from_numpy(dense.astype(np.float32)), int(n_points), seed)
        idx = np.asarray(idx.cpu().numpy() if hasattr(idx, "cpu") else idx, dtype=np.int64)
        cloud = dense[idx]
        if noise:
            cloud = cloud + rng.normal(0.0, noise, size=cloud.shape)
        scenes.append(cloud.astype(np.float32))
    return scenes
