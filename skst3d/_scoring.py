"""The scoring tail, shared by fit and score_samples: raw point anomalies -> local
normalisation against the anomaly-free training points -> smoothing over the cloud's kNN
graph -> carried back from sampled points to every input point.

The regression error of equation (6) is not equally large on all normal geometry: scan
borders, sharp edges and thin features are harder to regress than flat faces, so their
normal points outscore small defects elsewhere. Normalising a point's error by the errors of
the training points that are "like it" (nearest in space for registered parts, or nearest
in teacher-descriptor space, which needs no common pose) turns the error into a local
z-score: how unusual the error is for that kind of point.
"""

from __future__ import annotations

import numpy as np
import torch

# Queries per block of the brute-force descriptor search (bounds the distance matrix).
_QUERY_BLOCK = 2048
# Local standard deviations are floored at this fraction of the global one, so that a spot
# where the training errors happen to agree does not turn tiny differences into large scores.
_STD_FLOOR = 0.05
# Location normalisation reads the local statistics of this many nearest training points
# (averaged) instead of searching the scored point's own neighbourhood.
_LOOKUP_POINTS = 1


def nearest_reference(keys: np.ndarray, queries: np.ndarray, n_neighbors: int, tree=None) -> np.ndarray:
    """Indices (n_queries, n_neighbors) of the nearest ``keys`` of every query (Euclidean).

    Three-dimensional keys use a k-d tree (``tree``, built on ``keys``, if given); descriptors
    (many dimensions, where trees lose to brute force) use blocked exact distances.
    """
    n_neighbors = min(n_neighbors, keys.shape[0])
    if keys.shape[1] <= 3:
        from scipy.spatial import cKDTree

        tree = cKDTree(keys) if tree is None else tree
        index = tree.query(queries, n_neighbors, workers=torch.get_num_threads())[1]
        return index.reshape(queries.shape[0], n_neighbors)
    # torch.cdist's matrix-product mode, unlike the exact mode of skst3d.geometry: it is four
    # times faster here (64 dimensions), and a near tie that swaps one of the 48 neighbours
    # barely moves a local mean and deviation.
    reference = torch.from_numpy(np.ascontiguousarray(keys, dtype=np.float32))
    query = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    blocks = [
        torch.cdist(block, reference).topk(n_neighbors, dim=1, largest=False).indices
        for block in query.split(_QUERY_BLOCK)
    ]
    return torch.cat(blocks).numpy()


def smooth_over_neighbors(anomaly: np.ndarray, knn_indices: np.ndarray, passes: int) -> np.ndarray:
    """``passes`` rounds of replacing each point's value by the mean over itself and its neighbours.

    ``knn_indices`` (n, k) are the cloud's kNN graph. Applied to final scores (after any
    normalisation), it is the point-cloud counterpart of blurring a 2D anomaly map.

    Examples
    --------
    >>> import numpy as np
    >>> smooth_over_neighbors(np.array([3.0, 0.0, 0.0]), np.array([[1], [0], [1]]), 1)
    array([1.5, 1.5, 0. ])
    """
    anomaly = np.asarray(anomaly, dtype=np.float64)
    for _ in range(passes):
        anomaly = (anomaly + anomaly[knn_indices].sum(axis=1)) / (knn_indices.shape[1] + 1)
    return anomaly


class LocalErrorReference:
    """Errors of anomaly-free training points, indexed by a key (position or descriptor).

    Parameters
    ----------
    keys : ndarray of shape (n, m)
        Where each training point lies in the space that defines "alike".
    errors : ndarray of shape (n,)
        Its regression error.
    n_neighbors : int
        Training points per query whose errors give the local mean and deviation.
    origin : ndarray of shape (m,), optional
        Subtracted from training and query keys (in float64) before they are stored in
        float32: positions far from the origin keep their resolution.

    Examples
    --------
    >>> import numpy as np
    >>> keys = np.array([[0.0, 0, 0], [0.1, 0, 0], [10, 0, 0], [10.1, 0, 0]])
    >>> ref = LocalErrorReference(keys, np.array([1.0, 3.0, 10.0, 30.0]), n_neighbors=2)
    >>> ref.normalize(np.array([[0.05, 0, 0], [10.05, 0, 0]]), np.array([2.0, 20.0]))
    array([0., 0.])
    """

    def __init__(self, keys: np.ndarray, errors: np.ndarray, n_neighbors: int, origin=None):
        self.origin = None if origin is None else np.asarray(origin, dtype=np.float64)
        self.keys = self._stored(keys)
        self.errors = np.asarray(errors, dtype=np.float64)
        self.n_neighbors = int(n_neighbors)
        self.std_floor = _STD_FLOOR * float(self.errors.std())
        self._tree = None
        self._statistics = {}

    def _stored(self, keys):
        keys = np.asarray(keys, dtype=np.float64 if self.origin is not None else None)
        if self.origin is not None:
            keys = keys - self.origin
        return np.ascontiguousarray(keys, dtype=np.float32)

    def __getstate__(self):
        # The k-d tree is rebuilt on first use after unpickling rather than stored.
        return {**self.__dict__, "_tree": None}

    def __setstate__(self, state):
        self.__dict__.update({"origin": None, "_statistics": {}, **state})

    def normalize(self, keys: np.ndarray, errors: np.ndarray, n_neighbors=None) -> np.ndarray:
        """``(error - local mean) / local standard deviation`` for every query point.

        ``n_neighbors`` (default: the one given at construction) training points define the
        local statistics. For positions they are those around the query's nearest training
        point, computed once per reference: a 1-NN query instead of an ``n_neighbors``-NN
        query per scored point (12x faster on a million points), and the query lies within
        a fraction of the point spacing of that training point. Descriptors (many dimensions,
        no tree) take the query's own ``n_neighbors`` nearest training points.
        """
        queries = self._stored(keys)
        n_neighbors = self.n_neighbors if n_neighbors is None else int(n_neighbors)
        if self.keys.shape[1] <= 3:
            mean, std = self._position_statistics(n_neighbors)
            nearest = nearest_reference(self.keys, queries, _LOOKUP_POINTS, self._position_tree())
            mean, std = mean[nearest].mean(axis=1), std[nearest].mean(axis=1)
        else:
            mean, std = self._statistics_of(nearest_reference(self.keys, queries, n_neighbors))
        return (np.asarray(errors, dtype=np.float64) - mean) / std

    def _statistics_of(self, neighbours):
        """Mean and floored standard deviation of the errors of each row of ``neighbours``."""
        local = self.errors[neighbours]
        return local.mean(axis=1), np.maximum(local.std(axis=1), max(self.std_floor, 1e-12))

    def _position_tree(self):
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.keys)  # built once, reused for every scored cloud
        return self._tree

    def _position_statistics(self, n_neighbors):
        """Local (mean, std) at every training point over its ``n_neighbors`` nearest, cached."""
        if n_neighbors not in self._statistics:
            near = nearest_reference(self.keys, self.keys, n_neighbors, self._position_tree())
            self._statistics[n_neighbors] = self._statistics_of(near)
        return self._statistics[n_neighbors]


def carry_to_inputs(values: np.ndarray, sample, cloud: np.ndarray) -> np.ndarray:
    """Values of sampled points given to every input point by its nearest sampled point.

    ``sample`` holds the rows of ``cloud`` that were kept (None: all were, values unchanged).
    """
    if sample is None:
        return values
    from scipy.spatial import cKDTree

    return values[cKDTree(cloud[sample]).query(cloud, workers=torch.get_num_threads())[1]]


def finish_anomalies(raw: np.ndarray, keys, reference, knn_indices: np.ndarray, smoothing: int, sample, cloud,
                     n_neighbors=None):
    """raw errors of the (sampled) points -> normalised -> smoothed -> one value per input point."""
    anomaly = np.asarray(raw, dtype=np.float64)
    if reference is not None:
        anomaly = reference.normalize(keys, anomaly, n_neighbors)
    anomaly = smooth_over_neighbors(anomaly, knn_indices, smoothing)
    return carry_to_inputs(anomaly, sample, cloud)


# A member's anomalies are divided by how far its held-out good points reach above their median:
# the 99th percentile. Fused scores then read as "multiples of a normal point's tail".
_FUSION_QUANTILE = 0.99


class FusionScales:
    """Median and tail scale of each fused member's anomalies on held-out good clouds.

    ``members[m][c]`` are member m's point anomalies (higher = more anomalous) on held-out
    cloud c. A fused anomaly is the mean over members of ``(anomaly - median) / scale`` with
    ``scale = quantile_99 - median`` of the held-out points.

    Examples
    --------
    >>> import numpy as np
    >>> scales = FusionScales([[np.arange(101.0)], [10 * np.arange(101.0)]])
    >>> scales.fuse([[np.array([50.0, 148.0])], [np.array([500.0, 1480.0])]])[0]
    array([0., 2.])
    """

    def __init__(self, members):
        pooled = [np.concatenate(member).astype(np.float64) for member in members]
        self.medians = np.array([np.median(p) for p in pooled])
        tails = np.array([np.quantile(p, _FUSION_QUANTILE) for p in pooled]) - self.medians
        self.scales = np.maximum(tails, 1e-12 * np.maximum(np.abs(self.medians), 1.0))

    def fuse(self, members):
        """The fused anomaly of every cloud: one array per cloud."""
        return [
            np.mean([(member[c] - m) / s for member, m, s in zip(members, self.medians, self.scales)], axis=0)
            for c in range(len(members[0]))
        ]
