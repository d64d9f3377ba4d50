"""The kNN graph as the descriptor network consumes it, and the one path from clouds to graphs.

A :class:`NeighborGraph` holds, for one point cloud, what every LFA block of every network
needs and what depends only on geometry: the local geometric features
``G(p, p_j) = (p - p_j) ⊕ ‖p - p_j‖`` of equation (1), and the row-normalised adjacency
used for the neighbour-feature mean, as CSR matrices (the mean of a concatenation is the
concatenation of the means, so the neighbour half of an LFA is a sparse product).
It is built once per cloud and shared by teacher and students.

:func:`prepare_clouds` is the only way estimators turn validated clouds into graphs:
optional farthest point sampling -> remove the cloud's own float64 centroid -> float32 on the
device -> kNN graph -> divide by s (equation 4) -> :class:`PreparedCloud`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch


def _csr(crow, cols, values, n: int) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch warns that CSR support is "beta" and that invariant checks are off; the
        # matrices are built here from valid indices, so neither applies.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, (n, n))


def _mean_matrix(knn_indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Row-normalised kNN adjacency A as CSR, without a COO round trip.

    Row i of A holds exactly k entries (the neighbours), so A's row pointers are 0, k, 2k, ...
    and its columns are the kNN indices as they are.
    """
    n, k = knn_indices.shape
    device = knn_indices.device
    values = torch.full((n * k,), 1.0 / k, dtype=dtype, device=device)
    return _csr(torch.arange(0, n * k + 1, k, device=device), knn_indices.reshape(-1), values, n)


def _mean_matrix_t(knn_indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Aᵀ as CSR, from a stable sort of A's column indices (a COO tensor with ``coalesce()``
    sorted all n k entries twice: 6x slower). Only backward passes need it."""
    n, k = knn_indices.shape
    device = knn_indices.device
    cols = knn_indices.reshape(-1)
    order = torch.argsort(cols, stable=True)
    cols_pointer = torch.zeros(n + 1, dtype=torch.int64, device=device)
    cols_pointer[1:] = torch.bincount(cols, minlength=n).cumsum(0)
    values = torch.full((n * k,), 1.0 / k, dtype=dtype, device=device)
    return _csr(cols_pointer, order // k, values, n)


@dataclass
class NeighborGraph:
    """Geometry of one point cloud's kNN graph, ready for :class:`skst3d.nn.DescriptorNet`.

    Attributes
    ----------
    edge_features : Tensor of shape (n, k, 4)
        ``(p - p_j, ‖p - p_j‖)`` for each point and each of its k neighbours.
    mean_matrix : sparse CSR tensor of shape (n, n)
        Row-normalised adjacency ``A`` (``A @ f`` = mean of neighbour features).
    knn_indices : Tensor of shape (n, k)
        The neighbours (a reference, not a copy): they define ``A`` and its transpose.
    points : Tensor of shape (n, 3) or None
        The cloud; only the absolute-coordinates ablation reads it (:meth:`geometric_inputs`).
    """

    edge_features: torch.Tensor
    mean_matrix: torch.Tensor
    knn_indices: torch.Tensor
    points: torch.Tensor | None = None
    _mean_matrix_t: torch.Tensor | None = field(default=None, repr=False)

    @property
    def n_points(self) -> int:
        return self.edge_features.shape[0]

    @property
    def k(self) -> int:
        return self.edge_features.shape[1]

    @property
    def mean_matrix_t(self) -> torch.Tensor:
        """Aᵀ, built on first use: only backward passes need it (a third of inference's graph time)."""
        if self._mean_matrix_t is None:
            self._mean_matrix_t = _mean_matrix_t(self.knn_indices, self.mean_matrix.dtype)
        return self._mean_matrix_t

    @classmethod
    def from_knn(cls, points: torch.Tensor, knn_indices: torch.Tensor) -> "NeighborGraph":
        """Build the graph of ``points`` (n, 3) from its kNN indices (n, k).

        Examples
        --------
        >>> import torch
        >>> from skst3d._graph import NeighborGraph
        >>> pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]])
        >>> g = NeighborGraph.from_knn(pts, torch.tensor([[1], [0], [1]]))
        >>> g.edge_features[2].tolist()
        [[2.0, 0.0, 0.0, 2.0]]
        """
        if points.dtype not in (torch.float32, torch.float64):
            points = points.to(torch.float32)
        knn_indices = knn_indices.to(device=points.device, dtype=torch.int64)
        # written in place: a concatenation would copy all n k 4 values once more
        edge_features = points.new_empty((*knn_indices.shape, 4))
        offsets = edge_features[..., :3]
        torch.sub(points[:, None, :], points[knn_indices], out=offsets)
        torch.linalg.vector_norm(offsets, dim=-1, keepdim=True, out=edge_features[..., 3:])
        return cls(edge_features, _mean_matrix(knn_indices, points.dtype), knn_indices, points)

    def geometric_inputs(self, absolute_coordinates: bool = False) -> torch.Tensor:
        """Inputs of the LFA's geometric MLP, (n, k, 4): ``G(p, p_j)`` of equation (1).

        With ``absolute_coordinates`` (the paper's ablation, RandLA-Net's original encoding):
        (n, k, 10), ``G ⊕ p ⊕ p_j``, which ties descriptors to the position in the cloud.
        """
        if not absolute_coordinates:
            return self.edge_features
        if self.points is None or self.knn_indices is None:
            raise ValueError("this graph was built without its points; use NeighborGraph.from_knn")
        n, k = self.knn_indices.shape
        own = self.points[:, None, :].expand(n, k, 3)
        return torch.cat([self.edge_features, own, self.points[self.knn_indices]], dim=-1)

    def rotated(self, rotation: torch.Tensor) -> "NeighborGraph":
        """The graph of the rotated cloud ``points @ rotation.T``.

        A rotation keeps every distance, hence the kNN graph and the adjacency: only the
        offsets turn. The mean matrices are shared with this graph.
        """
        rotation = rotation.to(dtype=self.edge_features.dtype, device=self.edge_features.device)
        offsets = self.edge_features[..., :3] @ rotation.T
        edge_features = torch.cat([offsets, self.edge_features[..., 3:]], dim=-1)
        points = None if self.points is None else self.points @ rotation.T
        return NeighborGraph(edge_features, self.mean_matrix, self.knn_indices, points, self._mean_matrix_t)

    def neighbor_mean(self, features: torch.Tensor) -> torch.Tensor:
        """Mean of the k neighbours' features, differentiable (``A @ f``)."""
        return _NeighborMean.apply(features, self)


def induced_subgraph(knn_indices: torch.Tensor, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Restrict a kNN graph to ``nodes`` (sorted, unique), renumbering them 0..len(nodes)-1.

    Neighbours outside ``nodes`` are replaced by the node itself. When ``nodes`` is a union
    of L-hop receptive fields, this changes no descriptor at their centres: a node at hop l
    only ever contributes its first L - l layers, which read neighbours at hop <= L.

    Returns the new (m, k) kNN indices and the position of each old index in ``nodes``
    (-1 where absent).

    Examples
    --------
    >>> import torch
    >>> knn = torch.tensor([[1], [2], [0]])
    >>> sub, where = induced_subgraph(knn, torch.tensor([0, 1]))
    >>> sub.tolist()
    [[1], [1]]
    """
    n = knn_indices.shape[0]
    where = torch.full((n,), -1, dtype=torch.int64, device=knn_indices.device)
    where[nodes] = torch.arange(nodes.numel(), device=knn_indices.device)
    sub = where[knn_indices[nodes]]
    own = torch.arange(nodes.numel(), device=knn_indices.device)[:, None].expand_as(sub)
    return torch.where(sub < 0, own, sub), where


class _NeighborMean(torch.autograd.Function):
    # Sparse products in both directions: autograd through CSR matmul is slower and, in some
    # torch versions, unsupported for the dense operand on CPU.
    @staticmethod
    def forward(ctx, features, graph):
        ctx.graph = graph
        return graph.mean_matrix @ features

    @staticmethod
    def backward(ctx, grad_output):
        return ctx.graph.mean_matrix_t @ grad_output.contiguous(), None


# Above this many bytes of graphs in memory, graphs are rebuilt when used instead of kept.
GRAPH_CACHE_BYTES = 2 << 30
# A point farther from its cloud's centroid than this many times the median distance is refused:
# an outlier or a unit mistake that float32 (squared distances, networks) cannot carry.
MAX_RELATIVE_RADIUS = 1e9
# Clouds with more points are scored in spatially compact pieces of this many points (plus the
# receptive-field halo each piece needs), so memory stays bounded whatever the scan size.
PIECE_POINTS = 1 << 16


@dataclass
class PreparedCloud:
    """One cloud ready for the networks: centred, in units of s, with its kNN graph.

    Attributes
    ----------
    points : Tensor of shape (m, 3), float32
        The (sampled) points minus their centroid, divided by the scale s, on the device.
    knn_indices : Tensor of shape (m, k), int64
        Neighbours of every point (itself excluded), on the device.
    sample : ndarray of shape (m,) or None
        Rows of the input cloud that were kept by farthest point sampling; None when all were.
    origin : ndarray of shape (3,), float64
        What was subtracted from the input coordinates before dividing by s.
    """

    points: torch.Tensor
    knn_indices: torch.Tensor
    sample: np.ndarray | None = None
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    keep_graph: bool = True
    _graph: NeighborGraph | None = field(default=None, repr=False)

    def graph(self) -> NeighborGraph:
        """The :class:`NeighborGraph`, built on first use (and kept when ``keep_graph``)."""
        if self._graph is not None:
            return self._graph
        graph = NeighborGraph.from_knn(self.points, self.knn_indices)
        if self.keep_graph:
            self._graph = graph
        return graph

    def pieces(self, n_hops: int, piece_points: int | None = None):
        """Yield ``(rows, graph, where)`` covering every point once, in bounded memory.

        ``rows`` are point indices of a spatially compact piece (consecutive along a Z-order
        curve), ``graph`` the graph of the union of their ``n_hops``-hop receptive fields and
        ``where`` their rows in it: a network with that receptive field gives exactly the
        same descriptors at ``rows`` on ``graph`` as on the whole cloud (see
        :func:`induced_subgraph`). A cloud of at most ``piece_points`` points is one piece.
        """
        n = self.points.shape[0]
        piece_points = piece_points or PIECE_POINTS
        if n <= piece_points:
            rows = torch.arange(n, device=self.points.device)
            yield rows, self.graph(), rows
            return
        from .geometry import _morton_order

        order = torch.from_numpy(_morton_order(self.points.cpu().numpy())).to(self.points.device)
        for start in range(0, n, piece_points):
            rows = order[start : start + piece_points]
            nodes = receptive_union(self.knn_indices, rows, n_hops)
            sub_knn, where = induced_subgraph(self.knn_indices, nodes)
            yield rows, NeighborGraph.from_knn(self.points[nodes], sub_knn), where[rows]


def receptive_union(knn_indices: torch.Tensor, rows: torch.Tensor, n_hops: int) -> torch.Tensor:
    """Sorted indices of every point within ``n_hops`` kNN hops of ``rows`` (``rows`` included)."""
    reached = torch.zeros(knn_indices.shape[0], dtype=torch.bool, device=knn_indices.device)
    reached[rows] = True
    frontier = rows
    for _ in range(n_hops):
        neighbours = knn_indices[frontier].reshape(-1)
        frontier = torch.unique(neighbours[~reached[neighbours]])
        if frontier.numel() == 0:
            break
        reached[frontier] = True
    return torch.nonzero(reached)[:, 0]


def sample_rows(cloud: np.ndarray, n_points, seed, method="farthest", at_least=2) -> np.ndarray | None:
    """Rows kept by farthest point sampling (or ``method="random"``: a uniform random subset,
    in increasing order) down to ``n_points`` (None: keep every row), but never fewer than
    ``at_least``.

    An int is a number of points; a float in (0, 1) a fraction of the cloud's points.
    """
    if isinstance(n_points, float) and n_points < 1:
        n_points = int(round(n_points * cloud.shape[0]))
    if n_points is not None:
        n_points = max(n_points, at_least)
    if n_points is None or cloud.shape[0] <= n_points:
        return None
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(cloud.shape[0], n_points, replace=False))
    from .geometry import farthest_point_sampling

    centred = torch.from_numpy(np.asarray(cloud, dtype=np.float64) - cloud.mean(axis=0))
    return farthest_point_sampling(centred, n_points, random_state=seed).numpy()


def _check_no_far_outlier(cloud, index):
    # around the median point: a far outlier drags the mean, not the median
    radius = np.linalg.norm(cloud - np.median(cloud, axis=0), axis=1)
    typical = max(float(np.median(radius)), np.finfo(np.float64).tiny)
    far = radius > MAX_RELATIVE_RADIUS * typical
    if far.any():
        bad = int(np.flatnonzero(far)[0])
        raise ValueError(
            f"X[{index}] has a point {radius[bad] / typical:.3g} times farther from the cloud's middle than "
            f"its typical point (point {bad}: {cloud[bad].tolist()}): an outlier or a unit mistake; remove it"
        )


def prepare_clouds(clouds, k, *, device, backend="auto", scale=None, n_points=None, seed=0):
    """Validated clouds -> (list of :class:`PreparedCloud`, scale s).

    Each cloud's centroid is removed in float64 before anything is cast to float32, so that
    scans far from the origin keep their resolution and a translated cloud gives the same
    float32 network input bit for bit (the networks are translation invariant anyway). The
    scale s of equation (4) is the mean kNN distance over all (sampled) points of ``clouds``
    unless given.

    Parameters
    ----------
    clouds : list of ndarray of shape (n_i, 3), float64
        As returned by :func:`skst3d._validation.check_point_clouds`.

    Notes
    -----
    Networks that see absolute coordinates (the paper's ablation) see them relative to each
    cloud's centroid.
    k : int
    device : torch.device
    backend : str
        kNN backend, see :func:`skst3d.geometry.knn_graph`.
    scale : float, optional
        Divide by this (a fitted ``scale_``) instead of computing s from ``clouds``.
    n_points : int or float, optional
        Farthest point sampling down to this many points per cloud (a float in (0, 1): this
        fraction of each cloud's points).
    seed : int
        Picks the first point of the farthest point sampling.
    """
    from .geometry import knn_graph, scale_from_knn_distances

    points, indices, distances, samples, origins = [], [], [], [], []
    for i, cloud in enumerate(clouds):
        _check_no_far_outlier(cloud, i)
        sample = sample_rows(cloud, n_points, seed)
        kept = cloud if sample is None else cloud[sample]
        origin = kept.mean(axis=0, dtype=np.float64)
        centred = torch.as_tensor(kept - origin, dtype=torch.float32, device=device)
        idx, dist = knn_graph(centred, k, backend=backend)
        points.append(centred)
        indices.append(idx)
        distances.append(dist)
        samples.append(sample)
        origins.append(origin)
    if scale is None:
        try:
            scale = scale_from_knn_distances(distances)
        except ValueError as exc:
            raise ValueError(f"X: {exc}") from None
    del distances

    # NeighborGraph: edge features (k * 4) plus two CSR matrices (k * (8 + 8 + 4)) per point.
    keep = sum(p.shape[0] for p in points) * k * 40 < GRAPH_CACHE_BYTES
    prepared = [
        PreparedCloud(p / scale, idx, sample, origin, keep)
        for p, idx, sample, origin in zip(points, indices, samples, origins)
    ]
    return prepared, float(scale)
