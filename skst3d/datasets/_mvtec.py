"""Reading MVTec 3D-AD (xyz TIFFs and ground-truth PNGs) through the optional tifffile/Pillow.

Layout: ``root/<category>/<split>/<defect type or good>/{xyz/NNN.tiff, gt/NNN.png, rgb/NNN.png}``
with split one of ``train``, ``validation``, ``test``; ``xyz`` images are (H, W, 3) float32
organised point clouds with (0, 0, 0) where the sensor saw nothing.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.utils import Bunch

from ._sampling import _as_generator

__all__ = ["load_mvtec3d"]

SPLITS = ("train", "validation", "test")


def _import_readers():
    try:
        import tifffile
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading MVTec 3D-AD needs tifffile and Pillow; install them with `pip install skst3d[mvtec]`"
        ) from exc
    return tifffile, Image


def _fit_plane_ransac(points, threshold, rng, n_iterations=200):
    """Plane ``(normal, offset)`` with ``normal @ p + offset = 0``: RANSAC, then least squares."""
    m = len(points)
    triples = rng.integers(0, m, size=(n_iterations, 3))
    a, b, c = points[triples[:, 0]], points[triples[:, 1]], points[triples[:, 2]]
    normals = np.cross(b - a, c - a)
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-12
    if not ok.any():
        return None
    normals, a = normals[ok] / norm[ok, None], a[ok]
    offsets = -np.einsum("ij,ij->i", normals, a)
    probe = points if m <= 20000 else points[rng.choice(m, 20000, replace=False)]
    inliers = np.abs(probe @ normals.T + offsets) < threshold
    best = int(np.argmax(inliers.sum(axis=0)))
    support = points[np.abs(points @ normals[best] + offsets[best]) < threshold]
    if len(support) < 3:
        return normals[best], offsets[best]
    centre = support.mean(axis=0)
    normal = np.linalg.svd(support - centre, full_matrices=False)[2][-1]
    return normal, -float(normal @ centre)


def _background_mask(xyz, valid, border, threshold, rng):
    """Valid pixels lying within ``threshold`` of the plane fitted to the border pixels."""
    h, w = valid.shape
    frame = np.zeros((h, w), bool)
    frame[:border], frame[-border:], frame[:, :border], frame[:, -border:] = True, True, True, True
    edge = xyz[frame & valid].astype(np.float64)
    if len(edge) < 3:
        return np.zeros((h, w), bool)
    plane = _fit_plane_ransac(edge, 0.8 * threshold, rng)
    if plane is None:
        return np.zeros((h, w), bool)
    normal, offset = plane
    distance = np.abs(xyz.astype(np.float64) @ normal + offset)
    return valid & (distance < threshold)


def load_mvtec3d(
    root,
    category,
    split="test",
    remove_background=True,
    background_threshold=0.005,
    border=10,
    defect_types=None,
    max_samples=None,
    random_state=0,
):
    """Load one category and split of MVTec 3D-AD as point clouds with pixel bookkeeping.

    Parameters
    ----------
    root : str or path-like
        Folder holding the category folders (``root/bagel/test/crack/xyz/000.tiff``, ...).
    category : str
        E.g. ``"bagel"``, ``"cable_gland"``, ``"carrot"``.
    split : {"train", "validation", "test"}, default="test"
    remove_background : bool, default=True
        Drop the supporting plane, as commonly done for this dataset: a plane is fitted by
        RANSAC (inlier distance ``0.8 * background_threshold``, then a least-squares refit to
        the inliers) to the valid points in a frame of ``border`` pixels along the image edges,
        and every point within ``background_threshold`` of it is dropped.
    background_threshold : float, default=0.005
        Plane distance (in the units of the xyz files) below which a point counts as background.
    border : int, default=10
        Width in pixels of the image frame the plane is fitted to.
    defect_types : sequence of str or None, default=None
        Subfolders of the split to read (``"good"``, ``"crack"``, ...); None reads all, sorted.
    max_samples : int or None, default=None
        Read at most this many images per defect type (the first ones, sorted by name).
    random_state : int, RandomState instance, Generator or None, default=0
        Seeds RANSAC.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``clouds`` (list of (n_i, 3) float32 arrays: valid points only, i.e. xyz not all zero,
        finite, and not background), ``pixel_index`` (list of (n_i,) int64 flat row-major
        indices of each point's pixel), ``masks`` (list of (H, W) uint8 ground-truth images,
        1 = anomalous; zeros when there is no gt file, e.g. good and training samples),
        ``point_labels`` (list of (n_i,) uint8: the mask at each point), ``image_shapes``
        (list of (H, W)), ``defect_types`` (list of str, ``"good"`` for normal samples),
        ``paths`` (list of xyz file paths), ``category``, ``split``.

    Raises
    ------
    ImportError
        If tifffile or Pillow is missing (``pip install skst3d[mvtec]``).
    FileNotFoundError
        If ``root/category/split`` does not exist.

    See Also
    --------
    scores_to_image : per-point scores back to an image for pixel-level evaluation.

    Examples
    --------
    >>> from skst3d.datasets import load_mvtec3d
    >>> data = load_mvtec3d("/data/mvtec_3d_anomaly_detection", "bagel")  # doctest: +SKIP
    >>> cloud, index = data.clouds[0], data.pixel_index[0]  # doctest: +SKIP
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    tifffile, Image = _import_readers()
    rng = _as_generator(random_state)
    base = os.path.join(os.fspath(root), category, split)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"no MVTec 3D-AD folder {base!r}")
    types = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d, "xyz")))
    if defect_types is not None:
        missing = set(defect_types) - set(types)
        if missing:
            raise ValueError(f"defect types {sorted(missing)} not found in {base!r} (have {types})")
        types = [t for t in types if t in set(defect_types)]
    data = Bunch(
        clouds=[], pixel_index=[], masks=[], point_labels=[], image_shapes=[], defect_types=[], paths=[],
        category=category, split=split,
    )
    for defect in types:
        names = sorted(f for f in os.listdir(os.path.join(base, defect, "xyz")) if f.lower().endswith((".tif", ".tiff")))
        if max_samples is not None:
            names = names[: int(max_samples)]
        for name in names:
            path = os.path.join(base, defect, "xyz", name)
            xyz = np.asarray(tifffile.imread(path))
            if xyz.ndim != 3 or xyz.shape[-1] != 3:
                raise ValueError(f"{path!r}: expected an (H, W, 3) xyz image, got shape {xyz.shape}")
            shape = xyz.shape[:2]
            valid = np.all(np.isfinite(xyz), axis=-1) & np.any(xyz != 0, axis=-1)
            if remove_background:
                valid &= ~_background_mask(np.nan_to_num(xyz), valid, int(border), float(background_threshold), rng)
            gt_path = os.path.join(base, defect, "gt", os.path.splitext(name)[0] + ".png")
            if os.path.isfile(gt_path):
                with Image.open(gt_path) as im:
                    mask = (np.asarray(im.convert("L")) > 0).astype(np.uint8)
                if mask.shape != shape:
                    raise ValueError(f"{gt_path!r}: mask shape {mask.shape} differs from xyz shape {shape}")
            else:
                mask = np.zeros(shape, np.uint8)
            index = np.flatnonzero(valid.ravel())
            data.clouds.append(xyz.reshape(-1, 3)[index].astype(np.float32))
            data.pixel_index.append(index.astype(np.int64))
            data.masks.append(mask)
            data.point_labels.append(mask.ravel()[index])
            data.image_shapes.append(tuple(int(s) for s in shape))
            data.defect_types.append(defect)
            data.paths.append(path)
    return data
