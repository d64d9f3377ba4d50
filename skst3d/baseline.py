"""A classical baseline: hand-crafted local geometry features with a nearest-neighbour memory bank.

This is the idea behind BTF ("Back to the Feature", Horwitz and Hoshen, 2022): describe every
point by a Fast Point Feature Histogram (FPFH, Rusu et al., 2009), keep the descriptors of all
anomaly-free training points, and score a test point by the distance from its descriptor to
the nearest one in that memory bank. It needs no network and no pretraining, so it is the
yardstick that 3D-ST must beat. numpy and scipy only.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.spatial import cKDTree
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._scoring import smooth_over_neighbors
from ._outlier import PointOutlierMixin
from ._validation import anomaly_free_clouds, check_point_clouds


def _normals(points, tree, k, view_direction):
    _, idx = tree.query(points, k + 1)
    neighbours = points[idx]
    centred = neighbours - neighbours.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred)
    _, vectors = np.linalg.eigh(cov)
    normals = vectors[:, :, 0]  # eigenvector of the smallest eigenvalue
    flip = normals @ view_direction < 0
    normals[flip] *= -1
    return normals


def _pair_features(p_s, n_s, p_t, n_t):
    """Darboux-frame angles (alpha, phi, theta) of point pairs, as in PFH/FPFH."""
    diff = p_t - p_s
    dist = np.linalg.norm(diff, axis=-1, keepdims=True)
    direction = diff / np.maximum(dist, 1e-12)
    # the source is the point whose normal makes the smaller angle with the connecting line
    swap = np.abs((n_s * direction).sum(-1)) < np.abs((n_t * direction).sum(-1))
    u = np.where(swap[..., None], n_t, n_s)
    other = np.where(swap[..., None], n_s, n_t)
    direction = np.where(swap[..., None], -direction, direction)
    v = np.cross(u, direction)
    v /= np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    w = np.cross(u, v)
    alpha = (v * other).sum(-1)
    phi = (u * direction).sum(-1)
    theta = np.arctan2((w * other).sum(-1), (u * other).sum(-1))
    return alpha, phi, theta


def fpfh_features(points, k_normals=16, k_features=32, n_bins=11, view_direction=(0.0, 0.0, 1.0)):
    """Fast Point Feature Histograms of every point (3 * n_bins values each).

    Normals come from local PCA over ``k_normals`` neighbours, oriented towards
    ``view_direction`` (range scans are seen from one side). The simplified histogram (SPFH)
    of a point bins the angles (alpha, phi, theta) of its pairs with its ``k_features``
    nearest neighbours; the FPFH adds the inverse-distance-weighted mean of the neighbours'
    SPFHs (weights normalised to sum to 1).

    Parameters
    ----------
    points : ndarray of shape (n, 3)
    k_normals, k_features : int
    n_bins : int
    view_direction : array-like of shape (3,)

    Returns
    -------
    features : ndarray of shape (n, 3 * n_bins), float32

    Examples
    --------
    >>> import numpy as np
    >>> xy = np.random.default_rng(0).uniform(size=(200, 2))
    >>> f = fpfh_features(np.c_[xy, np.zeros(200)], k_normals=8, k_features=8, n_bins=5)
    >>> f.shape
    (200, 15)
    """
    return _fpfh_and_neighbours(points, k_normals, k_features, n_bins, view_direction)[0]


def _fpfh_and_neighbours(points, k_normals, k_features, n_bins, view_direction):
    """:func:`fpfh_features` and the (n, k_features) kNN indices it used (self excluded)."""
    points = np.asarray(points, dtype=np.float64)
    view = np.asarray(view_direction, dtype=np.float64)
    tree = cKDTree(points)
    normals = _normals(points, tree, k_normals, view)
    dist, idx = tree.query(points, k_features + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]
    alpha, phi, theta = _pair_features(points[:, None, :], normals[:, None, :], points[idx], normals[idx])
    n = points.shape[0]
    spfh = np.zeros((n, 3, n_bins))
    edges = [(alpha, -1.0, 1.0), (phi, -1.0, 1.0), (theta, -np.pi, np.pi)]
    rows = np.repeat(np.arange(n), k_features)
    for j, (values, lo, hi) in enumerate(edges):
        bins = np.clip(((values - lo) / (hi - lo) * n_bins).astype(np.int64), 0, n_bins - 1).ravel()
        np.add.at(spfh[:, j, :], (rows, bins), 1.0 / k_features)
    spfh = spfh.reshape(n, -1)
    weights = 1.0 / np.maximum(dist, 1e-12)
    weights /= weights.sum(axis=1, keepdims=True)
    fpfh = spfh + np.einsum("nk,nkf->nf", weights, spfh[idx])
    return fpfh.astype(np.float32), idx


class FPFHMemoryBankDetector(PointOutlierMixin, BaseEstimator):
    """Classical point-wise anomaly detector: FPFH descriptors and a nearest-neighbour memory bank.

    Parameters
    ----------
    k_normals : int, default=16
        Neighbours for normal estimation.
    k_features : int, default=32
        Neighbours for the point feature histograms.
    n_bins : int, default=11
        Bins per angle.
    memory_size : int or None, default=None
        If set, keep a random subset of this many training descriptors.
    view_direction : tuple of 3 floats, default=(0, 0, 1)
        Normals are oriented towards this direction (the scanner's side).
    smoothing : int, default=0
        Passes of neighbourhood averaging of the point anomalies (each point and its
        ``k_features`` neighbours), as :class:`~skst3d.StudentTeacherDetector` offers, so that
        both methods can be compared with and without it.
    contamination : float, default=1e-3
        Fraction of training points flagged by :meth:`predict` (sets ``offset_``).
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    memory_bank_ : ndarray of shape (n_memory, 3 * n_bins)
    offset_ : float
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.baseline import FPFHMemoryBankDetector
    >>> rng = np.random.default_rng(0)
    >>> clouds = [np.c_[rng.uniform(size=(300, 2)), np.zeros(300)] for _ in range(2)]
    >>> det = FPFHMemoryBankDetector(k_features=8, k_normals=8).fit(clouds)
    >>> det.score_samples(clouds[:1])[0].shape
    (300,)
    """

    _parameter_constraints = {
        "k_normals": [Interval(Integral, 3, None, closed="left")],
        "k_features": [Interval(Integral, 1, None, closed="left")],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "memory_size": [Interval(Integral, 1, None, closed="left"), None],
        "view_direction": ["array-like"],
        "smoothing": [Interval(Integral, 0, None, closed="left")],
        "contamination": [Interval(Real, 0, 0.5, closed="both")],
        "random_state": ["random_state"],
    }

    def __init__(
        self, k_normals=16, k_features=32, n_bins=11, memory_size=None,
        view_direction=(0.0, 0.0, 1.0), smoothing=0, contamination=1e-3, random_state=None,
    ):
        self.k_normals = k_normals
        self.k_features = k_features
        self.n_bins = n_bins
        self.memory_size = memory_size
        self.view_direction = view_direction
        self.smoothing = smoothing
        self.contamination = contamination
        self.random_state = random_state

    def _features(self, cloud):
        """FPFH of every point and each point's k_features neighbours (for smoothing)."""
        return _fpfh_and_neighbours(cloud, self.k_normals, self.k_features, self.n_bins, self.view_direction)

    def fit(self, X, y=None):
        """Store the descriptors of all training points (clouds with anomalies in y are left out)."""
        self._validate_params()
        clouds = check_point_clouds(X, min_points=max(self.k_normals, self.k_features) + 1)
        clouds = anomaly_free_clouds(clouds, y)
        features, neighbours = zip(*(self._features(c) for c in clouds))
        bank = np.concatenate(features)
        rng = check_random_state(self.random_state)
        if self.memory_size is not None and bank.shape[0] > self.memory_size:
            bank = bank[rng.choice(bank.shape[0], self.memory_size, replace=False)]
        tree = cKDTree(bank)
        # Leave-one-out distances of the training points set the threshold: a point's own
        # descriptor, when it is in the bank, is its nearest one at distance 0.
        own = []
        for feature, neighbour in zip(features, neighbours):
            distance = tree.query(feature, 2)[0]
            distance = np.where(distance[:, 0] > 0, distance[:, 0], distance[:, 1])
            own.append(smooth_over_neighbors(distance, neighbour, self.smoothing))
        own = np.concatenate(own)
        self.memory_bank_ = bank
        self._tree = tree
        self.offset_ = float(np.quantile(-own, self.contamination))
        self.n_features_in_ = 3
        return self

    def score_samples(self, X):
        """Minus the distance to the nearest training descriptor (higher = more normal)."""
        check_is_fitted(self)
        clouds = check_point_clouds(X, min_points=max(self.k_normals, self.k_features) + 1)
        if getattr(self, "_tree", None) is None:
            self._tree = cKDTree(self.memory_bank_)
        scores = []
        for cloud in clouds:
            feature, neighbours = self._features(cloud)
            nearest = self._tree.query(feature, 1, workers=-1)[0]
            scores.append(-smooth_over_neighbors(nearest, neighbours, self.smoothing))
        return scores

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_tree", None)  # rebuilt on demand; a kd-tree pickles large
        return state
