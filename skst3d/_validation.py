"""Input validation shared by every skst3d estimator (numpy and torch only).

Error messages name the argument, the cloud index and, where it helps, the offending
point, because a list of a hundred clouds with one bad entry is the usual failure.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["check_point_clouds", "check_point_labels"]

# Coordinates beyond this would overflow squared distances in float64 (k-d trees, ICP).
MAX_COORDINATE = 1e150
# Labels are stored as int64: larger unsigned or float labels would wrap around to negative ones.
_INT64_MAX = int(np.iinfo(np.int64).max)


def _to_numpy(obj, what, expected):
    """A torch tensor (any device, any grad state) or array-like as a numpy array.

    Anything that does not convert (ragged nested lists, sparse, quantized or meta tensors,
    dtypes numpy lacks such as float8) raises ValueError naming ``what``.
    """
    try:
        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu()
            if obj.dtype in (torch.float16, torch.bfloat16):
                # numpy has no bfloat16; float16/bfloat16 are upcast to float32 (documented).
                obj = obj.float()
            return obj.numpy()
        return np.asarray(obj)
    except (ValueError, TypeError, RuntimeError) as exc:  # RuntimeError: NotImplementedError of meta tensors
        raise ValueError(f"{what} could not be read as {expected}: {exc}") from None


def _check_numeric(arr, what):
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{what} has complex dtype {arr.dtype}; point coordinates must be real numbers.")
    if kind not in "biuf":
        raise TypeError(
            f"{what} has dtype {arr.dtype} (not numeric); point coordinates must be real numbers."
        )


def check_point_clouds(X, *, min_points=1, name="X", reason=None):
    """Validate a collection of point clouds and convert it to float64 numpy arrays.

    Parameters
    ----------
    X : list or tuple of array-like of shape (n_i, 3), or array-like of shape (N, n, 3)
        The point clouds. Entries may be numpy arrays, torch tensors (on any device; they
        are detached and copied to the CPU) or nested lists; a single 3-D array or tensor
        is read as N clouds of n points each. Clouds may have different sizes.
    min_points : int, default=1
        Minimum number of points per cloud.
    name : str, default="X"
        Name of the argument, used in error messages.
    reason : str, optional
        Why ``min_points`` points are needed (for example ``"k + 1 = 33 points for
        k = 32 neighbours"``), appended to the error message. By default the message
        explains that kNN-based estimators need ``k + 1`` points.

    Returns
    -------
    clouds : list of ndarray of shape (n_i, 3), dtype float64
        C-contiguous float64 copies (or the inputs themselves when they already are). Every
        numeric input converts exactly (float32, integers up to 2**53, bool, float16 and
        bfloat16): scans far from the origin keep their resolution until the estimators remove
        each cloud's own offset, before anything is cast to float32.

    Raises
    ------
    TypeError
        If ``X`` is not a collection of clouds, or a cloud has a complex, object or
        string dtype.
    ValueError
        If ``X`` is empty or a single (n, 3) cloud, a cloud does not convert to an array
        (ragged nested lists; sparse, quantized or meta tensors; dtypes numpy lacks), has the
        wrong shape, too few points, or a NaN, infinite or absurdly large (beyond 1e150)
        coordinate.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d._validation import check_point_clouds
    >>> clouds = check_point_clouds([np.zeros((4, 3)), [[0, 0, 1], [1, 0, 0]]])
    >>> [c.shape for c in clouds], clouds[0].dtype
    ([(4, 3), (2, 3)], dtype('float64'))
    >>> check_point_clouds(np.zeros((5, 3)))
    Traceback (most recent call last):
    ...
    ValueError: X must be a list of point clouds, got a single array of shape (5, 3); pass ...
    """
    if not isinstance(min_points, numbers.Integral) or min_points < 0:
        raise ValueError(f"min_points must be a non-negative integer, got {min_points!r}")
    if isinstance(X, (str, bytes, dict)) or X is None:
        raise TypeError(f"{name} must be a list of (n_i, 3) point clouds, got {type(X).__name__}.")

    if isinstance(X, (np.ndarray, torch.Tensor)):
        if X.ndim == 2:
            raise ValueError(
                f"{name} must be a list of point clouds, got a single array of shape "
                f"{tuple(X.shape)}; pass a list of clouds, e.g. [cloud]."
            )
        if X.ndim != 3:
            raise ValueError(
                f"{name} must be a list of (n_i, 3) point clouds or an array of shape "
                f"(n_clouds, n_points, 3), got an array of shape {tuple(X.shape)}."
            )
        entries = list(X)
    else:
        try:
            entries = list(X)
        except TypeError:
            raise TypeError(
                f"{name} must be a list of (n_i, 3) point clouds, got {type(X).__name__}."
            ) from None

    if len(entries) == 0:
        raise ValueError(f"{name} is empty; at least one point cloud is needed.")

    clouds = []
    for i, entry in enumerate(entries):
        what = f"{name}[{i}]"
        if isinstance(entry, numbers.Number):
            raise ValueError(
                f"{what} is a number, not a point cloud; {name} must be a list of (n_i, 3) "
                "clouds (a single cloud must be wrapped, e.g. [cloud])."
            )
        arr = _to_numpy(entry, what, "an (n, 3) array")
        _check_numeric(arr, what)
        if arr.ndim != 2 or arr.shape[1] != 3:
            hint = ""
            if arr.ndim == 1 and arr.shape == (3,):
                hint = f" ({name} looks like a single cloud; pass a list of clouds, e.g. [cloud])"
            raise ValueError(f"{what} must have shape (n_points, 3), got shape {arr.shape}{hint}.")
        if arr.shape[0] < min_points:
            message = f"{what} has {arr.shape[0]} points; at least {min_points} are needed"
            if reason is None and min_points > 1:
                reason = (
                    f"min_points={min_points}; estimators built on a k-nearest-neighbour graph "
                    "need k + 1 points per cloud"
                )
            message += f" ({reason})." if reason else "."
            raise ValueError(message)
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"{what} contains NaN or infinite coordinates (first at point {bad}: "
                f"{arr[bad].tolist()})."
            )
        huge = np.abs(arr).max(axis=1) > MAX_COORDINATE
        if huge.any():
            bad = int(np.flatnonzero(huge)[0])
            raise ValueError(
                f"{what} has a coordinate beyond {MAX_COORDINATE:g} (first at point {bad}: {arr[bad].tolist()}); "
                "squared distances would overflow. Is it an outlier or a unit mistake?"
            )
        clouds.append(arr)
    return clouds


def check_point_labels(y, clouds, name="y"):
    """Validate per-point labels that go with a list of point clouds.

    Parameters
    ----------
    y : list or tuple of array-like of shape (n_i,)
        One label array per cloud: 0 marks a normal point, a positive integer an
        anomalous point (different positive values may number distinct defect regions).
        Boolean masks are read as 0/1. Torch tensors are accepted.
    clouds : list of array-like of shape (n_i, 3)
        The clouds the labels belong to, typically the output of
        :func:`check_point_clouds`.
    name : str, default="y"
        Name of the argument, used in error messages.

    Returns
    -------
    labels : list of ndarray of shape (n_i,), dtype int64

    Raises
    ------
    TypeError
        If ``y`` is not a list of arrays or a label array is not numeric.
    ValueError
        If the number of label arrays differs from the number of clouds, a label array
        does not convert to an array, has a length different from its cloud, or holds
        negative, fractional, NaN or infinite values, or values beyond the int64 range.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d._validation import check_point_labels
    >>> clouds = [np.zeros((3, 3)), np.zeros((2, 3))]
    >>> check_point_labels([[0, 1, 0], np.array([True, False])], clouds)
    [array([0, 1, 0]), array([1, 0])]
    """
    if isinstance(y, (str, bytes, dict)) or y is None:
        raise TypeError(f"{name} must be a list of per-point label arrays, got {type(y).__name__}.")
    if isinstance(y, (np.ndarray, torch.Tensor)) and y.ndim == 1:
        raise ValueError(
            f"{name} must be a list of label arrays (one per cloud), got a single 1-D array "
            f"of length {len(y)}; pass e.g. [labels]."
        )
    try:
        entries = list(y)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of per-point label arrays, got {type(y).__name__}."
        ) from None
    if len(entries) != len(clouds):
        raise ValueError(
            f"{name} has {len(entries)} label arrays but there are {len(clouds)} point clouds; "
            "give one label array per cloud."
        )
    labels = []
    for i, (entry, cloud) in enumerate(zip(entries, clouds)):
        what = f"{name}[{i}]"
        arr = _to_numpy(entry, what, "an array of labels")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{what} has dtype {arr.dtype}; labels must be integers or booleans.")
        if arr.ndim != 1:
            raise ValueError(f"{what} must be 1-D (one label per point), got shape {arr.shape}.")
        n = len(cloud)
        if len(arr) != n:
            raise ValueError(
                f"{what} has {len(arr)} labels but cloud {i} has {n} points; give one label per point."
            )
        if arr.dtype.kind == "f":
            finite = np.isfinite(arr)
            if not finite.all():
                bad = int(np.flatnonzero(~finite)[0])
                raise ValueError(f"{what} contains NaN or infinite labels (first at point {bad}).")
            if np.any(arr != np.round(arr)):
                bad = int(np.flatnonzero(arr != np.round(arr))[0])
                raise ValueError(f"{what} contains a non-integer label {arr[bad]} at point {bad}.")
        if arr.dtype.kind != "b" and n and arr.min() < 0:
            bad = int(np.flatnonzero(arr < 0)[0])
            raise ValueError(
                f"{what} contains a negative label {arr[bad]} at point {bad}; use 0 for normal "
                "points and positive integers for anomalous ones."
            )
        if n and (
            (arr.dtype.kind == "u" and int(arr.max()) > _INT64_MAX)
            or (arr.dtype.kind == "f" and float(arr.max()) >= 2.0**63)
        ):
            bad = int(np.argmax(arr))
            raise ValueError(
                f"{what} contains the label {arr[bad]} at point {bad}, beyond the int64 range of labels."
            )
        labels.append(np.ascontiguousarray(arr, dtype=np.int64))
    return labels


def anomaly_free_clouds(clouds, y, name="y"):
    """The clouds whose labels in ``y`` mark no anomalous point (all clouds when y is None).

    Estimators train on anomaly-free data; this lets a grid search over a labelled mixed set
    hand its training folds to ``fit`` as they are.

    Examples
    --------
    >>> import numpy as np
    >>> clouds = [np.zeros((3, 3), np.float32), np.ones((2, 3), np.float32)]
    >>> [len(c) for c in anomaly_free_clouds(clouds, [[0, 0, 0], [0, 1]])]
    [3]
    """
    if y is None:
        return clouds
    labels = check_point_labels(y, clouds, name=name)
    kept = [c for c, lab in zip(clouds, labels) if not np.any(lab)]
    if not kept:
        raise ValueError(f"every training cloud has anomalous points in {name}; fit needs anomaly-free clouds")
    return kept
