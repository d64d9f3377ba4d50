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


def _csr_mean_matrix(rows, cols, n: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    values = torch.full((rows.numel(),), 1.0 / k, dtype=dtype, device=cols.device)
    with warnings.catch_warnings():
        # torch warns that CSR support is "beta" and that invariant checks are off; the
        # matrices are built here from valid indices, so neither applies.
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n)).coalesce()
        return coo.to_sparse_csr()


@dataclass
class NeighborGraph:
    """Geometry of one point cloud's kNN graph, ready for :class:`skst3d.nn.DescriptorNet`.

    Attributes
    ----------
    edge_features : Tensor of shape (n, k, 4)
        ``(p - p_j, ‖p - p_j‖)`` for each point and each of its k neighbours.
    mean_matrix, mean_matrix_t : sparse CSR tensors of shape (n, n)
        Row-normalised adjacency ``A`` (``A @ f`` = mean of neighbour features) and its transpose.
    """

    edge_features: torch.Tensor
    mean_matrix: torch.Tensor
    mean_matrix_t: torch.Tensor

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
        n, k = knn_indices.shape
        offsets = points[:, None, :] - points[knn_indices]
        edge_features = torch.cat([offsets, offsets.norm(dim=-1, keepdim=True)], dim=-1)
        rows = torch.arange(n, device=points.device).repeat_interleave(k)
        cols = knn_indices.reshape(-1)
        return cls(
            edge_features=edge_features.contiguous(),
            mean_matrix=_csr_mean_matrix(rows, cols, n, k, points.dtype),
            mean_matrix_t=_csr_mean_matrix(cols, rows, n, k, points.dtype),
        )

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
