"""Evaluation metrics for point-cloud anomaly detection.

The localisation metric is the area under the per-region overlap (PRO) curve,
computed exactly as the official MVTec 3D-AD evaluation script does
(``pro_curve_util.compute_pro`` + ``generic_util.trapezoid``), and extended from
images to point clouds. The detection metric is the cloud-level ROC AUC.

Every function here takes *anomaly scores* (higher = more anomalous). The
scorers (:data:`au_pro_scorer`, :func:`make_au_pro_scorer`,
:data:`cloud_auroc_scorer`) call ``estimator.score_samples`` (higher = more
normal, scikit-learn's outlier convention) and negate it.

This module imports numpy, scipy and scikit-learn only, so that evaluating
stored anomaly maps never pulls in torch.
"""

import numbers

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from sklearn.metrics import roc_auc_score

__all__ = [
    "pro_curve",
    "au_pro",
    "cloud_roc_auc",
    "make_au_pro_scorer",
    "au_pro_scorer",
    "cloud_auroc_scorer",
]

# MVTec 3D-AD labels image regions with 8-connectivity (a 3x3 block of ones).
_STRUCTURE_2D = np.ones((3, 3), dtype=int)


# --------------------------------------------------------------------------- #
# parameter and input validation
# --------------------------------------------------------------------------- #
def _check_num_thresholds(num_thresholds):
    if num_thresholds is None:
        return None
    if (
        not isinstance(num_thresholds, numbers.Integral)
        or isinstance(num_thresholds, bool)
        or num_thresholds < 2
    ):
        # The official script asserts pro_num_thresholds > 1; with a single
        # threshold the curve would not reach FPR = 0.
        raise ValueError(f"num_thresholds must be None or an integer >= 2, got {num_thresholds!r}.")
    return int(num_thresholds)


def _check_integration_limit(integration_limit):
    if (
        not isinstance(integration_limit, numbers.Real)
        or isinstance(integration_limit, bool)
        or not 0.0 < integration_limit <= 1.0
    ):
        raise ValueError(
            f"integration_limit must be a number in (0, 1], got {integration_limit!r}."
        )
    return float(integration_limit)


def _check_region_k(region_k):
    if not isinstance(region_k, numbers.Integral) or isinstance(region_k, bool) or region_k < 1:
        raise ValueError(f"region_k must be a positive integer, got {region_k!r}.")
    return int(region_k)


# Names of the arguments in error messages; the scorers pass their own (y, X, ...).
_NAMES = {"y_true": "y_true", "y_score": "y_score", "points": "points"}


def _as_samples(seq, name):
    """Return ``seq`` as a list of samples (a sequence, or an array split on axis 0)."""
    if isinstance(seq, (str, bytes, dict, set, frozenset)) or not hasattr(seq, "__len__"):
        raise TypeError(
            f"{name} must be a list with one array per sample, got {type(seq).__name__}."
        )
    if isinstance(seq, np.ndarray) and seq.ndim == 0:
        raise TypeError(f"{name} must be a list with one array per sample, got a scalar.")
    return list(seq)


def _as_array(value, name, index):
    """``np.asarray(value)``; ragged or unreadable entries raise a ValueError naming the sample."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Sample {index}: {name} could not be read as an array: {exc}") from exc


def _as_real(array, name, index):
    """``array`` as float64; complex, string, object and other non-real dtypes raise TypeError.

    Object arrays are accepted when every entry is a real number (they are converted).
    """
    kind = array.dtype.kind
    if kind in "biuf":
        return array.astype(np.float64, copy=False)
    if kind == "c":
        raise TypeError(
            f"Sample {index}: {name} has complex dtype {array.dtype}; pass real values "
            "(e.g. np.abs or .real, whichever is meant)."
        )
    if kind in "US":
        raise TypeError(
            f"Sample {index}: {name} has string dtype {array.dtype}; pass numbers, e.g. "
            ".astype(float) if the strings hold them."
        )
    if kind == "O":
        for position, value in enumerate(array.flat):
            if not isinstance(value, (numbers.Real, np.bool_)):
                raise TypeError(
                    f"Sample {index}: {name} is an object array whose entry {position} is not a "
                    f"real number: {value!r} of type {type(value).__name__}."
                )
        try:
            return array.astype(np.float64)
        except OverflowError as exc:  # e.g. a Python int beyond float64's range
            raise ValueError(
                f"Sample {index}: {name} holds a number that float64 cannot represent: {exc}"
            ) from exc
    raise TypeError(f"Sample {index}: {name} has dtype {array.dtype}; pass real numbers.")


def _check_scores(score, shape, index, names=_NAMES):
    name = names["y_score"]
    score = _as_real(_as_array(score, name, index), name, index)
    if score.shape != shape:
        raise ValueError(
            f"Sample {index}: {name} has shape {score.shape} but {names['y_true']} has shape "
            f"{shape}."
        )
    nan = np.isnan(score).ravel()
    if nan.any():
        raise ValueError(
            f"Sample {index}: {name} contains NaN (first at flat index {int(np.argmax(nan))})."
        )
    return score


def _check_truth(truth, index, names=_NAMES):
    """One ``y_true`` entry as an array: real (or boolean) dtype, no NaN.

    Object arrays of real numbers are converted to float64.
    """
    name = names["y_true"]
    truth = _as_array(truth, name, index)
    if truth.dtype.kind not in "biuf":
        truth = _as_real(truth, name, index)
    if truth.dtype.kind == "f" and np.isnan(truth).any():
        raise ValueError(
            f"Sample {index}: {name} contains NaN (first at flat index "
            f"{int(np.argmax(np.isnan(truth).ravel()))})."
        )
    return truth


def _check_points(points, n_points, index, names=_NAMES):
    """The (n_points, 3) float64 coordinates of one cloud, all finite."""
    name = names["points"]
    points = _as_real(_as_array(points, name, index), name, index)
    if points.shape != (n_points, 3):
        raise ValueError(
            f"Sample {index}: {name} must have shape ({n_points}, 3) to match the mask "
            f"of {n_points} points, got {points.shape}."
        )
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise ValueError(
            f"Sample {index}: {name} contains NaN or infinite coordinates (first at point "
            f"{bad}: {points[bad].tolist()})."
        )
    return points


def _check_lengths(y_true, y_score, points, names=_NAMES):
    y_true = _as_samples(y_true, names["y_true"])
    y_score = _as_samples(y_score, names["y_score"])
    if len(y_true) != len(y_score):
        raise ValueError(
            f"{names['y_true']} has {len(y_true)} samples but {names['y_score']} has "
            f"{len(y_score)}."
        )
    if points is not None:
        points = _as_samples(points, names["points"])
        if len(points) != len(y_true):
            raise ValueError(
                f"{names['y_true']} has {len(y_true)} samples but {names['points']} has "
                f"{len(points)}."
            )
    if not y_true:
        raise ValueError(
            f"{names['y_true']} is empty: pass one array per sample (cloud or image)."
        )
    return y_true, y_score, points


def _knn_regions(mask, points, region_k, index, names=_NAMES):
    """Connected components of the anomalous points of one cloud.

    Two anomalous points are linked when one is among the ``region_k`` nearest
    neighbours of the other *in the whole cloud*. Searching the whole cloud (and
    not the anomalous points alone) keeps two defects apart when normal points
    lie between them: among anomalous points only, every small defect would
    always find ``region_k`` neighbours, however far away.
    """
    if points is None:
        raise ValueError(
            f"Sample {index}: {names['y_true']} is a boolean point mask, so its regions are the "
            "connected components of the anomalous points, which needs the coordinates: pass "
            f"{names['points']}=[(n_i, 3) arrays], or pass integer region labels (0 = normal, 1, "
            "2, ... = one id per region) instead of a boolean mask."
        )
    points = _check_points(points, mask.shape[0], index, names)
    anomalous = np.flatnonzero(mask)
    m = anomalous.size
    if m == 0:
        return np.zeros(0, dtype=np.intp), 0
    n = points.shape[0]
    k = min(region_k + 1, n)  # +1: the query point finds itself first
    _, neighbours = cKDTree(points).query(points[anomalous], k=k)
    neighbours = neighbours.reshape(m, k)
    # Map cloud indices to indices among the anomalous points (-1 = normal).
    position = np.full(n, -1, dtype=np.intp)
    position[anomalous] = np.arange(m)
    rows = np.repeat(np.arange(m), k)
    cols = position[neighbours.ravel()]
    keep = cols >= 0
    graph = coo_matrix((np.ones(keep.sum(), dtype=np.int8), (rows[keep], cols[keep])), shape=(m, m))
    # directed=False: an edge from either side links the pair (symmetric kNN graph).
    n_regions, region_of = connected_components(graph, directed=False)
    return region_of, n_regions


def _collect(y_true, y_score, points, region_k, names=_NAMES):
    """Pool the normal scores and the scores of every anomalous region of the dataset.

    Returns
    -------
    ok_scores : ndarray of shape (n_normal,)
        Scores of all normal points/pixels (unsorted).
    region_scores : ndarray of shape (n_anomalous,)
        Scores of all anomalous points/pixels.
    region_ids : ndarray of shape (n_anomalous,)
        Dataset-wide region index of each anomalous point, in ``[0, n_regions)``.
    n_regions : int
    """
    y_true, y_score, points = _check_lengths(y_true, y_score, points, names)

    ok_parts, region_parts, id_parts = [], [], []
    n_regions = 0
    name = names["y_true"]
    for i, (truth, score) in enumerate(zip(y_true, y_score)):
        truth = _as_array(truth, name, i)
        dtype = truth.dtype  # before object arrays of numbers become float64
        truth = _check_truth(truth, i, names)
        score = _check_scores(score, truth.shape, i, names)
        if truth.ndim == 2:
            # An image mask, as in MVTec 3D-AD: nonzero = anomalous, 8-connected regions.
            labelled, n_new = ndimage.label(truth != 0, structure=_STRUCTURE_2D)
            labelled = labelled.ravel()
            score = score.ravel()
            anomalous = labelled > 0
            ids = labelled[anomalous] - 1
        elif truth.ndim == 1 and truth.dtype == bool:
            anomalous = truth
            ids, n_new = _knn_regions(
                truth, None if points is None else points[i], region_k, i, names
            )
        elif truth.ndim == 1 and np.issubdtype(truth.dtype, np.integer):
            if truth.size and truth.min() < 0:
                raise ValueError(
                    f"Sample {i}: {name} integer region labels must be >= 0 (0 = normal), "
                    f"got {truth.min()}."
                )
            anomalous = truth > 0
            # Region ids are per sample and need not be contiguous.
            unique, ids = np.unique(truth[anomalous], return_inverse=True)
            n_new = unique.size
        elif truth.ndim == 1:
            raise ValueError(
                f"Sample {i}: 1-D {name} must hold integer region labels or a boolean mask, "
                f"got dtype {dtype}; convert it with .astype(int) or .astype(bool)."
            )
        else:
            raise ValueError(
                f"Sample {i}: {name} entries must be 1-D (per point) or 2-D (per pixel), got "
                f"shape {truth.shape}. To pass a single sample, wrap it in a list."
            )
        ok_parts.append(score[~anomalous])
        region_parts.append(score[anomalous])
        id_parts.append(np.asarray(ids, dtype=np.intp).ravel() + n_regions)
        n_regions += int(n_new)

    ok_scores = np.concatenate(ok_parts) if ok_parts else np.zeros(0)
    if n_regions == 0:
        raise ValueError(
            f"{name} contains no anomalous region, so the PRO curve is undefined; evaluate on "
            "a set that includes defective samples (with cross-validation, every test fold "
            "needs at least one)."
        )
    if ok_scores.size == 0:
        raise ValueError(
            f"{name} contains no normal point, so the false positive rate is undefined."
        )
    return ok_scores, np.concatenate(region_parts), np.concatenate(id_parts), n_regions


def _pro_from_collected(ok_scores, region_scores, region_ids, n_regions, num_thresholds):
    ok_sorted = np.sort(ok_scores)
    n_ok = ok_sorted.size
    if num_thresholds is None:
        positions = np.arange(n_ok)
    else:
        # Integer positions into the sorted normal scores, as the official script picks them.
        positions = np.linspace(0, n_ok - 1, num=num_thresholds, dtype=int)
    thresholds = ok_sorted[positions]
    # Position-based FPR: ties among normal scores do not merge curve points.
    fpr = 1.0 - (positions + 1) / n_ok

    # A point is "not above" threshold j iff score <= thresholds[j], i.e. iff j >= first,
    # where first is the first threshold >= score (thresholds ascend).
    first = np.searchsorted(thresholds, region_scores, side="left")
    # PRO_j = mean_r (1 - c_rj / n_r) = 1 - (1/R) sum_{points p <= t_j} 1 / n_r(p):
    # one weighted histogram over `first` instead of a regions x thresholds table.
    sizes = np.bincount(region_ids, minlength=n_regions)
    weights = 1.0 / sizes[region_ids]
    missed = np.cumsum(np.bincount(first, weights=weights, minlength=thresholds.size + 1))
    pro = np.clip(1.0 - missed[: thresholds.size] / n_regions, 0.0, 1.0)

    # Ascending FPR, then the (1, 1) end point the official curve starts from.
    fpr = np.append(fpr[::-1], 1.0)
    pro = np.append(pro[::-1], 1.0)
    return fpr, pro


def _trapezoid_to(x, y, x_max):
    """Trapezoid area under ``y(x)`` on ``[x[0], x_max]`` (``x`` ascending).

    When ``x_max`` is not a sample, ``y`` is interpolated linearly between its
    neighbours, as MVTec's ``generic_util.trapezoid`` does.
    """
    correction = 0.0
    if not np.any(x == x_max):
        ins = int(np.searchsorted(x, x_max, side="right"))
        # The curve spans [0, 1] and 0 < x_max <= 1, so both neighbours exist.
        x0, x1, y0, y1 = x[ins - 1], x[ins], y[ins - 1], y[ins]
        y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        correction = 0.5 * (y_at + y0) * (x_max - x0)
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


# --------------------------------------------------------------------------- #
# public metrics
# --------------------------------------------------------------------------- #
def pro_curve(y_true, y_score, *, num_thresholds=100, points=None, region_k=8):
    """Per-region overlap (PRO) curve, as in the MVTec 3D-AD evaluation.

    All normal scores of the dataset are pooled and sorted; the thresholds are
    the normal scores at ``num_thresholds`` evenly spaced integer positions
    ``np.linspace(0, n_normal - 1, num_thresholds, dtype=int)``. At position
    ``pos`` the false positive rate is ``1 - (pos + 1) / n_normal`` and the PRO
    is the unweighted mean, over every anomalous region of the dataset, of the
    fraction of the region's points whose score is strictly above the
    threshold.

    Parameters
    ----------
    y_true : list of ndarray
        Ground truth, one entry per sample (an array of shape
        ``(n_samples, ...)`` is split along its first axis). Each entry is one of

        - a 2-D image mask (boolean or real numbers, nonzero = anomalous, no
          NaN); regions are its 8-connected components, exactly as in MVTec
          3D-AD;
        - a 1-D integer array of region labels: 0 = normal, each positive id
          one region (ids are per sample, need not be contiguous, and are used
          as given: a 0/1 array is one region per sample);
        - a 1-D boolean point mask (True = anomalous), which needs ``points``;
          its regions are the connected components of the anomalous points in
          the symmetric ``region_k``-nearest-neighbour graph of the whole
          cloud, restricted to the anomalous points.

        A single sample must be wrapped in a list.
    y_score : list of ndarray
        Anomaly scores (higher = more anomalous), one real-valued array per
        sample with the shape of the matching ``y_true`` entry. NaN is
        rejected; ``+-inf`` are allowed (only the order of scores matters).
    num_thresholds : int >= 2 or None, default=100
        Number of thresholds (the official default is 100). ``None`` uses
        every normal score as a threshold (the exact curve).
    points : list of ndarray of shape (n_i, 3), default=None
        Coordinates of each cloud (finite); needed for boolean masks only
        (other entries may be ``None`` or are ignored).
    region_k : int, default=8
        Neighbours per point of the graph that splits boolean masks into
        regions. Two anomalous points belong to the same region when they are
        joined by a chain of anomalous points each among the ``region_k``
        nearest neighbours (in the whole cloud) of the next.

    Returns
    -------
    fpr : ndarray of shape (n_thresholds + 1,)
        False positive rates, ascending, from 0 (the largest normal score) up
        to 1. The last point is the fixed end point ``(1, 1)`` that the
        official curve includes.
    pro : ndarray of shape (n_thresholds + 1,)
        PRO values matching ``fpr``.

    Raises
    ------
    TypeError
        If ``y_true``, ``y_score`` or ``points`` is not a list of arrays, or
        an entry has a complex, string or other non-real dtype (an object array
        counts as real when all its entries are real numbers).
    ValueError
        If there is no sample, no anomalous region or no normal point in the
        dataset; if the three lists differ in length; if an entry cannot be
        read as an array (ragged), shapes mismatch, ``y_score`` or a
        ``y_true`` image mask holds NaN, 1-D labels are negative or neither
        integer nor boolean; if a boolean mask comes without ``points``, or
        its points are not an ``(n_i, 3)`` array of finite coordinates; or if
        ``num_thresholds`` or ``region_k`` is invalid. Per-sample messages
        name the argument and start with ``Sample i:``.

    See Also
    --------
    au_pro : Normalised area under this curve.

    Notes
    -----
    Repeated threshold positions (``num_thresholds > n_normal``) give repeated
    curve points, as in the official code; they add no area.

    Examples
    --------
    One cloud with integer labels: four normal points and two regions.

    >>> import numpy as np
    >>> from skst3d.metrics import pro_curve
    >>> y_true = [np.array([0, 0, 0, 0, 1, 1, 2])]
    >>> y_score = [np.array([0.1, 0.2, 0.3, 0.4, 0.25, 0.5, 0.35])]
    >>> fpr, pro = pro_curve(y_true, y_score, num_thresholds=None)
    >>> print(fpr)
    [0.   0.25 0.5  0.75 1.  ]
    >>> print(pro)
    [0.25 0.75 1.   1.   1.  ]
    """
    num_thresholds = _check_num_thresholds(num_thresholds)
    region_k = _check_region_k(region_k)
    collected = _collect(y_true, y_score, points, region_k)
    return _pro_from_collected(*collected, num_thresholds)


def au_pro(y_true, y_score, *, integration_limit=0.3, num_thresholds=100, points=None, region_k=8):
    """Normalised area under the PRO curve up to a false positive rate.

    Reproduces the MVTec 3D-AD metric: the :func:`pro_curve` is integrated
    with the trapezoid rule from FPR 0 to ``integration_limit`` (interpolating
    the PRO linearly at the limit when it is not a curve point) and divided by
    ``integration_limit``, so a perfect detector scores 1.

    Parameters
    ----------
    y_true : list of ndarray
        Ground truth per sample; see :func:`pro_curve`.
    y_score : list of ndarray
        Anomaly scores per sample (higher = more anomalous).
    integration_limit : float in (0, 1], default=0.3
        Largest false positive rate integrated over (0.3 in MVTec 3D-AD).
    num_thresholds : int >= 2 or None, default=100
        See :func:`pro_curve`.
    points : list of ndarray of shape (n_i, 3), default=None
        Coordinates, needed for boolean point masks; see :func:`pro_curve`.
    region_k : int, default=8
        See :func:`pro_curve`.

    Returns
    -------
    score : float
        In [0, 1]. Scores that put every anomalous point below every normal
        one give 0 for ``integration_limit < 1 - 1 / n_normal``; beyond, the
        fixed end point ``(1, 1)`` adds a little area.

    Raises
    ------
    TypeError
        On non-list inputs or non-real dtypes; see :func:`pro_curve`.
    ValueError
        If the dataset has no anomalous region (e.g. a cross-validation fold
        without defective samples), if ``integration_limit`` is not in
        (0, 1]; see :func:`pro_curve` for the others.

    See Also
    --------
    pro_curve : The curve integrated here.
    make_au_pro_scorer : The same metric as a scorer for model selection.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.metrics import au_pro
    >>> y_true = [np.array([0, 0, 0, 0, 1, 1, 2])]
    >>> y_score = [np.array([0.1, 0.2, 0.3, 0.4, 0.25, 0.5, 0.35])]
    >>> round(au_pro(y_true, y_score, num_thresholds=None), 6)
    0.545833

    An image mask: the two diagonal pixels form one 8-connected region.

    >>> mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    >>> scores = np.array([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]])
    >>> au_pro([mask], [scores])
    1.0
    """
    integration_limit = _check_integration_limit(integration_limit)
    return _au_pro(y_true, y_score, integration_limit, num_thresholds, points, region_k)


def _au_pro(y_true, y_score, integration_limit, num_thresholds, points, region_k, names=_NAMES):
    """:func:`au_pro` with a checked ``integration_limit`` and the argument names to report."""
    num_thresholds = _check_num_thresholds(num_thresholds)
    region_k = _check_region_k(region_k)
    collected = _collect(y_true, y_score, points, region_k, names)
    fpr, pro = _pro_from_collected(*collected, num_thresholds)
    area = _trapezoid_to(fpr, pro, integration_limit) / integration_limit
    return float(min(max(area, 0.0), 1.0))


def cloud_roc_auc(y_true, y_score):
    """Cloud-level ROC AUC: is a cloud defective at all?

    A sample is anomalous when any of its points (or pixels) is; its anomaly
    score is the maximum of its point scores (``np.max``, as in MVTec 3D-AD).

    Parameters
    ----------
    y_true : list of ndarray
        Per-point (or per-pixel) labels per sample: integer region labels,
        boolean masks or image masks; nonzero = anomalous. 1-D labels must be
        >= 0; NaN is rejected.
    y_score : list of ndarray
        Per-point anomaly scores (higher = more anomalous), one real-valued
        array per sample with the shape of its ``y_true`` entry. NaN is
        rejected; ``+-inf`` are allowed (the AUC depends on the order only).

    Returns
    -------
    score : float
        :func:`sklearn.metrics.roc_auc_score` of the cloud labels and scores.

    Raises
    ------
    TypeError
        If ``y_true`` or ``y_score`` is not a list of arrays, or an entry has
        a complex, string or other non-real dtype.
    ValueError
        If there is no sample, all samples are normal or all are anomalous;
        on lists of different lengths, ragged, mismatching or empty samples,
        NaN, or negative 1-D labels (per-sample messages start with
        ``Sample i:`` and name the argument).

    See Also
    --------
    sklearn.metrics.roc_auc_score

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.metrics import cloud_roc_auc
    >>> y_true = [np.array([0, 0, 0]), np.array([0, 1, 1]), np.array([0, 0, 0])]
    >>> y_score = [np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.9, 0.4]),
    ...            np.array([0.5, 0.1, 0.1])]
    >>> cloud_roc_auc(y_true, y_score)
    1.0
    """
    return _cloud_roc_auc(y_true, y_score)


def _cloud_roc_auc(y_true, y_score, names=_NAMES):
    """:func:`cloud_roc_auc` with the argument names to report."""
    y_true, y_score, _ = _check_lengths(y_true, y_score, None, names)
    name = names["y_true"]
    labels = np.empty(len(y_true), dtype=int)
    scores = np.empty(len(y_true), dtype=np.float64)
    for i, (truth, score) in enumerate(zip(y_true, y_score)):
        truth = _check_truth(truth, i, names)
        if truth.ndim == 1 and truth.dtype != bool and truth.size and truth.min() < 0:
            raise ValueError(
                f"Sample {i}: {name} point labels must be >= 0 (0 = normal, positive = "
                f"anomalous), got {truth.min()}."
            )
        score = _check_scores(score, truth.shape, i, names)
        if score.size == 0:
            raise ValueError(
                f"Sample {i} is empty: {name} and {names['y_score']} hold no point, so the "
                "cloud has no score."
            )
        labels[i] = np.any(truth != 0)
        scores[i] = score.max()
    if np.unique(labels).size < 2:
        kind = "anomalous" if labels.size and labels[0] else "normal"
        raise ValueError(
            f"cloud_roc_auc needs both normal and anomalous samples, but all {labels.size} "
            f"samples are {kind} in {name}."
        )
    # The AUC depends on the order of the cloud scores only: their dense ranks give the same
    # value, and let +-inf through (roc_auc_score refuses them).
    ranks = np.unique(scores, return_inverse=True)[1].reshape(-1)
    return float(roc_auc_score(labels, ranks))


# --------------------------------------------------------------------------- #
# scorers: callables (estimator, X, y) for GridSearchCV and cross_val_score
# --------------------------------------------------------------------------- #
def _anomaly_scores(estimator, X, y):
    """Checked ``y``, per-point anomaly scores ``-score_samples(X)`` and the argument names.

    ``score_samples`` is higher for more normal points; the names are the ones the metrics
    report errors with (``y``, ``X`` and ``<Estimator>.score_samples(X)``).
    """
    y = _as_samples(y, "y")
    if len(y) != len(X):
        raise ValueError(f"y has {len(y)} samples but X has {len(X)}.")
    name = f"{type(estimator).__name__}.score_samples(X)"
    scores = _as_samples(estimator.score_samples(X), name)
    if len(scores) != len(X):
        raise ValueError(
            f"{type(estimator).__name__}.score_samples returned {len(scores)} arrays for "
            f"{len(X)} clouds."
        )
    # Checked before negating: numpy cannot negate booleans, and would keep complex values.
    scores = [-_as_real(_as_array(s, name, i), name, i) for i, s in enumerate(scores)]
    return y, scores, {"y_true": "y", "y_score": name, "points": "X"}


class _AUPROScorer:
    """AU-PRO of ``-estimator.score_samples(X)`` against per-point labels ``y``.

    A small class rather than a closure, so that it pickles for joblib.
    """

    def __init__(self, integration_limit=0.3, num_thresholds=100, region_k=8):
        # Validate now, so a bad scorer fails where it is made, not inside a CV loop.
        self.integration_limit = _check_integration_limit(integration_limit)
        self.num_thresholds = _check_num_thresholds(num_thresholds)
        self.region_k = _check_region_k(region_k)

    def __call__(self, estimator, X, y):
        X = _as_samples(X, "X")
        y, scores, names = _anomaly_scores(estimator, X, y)
        return _au_pro(
            y,
            scores,
            self.integration_limit,
            self.num_thresholds,
            X,  # points: only read for boolean masks
            self.region_k,
            names,
        )

    def __repr__(self):
        return (
            f"make_au_pro_scorer(integration_limit={self.integration_limit!r}, "
            f"num_thresholds={self.num_thresholds!r}, region_k={self.region_k!r})"
        )


class _CloudAUROCScorer:
    """Cloud-level ROC AUC of ``-min(estimator.score_samples(X)[i])``."""

    def __call__(self, estimator, X, y):
        X = _as_samples(X, "X")
        y, scores, names = _anomaly_scores(estimator, X, y)
        return _cloud_roc_auc(y, scores, names)

    def __repr__(self):
        return "cloud_auroc_scorer"


def make_au_pro_scorer(integration_limit=0.3, num_thresholds=100, region_k=8):
    """Make an AU-PRO scorer for :class:`~sklearn.model_selection.GridSearchCV`.

    The scorer is a callable ``scorer(estimator, X, y)``: ``X`` is a list of
    clouds (``(n_i, 3)`` arrays), ``y`` a list of per-point labels (integer
    region ids or boolean masks, see :func:`pro_curve`). It scores
    ``-estimator.score_samples(X)`` (``score_samples`` is higher for more
    normal points) with :func:`au_pro`, passing ``X`` as the ``points`` that
    boolean masks need. Greater is better.

    Parameters
    ----------
    integration_limit : float in (0, 1], default=0.3
        See :func:`au_pro`.
    num_thresholds : int >= 2 or None, default=100
        See :func:`pro_curve`.
    region_k : int, default=8
        See :func:`pro_curve`.

    Returns
    -------
    scorer : callable
        Picklable, so it works with ``n_jobs > 1``. Calling it raises the
        errors of :func:`au_pro`, with the arguments named ``y``, ``X`` and
        ``<Estimator>.score_samples(X)``; a ``score_samples`` that returns
        other than one real array per cloud raises TypeError/ValueError.

    Raises
    ------
    ValueError
        If ``integration_limit``, ``num_thresholds`` or ``region_k`` is
        invalid (checked here, not inside a cross-validation loop).

    Notes
    -----
    A test fold without any anomalous point has no PRO curve: the scorer
    raises ``ValueError`` there. With ``error_score=np.nan`` (the default of
    scikit-learn's search and validation tools) that fold scores NaN with a
    warning; choose folds that all hold defective clouds, e.g. with
    :class:`~sklearn.model_selection.StratifiedKFold` on the cloud labels
    (``[np.any(yi) for yi in y]``).

    See Also
    --------
    au_pro_scorer : The scorer with the defaults.
    cloud_auroc_scorer : Cloud-level detection scorer.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.metrics import make_au_pro_scorer
    >>> class Distance:  # a stand-in detector: far from the origin = anomalous
    ...     def score_samples(self, X):
    ...         return [-np.linalg.norm(x, axis=1) for x in X]
    >>> X = [np.array([[0., 0, 0], [1, 0, 0], [9, 0, 0]]),
    ...      np.array([[0., 1, 0], [0, 8, 0], [0, 2, 0]])]
    >>> y = [np.array([0, 0, 1]), np.array([0, 1, 0])]
    >>> scorer = make_au_pro_scorer(integration_limit=0.3)
    >>> scorer
    make_au_pro_scorer(integration_limit=0.3, num_thresholds=100, region_k=8)
    >>> scorer(Distance(), X, y)
    1.0
    """
    return _AUPROScorer(
        integration_limit=integration_limit, num_thresholds=num_thresholds, region_k=region_k
    )


#: AU-PRO scorer with the MVTec 3D-AD defaults (limit 0.3, 100 thresholds);
#: see :func:`make_au_pro_scorer`.
au_pro_scorer = make_au_pro_scorer()

#: Cloud-level ROC AUC scorer ``scorer(estimator, X, y)``: a cloud is anomalous
#: when any point of ``y`` is, and its anomaly score is
#: ``-min(estimator.score_samples(X)[i])``; see :func:`cloud_roc_auc`.
cloud_auroc_scorer = _CloudAUROCScorer()
