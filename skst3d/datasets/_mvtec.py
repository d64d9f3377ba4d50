"""Reading MVTec 3D-AD (xyz TIFFs and ground-truth PNGs) through the optional tifffile/Pillow.

Layout: ``root/<category>/<split>/<defect type or good>/{xyz/NNN.tiff, gt/NNN.png, rgb/NNN.png}``
with split one of ``train``, ``validation``, ``test``; ``xyz`` images are (H, W, 3) float32
organised point clouds with (0, 0, 0) where the sensor saw nothing.
"""

from __future__ import annotations

import math
import numbers
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


LAYOUT = "root/<category>/<split>/<good or defect type>/xyz/NNN.tiff (ground truth in .../gt/NNN.png)"


def _got(value):
    return f"got {value!r} of type {type(value).__name__}"


def _check_arguments(root, category, split, remove_background, background_threshold, border, defect_types,
                     max_samples):
    """Validate the arguments of :func:`load_mvtec3d`; returns them normalised."""
    try:
        root = os.fspath(root)
    except TypeError:
        raise TypeError(f"root must be a str or path-like, {_got(root)}") from None
    if isinstance(root, bytes):
        root = os.fsdecode(root)
    if not isinstance(category, str):
        raise TypeError(f"category must be a str (e.g. 'bagel'), {_got(category)}")
    if category in ("", ".", "..") or any(sep and sep in category for sep in (os.sep, os.altsep, "/")):
        raise ValueError(f"category must be the name of one folder under root (e.g. 'bagel'), got {category!r}")
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(remove_background, (bool, np.bool_)):
        raise TypeError(f"remove_background must be a bool, {_got(remove_background)}")
    if not isinstance(background_threshold, numbers.Real) or isinstance(background_threshold, (bool, np.bool_)):
        raise TypeError(f"background_threshold must be a finite number > 0, {_got(background_threshold)}")
    if not 0 < background_threshold < math.inf:  # also False for NaN
        raise ValueError(f"background_threshold must be a finite number > 0, got {background_threshold!r}")
    if not isinstance(border, numbers.Integral) or isinstance(border, (bool, np.bool_)):
        raise TypeError(f"border must be a positive int (pixels), {_got(border)}")
    if border < 1:
        raise ValueError(f"border must be a positive int (pixels), got {border!r}")
    if defect_types is not None:
        if isinstance(defect_types, (str, bytes)) or not hasattr(defect_types, "__iter__"):
            raise TypeError(f"defect_types must be None or a list of str (e.g. ['good', 'crack']), "
                            f"{_got(defect_types)}")
        defect_types = list(defect_types)
        if not defect_types:
            raise ValueError("defect_types is empty, so nothing would be read; pass None to read every type")
        for i, name in enumerate(defect_types):
            if not isinstance(name, str):
                raise TypeError(f"defect_types[{i}] must be a str, {_got(name)}")
    if max_samples is not None:
        if not isinstance(max_samples, numbers.Integral) or isinstance(max_samples, (bool, np.bool_)):
            raise TypeError(f"max_samples must be None or a positive int, {_got(max_samples)}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be None or a positive int, got {max_samples!r}")
        max_samples = int(max_samples)
    return root, bool(remove_background), float(background_threshold), int(border), defect_types, max_samples


def _split_folder(root, category, split):
    """``root/category/split``, or FileNotFoundError naming the first missing level."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"MVTec 3D-AD root folder {root!r} does not exist (expected layout: {LAYOUT})")
    folder = os.path.join(root, category)
    if not os.path.isdir(folder):
        found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        raise FileNotFoundError(f"no category folder {category!r} in {root!r} (found {found}; expected layout: "
                                f"{LAYOUT})")
    base = os.path.join(folder, split)
    if not os.path.isdir(base):
        found = sorted(d for d in os.listdir(folder) if d in SPLITS and os.path.isdir(os.path.join(folder, d)))
        raise FileNotFoundError(f"no split folder {split!r} in {folder!r} (found splits {found}; expected layout: "
                                f"{LAYOUT})")
    return base


def _read_xyz(tifffile, path):
    try:
        xyz = np.asarray(tifffile.imread(path))
    except Exception as exc:  # any reader failure: truncated, not a TIFF, unsupported compression, ...
        raise ValueError(f"{path!r}: cannot read the TIFF (truncated or not a TIFF?): "
                         f"{type(exc).__name__}: {exc}") from exc
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"{path!r}: expected an (H, W, 3) xyz image, got shape {xyz.shape}")
    if xyz.dtype.kind not in "iuf":
        raise ValueError(f"{path!r}: expected a real-valued xyz image (float32 in MVTec 3D-AD), got dtype "
                         f"{xyz.dtype}")
    return xyz


def _read_mask(Image, path, shape):
    try:
        with Image.open(path) as im:
            mask = (np.asarray(im.convert("L")) > 0).astype(np.uint8)
    except Exception as exc:  # any reader failure: truncated, not a PNG, ...
        raise ValueError(f"{path!r}: cannot read the PNG (truncated or not an image?): "
                         f"{type(exc).__name__}: {exc}") from exc
    if mask.shape != shape:
        raise ValueError(f"{path!r}: mask shape {mask.shape} differs from xyz shape {shape}")
    return mask


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
    background_threshold : float > 0, default=0.005
        Plane distance (in the units of the xyz files) below which a point counts as background.
    border : int >= 1, default=10
        Width in pixels of the image frame the plane is fitted to.
    defect_types : sequence of str or None, default=None
        Subfolders of the split to read (``"good"``, ``"crack"``, ...); None reads all, sorted.
        Only subfolders holding an ``xyz`` folder count as defect types.
    max_samples : int >= 1 or None, default=None
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
    TypeError
        If an argument has the wrong type (e.g. ``max_samples=1.5``, ``defect_types="crack"``
        instead of ``["crack"]``); the message names the argument.
    ValueError
        If an argument has a bad value (``max_samples``/``border`` < 1, ``background_threshold``
        <= 0 or not finite, an empty ``defect_types``, a ``category`` that is not one folder
        name, an unknown ``split`` or defect type); if the split folder holds no defect-type
        folder with an ``xyz`` subfolder, or an ``xyz`` folder holds no TIFF; if a TIFF or PNG
        cannot be read (truncated, not an image; raised from the reader's exception), an xyz
        image is not a real-valued (H, W, 3) array or its gt mask has another shape; or if a
        scan has no valid point, or none left after background removal (an empty cloud would
        only fail later, in an estimator). File errors name the file.
    FileNotFoundError
        If ``root``, ``root/category`` or ``root/category/split`` does not exist; the message
        names the missing folder and lists what exists.
    ImportError
        If tifffile or Pillow is missing (``pip install skst3d[mvtec]``).

    See Also
    --------
    scores_to_image : per-point scores back to an image for pixel-level evaluation.

    Examples
    --------
    >>> from skst3d.datasets import load_mvtec3d
    >>> data = load_mvtec3d("/data/mvtec_3d_anomaly_detection", "bagel")  # doctest: +SKIP
    >>> cloud, index = data.clouds[0], data.pixel_index[0]  # doctest: +SKIP
    """
    root, remove_background, background_threshold, border, defect_types, max_samples = _check_arguments(
        root, category, split, remove_background, background_threshold, border, defect_types, max_samples
    )
    try:
        rng = _as_generator(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"random_state must be None, an int, a RandomState or a Generator, got "
                         f"{random_state!r}: {exc}") from exc
    tifffile, Image = _import_readers()
    base = _split_folder(root, category, split)
    entries = sorted(os.listdir(base))
    types = [d for d in entries if os.path.isdir(os.path.join(base, d, "xyz"))]
    if not types:
        found = [d for d in entries if os.path.isdir(os.path.join(base, d))]
        what = "is empty" if not entries else f"holds no defect-type folder with an xyz/ subfolder (found {found})"
        raise ValueError(f"{base!r} {what}; expected layout: {LAYOUT}")
    if defect_types is not None:
        missing = set(defect_types) - set(types)
        if missing:
            raise ValueError(f"defect types {sorted(missing)} not found in {base!r} (folders with an xyz/ "
                             f"subfolder: {types})")
        types = [t for t in types if t in set(defect_types)]
    data = Bunch(
        clouds=[], pixel_index=[], masks=[], point_labels=[], image_shapes=[], defect_types=[], paths=[],
        category=category, split=split,
    )
    for defect in types:
        xyz_folder = os.path.join(base, defect, "xyz")
        names = sorted(f for f in os.listdir(xyz_folder)
                       if f.lower().endswith((".tif", ".tiff")) and os.path.isfile(os.path.join(xyz_folder, f)))
        if not names:
            raise ValueError(f"{xyz_folder!r} holds no .tiff file; expected layout: {LAYOUT}")
        if max_samples is not None:
            names = names[:max_samples]
        for name in names:
            path = os.path.join(xyz_folder, name)
            xyz = _read_xyz(tifffile, path)
            shape = xyz.shape[:2]
            valid = np.all(np.isfinite(xyz), axis=-1) & np.any(xyz != 0, axis=-1)
            if not valid.any():
                # An empty cloud would only fail later, inside an estimator, far from the cause.
                raise ValueError(f"{path!r}: the scan has no valid point (every pixel is (0, 0, 0) or "
                                 "non-finite); remove or replace the file")
            if remove_background:
                n_valid = int(valid.sum())
                valid &= ~_background_mask(np.nan_to_num(xyz), valid, border, background_threshold, rng)
                if not valid.any():
                    raise ValueError(
                        f"{path!r}: background removal left no point: all {n_valid} valid points lie within "
                        f"background_threshold={background_threshold!r} of the plane fitted to the "
                        f"{border}-pixel border; lower background_threshold or pass remove_background=False"
                    )
            gt_path = os.path.join(base, defect, "gt", os.path.splitext(name)[0] + ".png")
            if os.path.isfile(gt_path):
                mask = _read_mask(Image, gt_path, shape)
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
