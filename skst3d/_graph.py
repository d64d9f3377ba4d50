"""The kNN graph as the descriptor network consumes it (pure torch, no KeOps, no I/O).

A :class:`NeighborGraph` holds, for one point cloud, what every LFA block of every network
needs and what depends only on geometry: the local geometric features
``G(p, p_j) = (p - p_j) ⊕ ‖p - p_j‖`` of equation (1), and the row-normalised adjacency
used for the neighbour-feature mean, as CSR matrices (the mean of a concatenation is the
concatenation of the means, so the neighbour half of an LFA is a sparse product).
It is built once per cloud and shared by teacher and student.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


def _csr(crow, cols, values, n: int) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch warns that CSR support is "beta" and that invariant checks are off; the
        # matrices are built here from valid indices, so neither applies.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, (n, n))


def _mean_matrices(knn_indices: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-normalised kNN adjacency A and its transpose as CSR, without a COO round trip.

    Row i of A holds exactly k entries (the neighbours), so A's row pointers are 0, k, 2k, ...
    and its columns are the kNN indices as they are. Aᵀ comes from a stable sort of the
    column indices. (A COO tensor with ``coalesce()`` sorted all n k entries twice: 6x slower.)
    """
    n, k = knn_indices.shape
    device = knn_indices.device
    cols = knn_indices.reshape(-1)
    values = torch.full((n * k,), 1.0 / k, dtype=dtype, device=device)
    rows_pointer = torch.arange(0, n * k + 1, k, device=device)
    order = torch.argsort(cols, stable=True)
    cols_pointer = torch.zeros(n + 1, dtype=torch.int64, device=device)
    cols_pointer[1:] = torch.bincount(cols, minlength=n).cumsum(0)
    return _csr(rows_pointer, cols, values, n), _csr(cols_pointer, order // k, values, n)


@dataclass
class NeighborGraph:
    """Geometry of one point cloud's kNN graph, ready for :class:`skst3d.nn.DescriptorNet`.

    Attributes
    ----------
    edge_features : Tensor of shape (n, k, 4)
        ``(p - p_j, ‖p - p_j‖)`` for each point and each of its k neighbours.
    mean_matrix, mean_matrix_t : sparse CSR tensors of shape (n, n)
        Row-normalised adjacency ``A`` (``A @ f`` = mean of neighbour features) and its transpose.
    points, knn_indices : Tensor of shape (n, 3) and (n, k) or None
        The cloud and its neighbours (references, not copies); only the absolute-coordinates
        ablation reads them (:meth:`geometric_inputs`).
    """

    edge_features: torch.Tensor
    mean_matrix: torch.Tensor
    mean_matrix_t: torch.Tensor
    points: torch.Tensor | None = None
    knn_indices: torch.Tensor | None = None

    @property
    def n_points(self) -> int:
        return self.edge_features.shape[0]

    @property
    def k(self) -> int:
        return self.edge_features.shape[1]

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
        offsets = points[:, None, :] - points[knn_indices]
        edge_features = torch.cat([offsets, offsets.norm(dim=-1, keepdim=True)], dim=-1)
        mean_matrix, mean_matrix_t = _mean_matrices(knn_indices, points.dtype)
        return cls(edge_features.contiguous(), mean_matrix, mean_matrix_t, points, knn_indices)

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
        return NeighborGraph(edge_features, self.mean_matrix, self.mean_matrix_t, points, self.knn_indices)

    def neighbor_mean(self, features: torch.Tensor) -> torch.Tensor:
        """Mean of the k neighbours' features, differentiable (``A @ f``)."""
        return _NeighborMean.apply(features, self.mean_matrix, self.mean_matrix_t)


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
    def forward(ctx, features, mean_matrix, mean_matrix_t):
        ctx.mean_matrix_t = mean_matrix_t
        return mean_matrix @ features

    @staticmethod
    def backward(ctx, grad_output):
        return ctx.mean_matrix_t @ grad_output.contiguous(), None, None
