"""Reading triangle meshes from disk (OFF, PLY, STL, OBJ) through the optional trimesh."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["load_mesh", "list_meshes", "MESH_EXTENSIONS"]

#: File extensions :func:`list_meshes` picks up (case-insensitive).
MESH_EXTENSIONS = (".off", ".ply", ".stl", ".obj")


def _import_trimesh():
    try:
        import trimesh
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading mesh files needs trimesh; install it with `pip install skst3d[meshes]`"
        ) from exc
    return trimesh


def load_mesh(path):
    """Read a triangle mesh file.

    Parameters
    ----------
    path : str or path-like
        An OFF, PLY, STL or OBJ file (anything trimesh reads). Files holding a scene of several
        meshes are concatenated into one mesh. Vertices are not merged or repaired.

    Returns
    -------
    vertices : ndarray of shape (V, 3), float64
    faces : ndarray of shape (F, 3), int64

    Raises
    ------
    ImportError
        If trimesh is not installed (``pip install skst3d[meshes]``).
    ValueError
        If the file holds no triangles.

    Examples
    --------
    >>> import os, tempfile
    >>> from skst3d.datasets import load_mesh
    >>> path = os.path.join(tempfile.mkdtemp(), "tetra.off")
    >>> with open(path, "w") as fh:
    ...     _ = fh.write("OFF\\n4 4 0\\n0 0 0\\n1 0 0\\n0 1 0\\n0 0 1\\n"
    ...                  "3 0 2 1\\n3 0 1 3\\n3 0 3 2\\n3 1 2 3\\n")
    >>> vertices, faces = load_mesh(path)
    >>> vertices.shape, faces.shape
    ((4, 3), (4, 3))
    """
    trimesh = _import_trimesh()
    loaded = trimesh.load(os.fspath(path), force="mesh", process=False)
    if isinstance(loaded, trimesh.Scene):  # force="mesh" usually concatenates already
        geometries = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(geometries) if geometries else None
    if loaded is None or not hasattr(loaded, "faces") or len(loaded.faces) == 0:
        raise ValueError(f"{os.fspath(path)!r} holds no triangle mesh")
    return np.asarray(loaded.vertices, dtype=np.float64), np.asarray(loaded.faces, dtype=np.int64)


def list_meshes(folder):
    """Mesh files (OFF, PLY, STL, OBJ, any case) under ``folder``, recursively, sorted.

    Parameters
    ----------
    folder : str or path-like

    Returns
    -------
    paths : list of str

    Examples
    --------
    >>> import tempfile
    >>> from skst3d.datasets import list_meshes
    >>> list_meshes(tempfile.mkdtemp())
    []
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such folder: {folder!r}")
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(MESH_EXTENSIONS)]
    return sorted(found)


def _as_mesh(mesh):
    """``(vertices float64, faces int64)`` from a Trimesh, a (vertices, faces) pair or a path."""
    if isinstance(mesh, (str, os.PathLike)):
        return load_mesh(mesh)
    if hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        vertices, faces = mesh.vertices, mesh.faces
    else:
        try:
            vertices, faces = mesh
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "mesh must be a trimesh.Trimesh, a (vertices, faces) tuple or a path to a mesh file"
            ) from exc
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(
            f"expected vertices (V, 3) and triangular faces (F, 3), got {vertices.shape} and {faces.shape}"
        )
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("faces index vertices out of range")
    return vertices, faces
