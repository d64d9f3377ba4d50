"""Cloud verdicts and defect regions from point scores (numpy and scipy only).

A detector scores every point; an inspection needs answers per scan: is this part good, and
where are its defects? This module turns point scores into those answers, the same way for
every skst3d estimator:

- :func:`cloud_scores`: one score per cloud from its point scores;
- :func:`cloud_threshold`: the threshold on those cloud scores, from held-out good clouds;
- :func:`find_defects`: regions of flagged points (connected components of a kNN graph),
  with their centroid, extent, size and scores, in the units of the points given;
- :func:`point_spacing` and :func:`check_point_spacing`: a warning when a scan's point
  spacing differs from the training scans' (other units, or another density).

The estimators' methods (``score_clouds``, ``predict_clouds``, ``find_defects``) call these
functions; use them directly on stored point scores.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = [
    "CLOUD_MARGIN",
    "CLOUD_TAIL",
    "FUSED_CLOUD_MARGIN",
    "HELD_OUT_LEVELS",
    "SPACING_FACTOR",
    "DefectRegion",
    "PointSpacingWarning",
    "check_point_spacing",
    "cloud_scores",
    "cloud_threshold",
    "find_defects",
    "point_spacing",
    "region_threshold",
    "threshold_from_percentiles",
]

#: Share of a cloud's most anomalous points whose mean anomaly is its cloud score
#: (:func:`cloud_scores`). Chosen on the dev split of benchmarks/protocol.py with the default
#: detector: see benchmarks/RESULTS.md, section "verdicts".
CLOUD_TAIL = 0.03

#: Margin of :func:`cloud_threshold` for fused scores (``fusion``), in units of the held-out
#: points' (median - 1st percentile). Chosen on the dev split of benchmarks/protocol.py with the
#: default detector and :data:`CLOUD_TAIL`: the best mean verdict accuracy over margins 0-4 in
#: steps of 0.125 (benchmarks/RESULTS.md, section "verdicts").
FUSED_CLOUD_MARGIN = 1.5

#: Margin of :func:`cloud_threshold` for scores that are not fused, in the same units. Chosen on
#: the dev split with 3D-ST alone (``fusion=None``) and :data:`CLOUD_TAIL`, the same way
#: (benchmarks/RESULTS.md, section "verdicts, 3D-ST alone").
CLOUD_MARGIN = 1.75

#: :func:`check_point_spacing` warns when a cloud's spacing differs by more than this factor.
SPACING_FACTOR = 3.0

# Query points used to estimate a cloud's spacing (an even subset of larger clouds).
_SPACING_QUERIES = 4096


# --------------------------------------------------------------------------------------- #
# cloud scores and the cloud threshold
# --------------------------------------------------------------------------------------- #
def cloud_scores(point_scores, tail=None):
    """One normality score per cloud: the mean of its lowest ``tail`` share of point scores.

    Minus this is the mean anomaly of the cloud's most anomalous points (``tail`` of them, at
    least one). ``tail=0`` gives the lowest point score, the usual cloud-level score (minus the
    highest point anomaly, as in MVTec 3D-AD's I-AUROC); a single point's score varies from
    good scan to good scan more than the mean of a few percent of them, which a defect raises
    as much. Higher = more normal, as for the point scores it is taken from.

    Parameters
    ----------
    point_scores : list of array-like of shape (n_i,)
        Point normality scores, one array per cloud (``score_samples``), higher = more normal.
    tail : float in [0, 1] or None, default=None
        Share of each cloud's points averaged; None is :data:`CLOUD_TAIL`.

    Returns
    -------
    scores : ndarray of shape (n_clouds,)

    Raises
    ------
    ValueError
        If a cloud has no point or a NaN score (the message names the cloud), or ``tail`` is
        not in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.defects import cloud_scores
    >>> cloud_scores([np.array([-0.5, -3.0, -1.0]), np.array([-0.2, -0.4])], tail=0).tolist()
    [-3.0, -0.4]
    >>> cloud_scores([-np.arange(100.0)], tail=0.03).tolist()  # mean of -99, -98, -97
    [-98.0]
    """
    tail = CLOUD_TAIL if tail is None else tail
    if isinstance(tail, bool) or not isinstance(tail, numbers.Real) or not 0 <= tail <= 1:
        raise ValueError(f"tail must be a number in [0, 1], got {tail!r}")
    return np.array([_cloud_score(s, i, tail) for i, s in enumerate(_score_list(point_scores, "point_scores"))])


def _cloud_score(scores, index, tail):
    scores = _scores_1d(scores, f"point_scores[{index}]")
    if scores.size == 0:
        raise ValueError(f"point_scores[{index}] is empty: a cloud without points has no score")
    count = max(1, int(round(tail * scores.size)))
    return float(np.partition(scores, count - 1)[:count].mean())


def cloud_threshold(held_out_scores, margin=CLOUD_MARGIN, min_anomaly=None):
    """Threshold on :func:`cloud_scores` from the point scores of held-out good clouds.

    With ``q01`` and ``q50`` the 1st percentile and the median of all the held-out clouds'
    point scores (pooled), the threshold is

    .. math::

        t = \\min\\left(q_{50} - \\text{margin} \\cdot (q_{50} - q_{01}),\\;
            -\\text{min\\_anomaly}\\right)

    On the anomaly scale (minus the scores) a cloud is defective when its cloud anomaly (minus
    :func:`cloud_scores`: the mean anomaly of its most anomalous :data:`CLOUD_TAIL` share of
    points) lies more than ``margin`` times the reach of a good point's 99th percentile above
    the good points' median, and exceeds ``min_anomaly`` if given. The percentiles of thousands
    of held-out points are stable, whereas the cloud scores of the one or two clouds a fit on a
    dozen scans holds out vary from scan to scan; built from percentiles and their difference,
    the threshold follows the scores' unit and offset, and from the upper tail, where a cloud
    score lies. The estimators pass :data:`FUSED_CLOUD_MARGIN` for fused scores and
    :data:`CLOUD_MARGIN` otherwise, both chosen on the dev split of ``benchmarks/protocol.py``
    (``benchmarks/RESULTS.md``, sections "verdicts"; on that split the rule judged more scans
    right, over a wider range of margins, than one built on the 10th and 90th percentiles).

    Parameters
    ----------
    held_out_scores : list of array-like of shape (n_i,)
        Point normality scores (higher = more normal) of good clouds the detector was not
        trained on, one array per cloud.
    margin : float, default=CLOUD_MARGIN
        Distance below the median, in units of (median - 1st percentile); larger passes more
        good scans and misses more defective ones.
    min_anomaly : float or None, default=None
        If given, the threshold is at most ``-min_anomaly``: no cloud whose cloud anomaly is
        below ``min_anomaly`` is called defective.

    Returns
    -------
    threshold : float
        Clouds whose :func:`cloud_scores` are below it are defective.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.defects import cloud_threshold
    >>> held_out = [-np.arange(101.0)]  # scores 0, -1, ..., -100: q01 = -99, q50 = -50
    >>> cloud_threshold(held_out, margin=1.5)  # -50 - 1.5 * 49
    -123.5
    >>> cloud_threshold(held_out, margin=1.5, min_anomaly=200.0)
    -200.0
    """
    held_out = [_scores_1d(s, f"held_out_scores[{i}]") for i, s in enumerate(_score_list(held_out_scores, "held_out_scores"))]
    for i, scores in enumerate(held_out):
        if scores.size == 0:
            raise ValueError(f"held_out_scores[{i}] is empty: a cloud without points has no score")
    if not held_out:
        raise ValueError("held_out_scores is empty: the cloud threshold needs at least one held-out cloud")
    q01, q50 = np.quantile(np.concatenate(held_out), HELD_OUT_LEVELS)
    return threshold_from_percentiles(q01, q50, margin, min_anomaly)


#: Levels of the held-out point-score quantiles the cloud threshold is built from (1st
#: percentile, median); the estimators keep them as ``held_out_quantiles_``.
HELD_OUT_LEVELS = (0.01, 0.5)


def threshold_from_percentiles(q01, q50, margin, min_anomaly=None):
    """:func:`cloud_threshold` from the held-out scores' 1st percentile and median.

    For another ``margin`` on a fitted estimator: ``threshold_from_percentiles(
    *estimator.held_out_quantiles_, margin)``.

    Parameters
    ----------
    q01, q50 : float
        1st percentile and median of the held-out good clouds' point scores (``q01 <= q50``).
    margin : float
        Distance below the median, in units of ``q50 - q01``; at least 0.
    min_anomaly : float or None, default=None
        If given, the threshold is at most ``-min_anomaly``.

    Returns
    -------
    threshold : float

    Examples
    --------
    >>> from skst3d.defects import threshold_from_percentiles
    >>> threshold_from_percentiles(-99.0, -50.0, 1.5)
    -123.5
    """
    q01, q50 = _real(q01, "q01"), _real(q50, "q50")
    if q01 > q50:
        raise ValueError(f"q01 ({q01!r}) must not exceed q50 ({q50!r}): the 1st percentile comes first")
    if not isinstance(margin, numbers.Real) or not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    threshold = float(q50 - margin * (q50 - q01))
    if min_anomaly is not None:
        threshold = min(threshold, -_real(min_anomaly, "min_anomaly"))
    return threshold


# --------------------------------------------------------------------------------------- #
# defect regions
# --------------------------------------------------------------------------------------- #
def region_threshold(point_threshold, cloud_threshold):
    """Anomaly score above which points form defect regions: midway between the two thresholds.

    ``point_threshold`` flags single points (minus ``offset_``, the ``contamination`` quantile
    of held-out good points); ``cloud_threshold`` calls a whole scan defective (minus
    ``cloud_offset_``). Regions grown from the point threshold alone sprawled over scans whose
    background scores lay above it: with the default detector, good development scans had
    from none to 96 % of their points above it (2.8 % on average, instead of 0.1 %), and the
    centroid of the region found on a defect lay within the defect's radius for 0.86 of the
    found defects; midway between the two thresholds, 0.95, and as many defects were found
    (five part types, two seeds; with registered scans 0.93 against 0.94-0.95).

    Parameters
    ----------
    point_threshold, cloud_threshold : float
        Both on the anomaly scale (higher = more anomalous).

    Returns
    -------
    threshold : float

    Examples
    --------
    >>> from skst3d.defects import region_threshold
    >>> region_threshold(2.0, 5.0)
    3.5
    """
    return 0.5 * (_real(point_threshold, "point_threshold") + _real(cloud_threshold, "cloud_threshold"))


@dataclasses.dataclass(frozen=True, eq=False)
class DefectRegion:
    """A connected region of flagged points (see :func:`find_defects`).

    Attributes
    ----------
    centroid : tuple of 3 floats
        Mean position (x, y, z) of the region's points, in the units of the input points.
    extent : tuple of 3 floats
        Size of the region's axis-aligned bounding box (dx, dy, dz), in the same units.
    n_points : int
        Points in the region.
    peak_score : float
        Highest anomaly score of the region's points (higher = more anomalous).
    mean_score : float
        Mean anomaly score of the region's points.
    indices : ndarray of int
        Indices of the region's points in the input cloud, increasing. Not part of
        :meth:`to_dict`.
    """

    centroid: tuple
    extent: tuple
    n_points: int
    peak_score: float
    mean_score: float
    indices: np.ndarray = dataclasses.field(repr=False)

    def to_dict(self):
        """The region as plain Python numbers and lists (for :func:`json.dump`), without ``indices``.

        Examples
        --------
        >>> import json
        >>> import numpy as np
        >>> from skst3d.defects import DefectRegion
        >>> region = DefectRegion((1.0, 2.0, 3.0), (0.5, 0.5, 0.1), 4, 9.5, 7.25, np.arange(4))
        >>> json.dumps(region.to_dict())
        '{"centroid": [1.0, 2.0, 3.0], "extent": [0.5, 0.5, 0.1], "n_points": 4, "peak_score": 9.5, "mean_score": 7.25}'
        """
        return {
            "centroid": [float(v) for v in self.centroid],
            "extent": [float(v) for v in self.extent],
            "n_points": int(self.n_points),
            "peak_score": float(self.peak_score),
            "mean_score": float(self.mean_score),
        }


def find_defects(points, anomaly, threshold, *, min_points=5, merge_distance=3.0, n_neighbors=8, min_peak=None):
    """Regions of flagged points: connected components of a kNN graph of the cloud.

    A point is flagged when its anomaly score exceeds ``threshold``. Two flagged points belong
    to one region when one is among the ``n_neighbors`` nearest points of the other in the
    whole cloud (so the graph follows the cloud's own density), or when they are at most
    ``merge_distance`` point spacings apart (the spacing is the median distance from a point
    of the cloud to its nearest neighbour): fragments of one defect separated by a few
    unflagged points, as a crack or the rim of a hole gives, are one region. Regions of fewer
    than ``min_points`` points are dropped (isolated noise), and so are regions whose highest
    score does not exceed ``min_peak``.

    Parameters
    ----------
    points : array-like of shape (n, 3)
        The points, in any units; centroids and extents are reported in the same units and
        frame (float64 throughout, so scans far from the origin stay exact).
    anomaly : array-like of shape (n,)
        Anomaly score of every point, higher = more anomalous (minus ``score_samples``).
    threshold : float
        Points with ``anomaly > threshold`` are flagged.
    min_points : int, default=5
        Smallest region reported, in points.
    merge_distance : float, default=3.0
        Flagged points at most this many point spacings apart are one region; 0 links only
        kNN neighbours.
    n_neighbors : int, default=8
        Neighbours of a point, in the whole cloud, that it is linked with when both are
        flagged.
    min_peak : float or None, default=None
        If given, regions whose ``peak_score`` is not above it are dropped. The estimators'
        ``find_defects`` pass their cloud threshold, and skip the clouds they call good (whose
        highest point may still exceed it: the cloud score is a mean over the most anomalous
        points); called directly, skip those clouds yourself to get the same regions.

    Returns
    -------
    regions : list of DefectRegion
        Sorted by decreasing ``peak_score`` (then by decreasing size, then by the first
        point's index); ``[region.to_dict() for region in regions]`` serialises to JSON.

    Raises
    ------
    ValueError
        If ``points`` is not ``(n, 3)`` and finite, ``anomaly`` has another length or holds
        NaN, or a parameter is out of range.

    See Also
    --------
    skst3d.StudentTeacherDetector.find_defects : the regions of a detector's flagged points.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.defects import find_defects
    >>> xx, yy = np.meshgrid(np.arange(20.0), np.arange(20.0))
    >>> points = np.c_[xx.ravel() + 5e5, yy.ravel(), np.zeros(400)]   # a 1 mm grid, far away
    >>> anomaly = np.zeros(400)
    >>> anomaly[(np.abs(xx - 4) <= 1).ravel() & (np.abs(yy - 5) <= 1).ravel()] = 8.0  # 9 points
    >>> anomaly[(xx == 15).ravel() & (yy == 15).ravel()] = 9.0                         # 1 point
    >>> [region] = find_defects(points, anomaly, threshold=1.0)
    >>> region.centroid, region.extent, region.n_points, region.peak_score
    ((500004.0, 5.0, 0.0), (2.0, 2.0, 0.0), 9, 8.0)
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (n, 3), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"points must be finite; point {int(np.argmin(np.isfinite(points).all(1)))} is not")
    anomaly = _scores_1d(anomaly, "anomaly")
    if anomaly.shape[0] != points.shape[0]:
        raise ValueError(f"anomaly has {anomaly.shape[0]} scores but points has {points.shape[0]} points")
    threshold = _real(threshold, "threshold")
    min_peak = None if min_peak is None else _real(min_peak, "min_peak")
    min_points = _integer(min_points, "min_points", 1)
    n_neighbors = _integer(n_neighbors, "n_neighbors", 0)
    if not isinstance(merge_distance, numbers.Real) or not np.isfinite(merge_distance) or merge_distance < 0:
        raise ValueError(f"merge_distance must be a finite number >= 0, got {merge_distance!r}")

    flagged = np.flatnonzero(anomaly > threshold)
    if flagged.size < min_points:
        return []
    labels = _flagged_components(points, flagged, n_neighbors, merge_distance)
    regions = []
    for members in np.split(flagged[np.argsort(labels, kind="stable")], np.cumsum(np.bincount(labels))[:-1]):
        if members.size < min_points:
            continue
        scores = anomaly[members]
        peak = float(scores.max())
        if min_peak is not None and not peak > min_peak:
            continue
        region_points = points[members]
        origin = region_points[0]
        regions.append(
            DefectRegion(
                centroid=tuple(float(v) for v in origin + (region_points - origin).mean(axis=0)),
                extent=tuple(float(v) for v in region_points.max(axis=0) - region_points.min(axis=0)),
                n_points=int(members.size),
                peak_score=peak,
                mean_score=float(scores.mean()),
                indices=np.sort(members),
            )
        )
    regions.sort(key=lambda r: (-r.peak_score, -r.n_points, int(r.indices[0])))
    return regions


def _flagged_components(points, flagged, n_neighbors, merge_distance):
    """Component label of every flagged point (kNN links in the cloud plus merge radius)."""
    n_flagged = flagged.size
    tree = cKDTree(points)
    rows, cols = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    position = np.full(points.shape[0], -1, dtype=np.int64)
    position[flagged] = np.arange(n_flagged)
    k = min(n_neighbors, points.shape[0] - 1)
    if k > 0:
        _, neighbours = tree.query(points[flagged], k + 1)
        targets = position[neighbours.reshape(n_flagged, k + 1)]
        source = np.repeat(np.arange(n_flagged), k + 1)
        keep = targets.ravel() >= 0
        rows.append(source[keep])
        cols.append(targets.ravel()[keep])
    radius = merge_distance * _median_nearest_distance(points, tree)
    if radius > 0:
        pairs = cKDTree(points[flagged]).query_pairs(radius, output_type="ndarray")
        rows.append(pairs[:, 0].astype(np.int64))
        cols.append(pairs[:, 1].astype(np.int64))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n_flagged, n_flagged))
    return connected_components(graph, directed=True, connection="weak")[1]


def _median_nearest_distance(points, tree):
    """Median distance of a point to its nearest other point (an even subset of large clouds)."""
    if points.shape[0] < 2:
        return 0.0
    queries = points[:: max(1, points.shape[0] // _SPACING_QUERIES)]
    distances = tree.query(queries, 2)[0][:, 1]
    positive = distances[distances > 0]
    return float(np.median(positive)) if positive.size else 0.0


# --------------------------------------------------------------------------------------- #
# point spacing
# --------------------------------------------------------------------------------------- #
class PointSpacingWarning(UserWarning):
    """A scored cloud's point spacing differs from the training clouds' by more than a factor.

    Attributes ``index`` (the cloud's position in the input), ``spacing``, ``reference`` and
    ``ratio`` (``spacing / reference``) say by how much.
    """

    def __init__(self, message, index=None, spacing=None, reference=None):
        super().__init__(message)
        self.index = index
        self.spacing = spacing
        self.reference = reference
        self.ratio = None if spacing is None or not reference else spacing / reference


def point_spacing(cloud, k, n_points=None):
    """Mean distance of a cloud's points to their ``k`` nearest neighbours, in its units.

    This is s of equation (4) for one cloud, the statistic a detector stores for its training
    clouds as ``scale_``. For clouds of more than 4,096 points it is estimated on an even
    subset of 4,096 of them (queried against all points), which is within a few percent.

    Parameters
    ----------
    cloud : array-like of shape (n, 3)
    k : int
        Neighbours (the detector's ``k``); at most ``n - 1`` are used.
    n_points : int or None, default=None
        The detector's ``n_points``: a cloud of ``n > n_points`` points is reduced to
        ``n_points`` before scoring, which widens a surface scan's spacing by about
        ``sqrt(n / n_points)``; that estimate is returned.

    Returns
    -------
    spacing : float

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.defects import point_spacing
    >>> line = np.c_[np.arange(10.0), np.zeros(10), np.zeros(10)]
    >>> point_spacing(line, k=1)
    1.0
    """
    cloud = np.asarray(cloud, dtype=np.float64)
    if cloud.ndim != 2 or cloud.shape[1] != 3 or cloud.shape[0] < 2:
        raise ValueError(f"cloud must have shape (n, 3) with n >= 2, got {cloud.shape}")
    k = min(_integer(k, "k", 1), cloud.shape[0] - 1)
    n = cloud.shape[0]
    queries = cloud[:: max(1, n // _SPACING_QUERIES)]
    distances = cKDTree(cloud).query(queries, k + 1)[0][:, 1:]
    spacing = float(distances.mean())
    if n_points is not None and n > n_points:
        spacing *= float(np.sqrt(n / n_points))
    return spacing


def check_point_spacing(clouds, reference, k, *, n_points=None, factor=SPACING_FACTOR, names=None, stacklevel=2):
    """Warn about clouds whose point spacing differs from ``reference`` by more than ``factor``.

    A detector divides every cloud by the training clouds' spacing (``scale_``); a scan in
    other units (metres against millimetres) or sampled far more or less densely looks like a
    different surface and is scored as anomalous everywhere, or not at all.

    Parameters
    ----------
    clouds : list of array-like of shape (n_i, 3)
    reference : float
        The training clouds' spacing (a detector's ``scale_``).
    k : int
        Neighbours of the spacing (the detector's ``k``).
    n_points : int or None, default=None
        The detector's ``n_points`` (see :func:`point_spacing`).
    factor : float, default=SPACING_FACTOR
        Warn when ``spacing / reference`` is above ``factor`` or below ``1 / factor``.
    names : list of str, optional
        How to name each cloud in the message (file names); by default ``cloud <index>``.
    stacklevel : int, default=2
        Passed to :func:`warnings.warn`.

    Returns
    -------
    ratios : ndarray of shape (n_clouds,)
        ``spacing / reference`` of every cloud.

    Warns
    -----
    PointSpacingWarning
        One per cloud outside the range, naming it.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skst3d.defects import check_point_spacing
    >>> grid = np.c_[np.mgrid[0:20, 0:20].reshape(2, -1).T * 1.0, np.zeros(400)]
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     ratios = check_point_spacing([grid, grid / 1000], reference=1.2, k=4, names=["a.ply", "b.ply"])
    >>> [str(w.message).split(":")[0] for w in caught]
    ['b.ply']
    """
    reference = _real(reference, "reference")
    if not reference > 0:
        raise ValueError(f"reference must be > 0, got {reference!r}")
    if names is not None and len(names) != len(clouds):
        raise ValueError(f"{len(clouds)} clouds but {len(names)} names")
    ratios = np.empty(len(clouds))
    for i, cloud in enumerate(clouds):
        spacing = point_spacing(cloud, k, n_points)
        ratios[i] = spacing / reference
        if not 1.0 / factor <= ratios[i] <= factor:
            name = f"cloud {i}" if names is None else names[i]
            if ratios[i] > 1:
                how = f"{ratios[i]:.1f} times larger than"
            elif ratios[i] > 0:
                how = f"{1.0 / ratios[i]:.1f} times smaller than"
            elif ratios[i] == 0:
                how = "zero (every point has copies on it), against"
            else:
                how = "undefined (coordinates too large), against"
            warnings.warn(
                PointSpacingWarning(
                    f"{name}: point spacing {spacing:.4g} (mean distance to its {k} nearest neighbours) is {how} "
                    f"the training clouds' {reference:.4g}: other units or another scan density; its scores "
                    "are not comparable with the training scans' (rescale it, or train on scans like it)",
                    index=i,
                    spacing=spacing,
                    reference=reference,
                ),
                stacklevel=stacklevel,
            )
    return ratios


# --------------------------------------------------------------------------------------- #
# argument checks
# --------------------------------------------------------------------------------------- #
def _score_list(scores, name):
    if isinstance(scores, np.ndarray) and scores.ndim == 1:
        raise ValueError(f"{name} must hold one array per cloud; for a single cloud pass [scores]")
    try:
        return list(scores)
    except TypeError:
        raise TypeError(f"{name} must be a list of arrays, one per cloud, got {type(scores).__name__}") from None


def _scores_1d(scores, name):
    scores = np.asarray(scores)
    if scores.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64, copy=False).reshape(-1) if scores.ndim <= 1 else None
    if scores is None:
        raise ValueError(f"{name} must be one-dimensional (one score per point)")
    if np.isnan(scores).any():
        raise ValueError(f"{name} holds NaN at point {int(np.argmax(np.isnan(scores)))}")
    return scores


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or np.isnan(value):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _integer(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
