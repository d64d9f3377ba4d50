"""Per-point scores to per-pixel anomaly maps, with harmonic interpolation of the gaps."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

__all__ = ["scores_to_image", "harmonic_fill"]


def harmonic_fill(image, known):
    """Fill unknown pixels by the discrete harmonic interpolant of the known ones.

    Every unknown pixel takes the mean of its 4-neighbours inside the image (the discrete
    Laplace equation, natural boundary at the image border), with the known pixels as Dirichlet
    values. Unknown pixels in a connected component (4-connectivity) that touches no known
    pixel, which happens only when no pixel is known, get the minimum known value, or 0.

    Parameters
    ----------
    image : array-like of shape (H, W)
        Values at the known pixels; the other entries are ignored.
    known : array-like of bool, shape (H, W)

    Returns
    -------
    filled : ndarray of shape (H, W), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.datasets._harmonic import harmonic_fill
    >>> image = np.zeros((1, 5)); image[0, 0], image[0, 4] = 0.0, 4.0
    >>> known = np.zeros((1, 5), bool); known[0, [0, 4]] = True
    >>> harmonic_fill(image, known).round(6)
    array([[0., 1., 2., 3., 4.]])
    """
    values = np.asarray(image, dtype=np.float64)
    known = np.asarray(known, dtype=bool)
    if values.ndim != 2 or values.shape != known.shape:
        raise ValueError(f"image and known must be 2-D of the same shape, got {values.shape} and {known.shape}")
    out = np.where(known, values, 0.0)
    if known.all():
        return out
    if not known.any():
        return out  # nothing to interpolate from: zeros
    unknown = ~known
    comp, n_comp = ndimage.label(unknown)  # 4-connectivity
    touching = ndimage.binary_dilation(known) & unknown
    solvable_ids = np.unique(comp[touching])
    solvable = np.isin(comp, solvable_ids[solvable_ids > 0]) & unknown
    out[unknown & ~solvable] = values[known].min()
    if not solvable.any():
        return out
    h, w = values.shape
    index = np.full((h, w), -1, dtype=np.int64)
    index[solvable] = np.arange(int(solvable.sum()))
    n = int(solvable.sum())
    degree = np.zeros((h, w))
    rhs = np.zeros((h, w))
    rows, cols = [], []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        # neighbour of pixel (y, x) is (y + dy, x + dx); restrict to pairs inside the image
        ys = slice(max(0, -dy), h - max(0, dy))
        xs = slice(max(0, -dx), w - max(0, dx))
        yn = slice(max(0, dy), h - max(0, -dy))
        xn = slice(max(0, dx), w - max(0, -dx))
        here, there = solvable[ys, xs], index[yn, xn]
        degree[ys, xs] += here
        k_there = known[yn, xn]
        rhs[ys, xs] += np.where(here & k_there, values[yn, xn], 0.0)
        pair = here & (there >= 0)
        rows.append(index[ys, xs][pair])
        cols.append(there[pair])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    lap = sparse.csr_matrix((-np.ones(len(rows)), (rows, cols)), shape=(n, n))
    lap = lap + sparse.diags(degree[solvable])
    out[solvable] = spsolve(lap.tocsc(), rhs[solvable])
    return out


def scores_to_image(point_scores, pixel_index, shape, fill="harmonic"):
    """Put per-point scores on the image grid they came from and fill the pixels without one.

    Parameters
    ----------
    point_scores : array-like of shape (n,)
        One score per point (e.g. anomaly scores of a subsample of an MVTec 3D-AD cloud).
    pixel_index : array-like of int, shape (n,)
        Flat (row-major) pixel index of each point, as returned by :func:`load_mvtec3d`.
        Pixels hit by several points get the mean of their scores.
    shape : tuple of int (H, W)
    fill : {"harmonic", "nearest"} or None, default="harmonic"
        ``"harmonic"``: solve the discrete 4-neighbour Laplace equation for the empty pixels
        with the scored pixels as Dirichlet values (the paper's harmonic interpolation);
        ``"nearest"``: value of the nearest scored pixel (Euclidean); None: NaN. If no pixel
        is scored, the image is all zeros (NaN for None).

    Returns
    -------
    image : ndarray of shape (H, W), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.datasets import scores_to_image
    >>> scores_to_image(np.array([0.0, 3.0]), np.array([0, 3]), (1, 4))
    array([[0., 1., 2., 3.]])
    >>> scores_to_image(np.array([0.0, 3.0]), np.array([0, 3]), (1, 4), fill=None)
    array([[ 0., nan, nan,  3.]])
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape}")
    scores = np.asarray(point_scores, dtype=np.float64).ravel()
    pixel_index = np.asarray(pixel_index, dtype=np.int64).ravel()
    if scores.shape != pixel_index.shape:
        raise ValueError(f"{len(scores)} scores but {len(pixel_index)} pixel indices")
    size = shape[0] * shape[1]
    if len(pixel_index) and (pixel_index.min() < 0 or pixel_index.max() >= size):
        raise ValueError(f"pixel_index out of range for an image of shape {shape}")
    total = np.bincount(pixel_index, weights=scores, minlength=size)
    count = np.bincount(pixel_index, minlength=size)
    known = (count > 0).reshape(shape)
    values = np.divide(total, np.maximum(count, 1)).reshape(shape)
    if fill is None:
        return np.where(known, values, np.nan)
    if fill == "nearest":
        if not known.any():
            return np.zeros(shape)
        _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
        return values[iy, ix]
    if fill == "harmonic":
        return harmonic_fill(values, known)
    raise ValueError(f"fill must be 'harmonic', 'nearest' or None, got {fill!r}")
