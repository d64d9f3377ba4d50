"""The 3D-ST networks as pure torch modules: descriptor network and receptive-field decoder.

Architecture (paper, section 3.1 and Figure 4; dimensions the text leaves open are chosen
here and kept consistent):

* features start at zero, ``f_p = 0`` in R^d;
* ``n_blocks`` residual blocks, each ``f + MLP_out(LFA_2(LFA_1(MLP_in(f))))`` with
  ``MLP_in: d -> d/4``, ``LFA_1: d/4 -> d/2`` (d_LFA = d/4), ``LFA_2: d/2 -> d`` (d_LFA = d/2),
  ``MLP_out: d -> d``; every shared MLP is one dense layer followed by LeakyReLU(0.2);
* a head ``d -> d -> d`` with one hidden layer (LeakyReLU 0.2) and a linear output, so
  descriptors are not confined to a half-space.

An LFA block maps the geometric features ``G(p, p_j) = (p - p_j) ⊕ ‖p - p_j‖`` through a
dense layer + LeakyReLU to d_LFA channels, concatenates them with the neighbours' features
and average-pools over the k neighbours; since the mean of a concatenation is the
concatenation of the means, this is computed as ``[mean_j MLP(G_pj), A f]`` with A the
row-normalised adjacency. The first half never materialises an (n, k, d_LFA) tensor:
:func:`geometric_mean_mlp` evaluates it in chunks and recomputes in the backward pass.
No absolute coordinate enters anywhere, so descriptors are translation invariant (the paper's
ablation that adds them, ``absolute_coordinates=True``, exists to measure what that is worth).

Modules take a :class:`NeighborGraph`; they never build one (the estimators build them, once per
cloud). :func:`gather_descriptors` is the straightforward gather-concat-mean implementation
of the same network, kept to check and time the fused one against.
"""

from __future__ import annotations

import torch
from torch import nn

from ._graph import NeighborGraph

__all__ = [
    "NeighborGraph",
    "LocalFeatureAggregation",
    "ResidualBlock",
    "DescriptorNet",
    "ReceptiveFieldDecoder",
    "fused_geometric_terms",
    "geometric_mean_mlp",
    "gather_descriptors",
]

LEAKY_SLOPE = 0.2
DECODER_SLOPE = 0.05

# Elements of the (chunk * k, channels) pre-activation evaluated at once. On a CPU it must stay
# in the L2 cache (measured at n = 16,384 and 384 channels, one thread: 2^18-2^19 elements take
# 110 ms, 2^21 take 320 ms); on a GPU larger chunks keep the device busy.
_CHUNK_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 24}


def _chunk_points(edge_features, channels):
    elements = _CHUNK_ELEMENTS.get(edge_features.device.type, _CHUNK_ELEMENTS["cuda"])
    return max(1, elements // max(1, edge_features.shape[1] * channels))


class _GeometricMeanMLP(torch.autograd.Function):
    """``mean_j LeakyReLU(G_pj @ W + b)`` for all points, chunked, no per-edge activations saved.

    With ``LeakyReLU(x) = slope * x + (1 - slope) * relu(x)``, the linear part averages exactly to
    ``mean_j(G_pj) @ W + b``; only ``relu`` needs the per-edge pass, which then costs one fused
    ``addmm``, an in-place clamp and a sum per chunk.
    """

    @staticmethod
    def forward(ctx, edge_features, weight, bias, slope):
        n, k, n_in = edge_features.shape
        channels = weight.shape[1]
        chunk = _chunk_points(edge_features, channels)
        edges = edge_features.reshape(n * k, n_in)
        mean_edges = edge_features.mean(dim=1)
        positive = edge_features.new_empty((n, channels))
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            pre = torch.addmm(bias, edges[start * k : stop * k], weight).clamp_min_(0)
            torch.sum(pre.view(stop - start, k, channels), dim=1, out=positive[start:stop])
        ctx.save_for_backward(edge_features, mean_edges, weight, bias)
        ctx.slope = slope
        linear = torch.addmm(bias, mean_edges, weight)
        return positive.mul_((1 - slope) / k).add_(linear, alpha=slope)

    @staticmethod
    def backward(ctx, grad_output):
        edge_features, mean_edges, weight, bias = ctx.saved_tensors
        slope = ctx.slope
        n, k, n_in = edge_features.shape
        channels = weight.shape[1]
        chunk = _chunk_points(edge_features, channels)
        edges = edge_features.reshape(n * k, n_in)
        grad_output = grad_output.contiguous()
        # Linear part: exact through the mean edge features.
        grad_weight = mean_edges.T @ grad_output * slope
        grad_bias = grad_output.sum(dim=0) * slope
        scaled = grad_output * ((1 - slope) / k)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            block = edges[start * k : stop * k]
            pre = torch.addmm(bias, block, weight)
            grad_pre = (pre > 0).view(stop - start, k, channels).mul(scaled[start:stop, None, :]).view(-1, channels)
            grad_weight.addmm_(block.T, grad_pre)
            grad_bias.add_(grad_pre.sum(dim=0))
        return None, grad_weight, grad_bias, None


def geometric_mean_mlp(edge_features, weight, bias, slope=LEAKY_SLOPE):
    """Mean over neighbours of ``LeakyReLU(G @ weight + bias)``, memory O(n * channels).

    Parameters
    ----------
    edge_features : Tensor of shape (n, k, n_in)
    weight : Tensor of shape (n_in, channels)
    bias : Tensor of shape (channels,)
    slope : float
        Negative slope of the LeakyReLU.

    Returns
    -------
    Tensor of shape (n, channels)

    Examples
    --------
    >>> import torch
    >>> g = torch.randn(5, 3, 4)
    >>> w, b = torch.randn(4, 2), torch.randn(2)
    >>> ref = torch.nn.functional.leaky_relu(g @ w + b, 0.2).mean(1)
    >>> torch.allclose(geometric_mean_mlp(g, w, b), ref, atol=1e-6)
    True
    """
    return _GeometricMeanMLP.apply(edge_features, weight, bias, slope)


class SharedMLP(nn.Sequential):
    """One dense layer applied to every point, followed by LeakyReLU."""

    def __init__(self, n_in: int, n_out: int, slope: float = LEAKY_SLOPE):
        super().__init__(nn.Linear(n_in, n_out), nn.LeakyReLU(slope))


class LocalFeatureAggregation(nn.Module):
    """LFA block: ``[mean_j MLP(G(p, p_j)), mean_j f_j]``, mapping d_LFA to 2 d_LFA channels."""

    absolute_coordinates = False  # class default: modules pickled before the option load unchanged

    def __init__(self, d_lfa: int, slope: float = LEAKY_SLOPE, absolute_coordinates: bool = False):
        super().__init__()
        self.d_lfa = d_lfa
        self.slope = slope
        self.absolute_coordinates = absolute_coordinates
        self.geometric = nn.Linear(10 if absolute_coordinates else 4, d_lfa)

    def geometric_term(self, graph: NeighborGraph) -> torch.Tensor:
        inputs = graph.geometric_inputs(self.absolute_coordinates)
        return geometric_mean_mlp(inputs, self.geometric.weight.T, self.geometric.bias, self.slope)

    def forward(self, features, graph: NeighborGraph, geometric=None):
        if geometric is None:
            geometric = self.geometric_term(graph)
        return torch.cat([geometric, graph.neighbor_mean(features)], dim=1)


class ResidualBlock(nn.Module):
    """``f + MLP_out(LFA_2(LFA_1(MLP_in(f))))`` keeping dimension d (divisible by 4)."""

    def __init__(self, d: int, slope: float = LEAKY_SLOPE, absolute_coordinates: bool = False):
        super().__init__()
        self.mlp_in = SharedMLP(d, d // 4, slope)
        self.lfa1 = LocalFeatureAggregation(d // 4, slope, absolute_coordinates)
        self.lfa2 = LocalFeatureAggregation(d // 2, slope, absolute_coordinates)
        self.mlp_out = SharedMLP(d, d, slope)

    def forward(self, features, graph: NeighborGraph, geometric=(None, None)):
        hidden = self.lfa1(self.mlp_in(features), graph, geometric[0])
        hidden = self.lfa2(hidden, graph, geometric[1])
        return features + self.mlp_out(hidden)


class DescriptorNet(nn.Module):
    """Dense local descriptor network of 3D-ST: one d-dim descriptor per input point.

    Parameters
    ----------
    d : int
        Descriptor dimension, a multiple of 4.
    n_blocks : int
        Number of residual blocks; the receptive field spans ``2 * n_blocks`` kNN hops.
    slope : float
        Negative slope of every LeakyReLU.
    absolute_coordinates : bool
        Append the absolute coordinates of the point and its neighbour to ``G`` (RandLA-Net's
        encoding; the paper's ablation, which loses translation invariance).

    Examples
    --------
    >>> import torch
    >>> from skst3d.nn import DescriptorNet, NeighborGraph
    >>> pts = torch.randn(50, 3)
    >>> knn = torch.cdist(pts, pts).topk(5, largest=False).indices[:, 1:]
    >>> net = DescriptorNet(d=8, n_blocks=2)
    >>> net(NeighborGraph.from_knn(pts, knn)).shape
    torch.Size([50, 8])
    """

    absolute_coordinates = False  # class default: modules pickled before the option load unchanged

    def __init__(self, d: int = 64, n_blocks: int = 4, slope: float = LEAKY_SLOPE, absolute_coordinates: bool = False):
        super().__init__()
        if d < 4 or d % 4:
            raise ValueError(f"d must be a positive multiple of 4, got {d}")
        self.d = d
        self.n_blocks = n_blocks
        self.absolute_coordinates = absolute_coordinates
        self.blocks = nn.ModuleList(ResidualBlock(d, slope, absolute_coordinates) for _ in range(n_blocks))
        self.head = nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(slope), nn.Linear(d, d))
        self.reset_parameters(slope)

    def reset_parameters(self, slope: float = LEAKY_SLOPE):
        """He-uniform weights for LeakyReLU and zero biases.

        torch's default Linear initialisation is about 2.4 times smaller; with every LFA block
        averaging over k neighbours, the differences between points then shrink layer after
        layer until descriptors are nearly constant (measured: spread across a scene 5 % of
        their magnitude), and the pretraining decoder learns to ignore them. The weights stay
        uniformly distributed, as the paper specifies.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_uniform_(module.weight, a=slope, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)

    @property
    def n_hops(self) -> int:
        """Hops of the kNN graph spanned by the receptive field (one per LFA block)."""
        return 2 * self.n_blocks

    def lfa_blocks(self) -> list[LocalFeatureAggregation]:
        return [lfa for block in self.blocks for lfa in (block.lfa1, block.lfa2)]

    def geometric_terms(self, graph: NeighborGraph) -> list[torch.Tensor]:
        """Geometric halves of all LFA blocks, computed in one fused pass over the edges."""
        return fused_geometric_terms([self], graph)[0]

    def forward(self, graph: NeighborGraph, geometric=None) -> torch.Tensor:
        if geometric is None:
            geometric = self.geometric_terms(graph)
        dtype = graph.edge_features.dtype
        features = torch.zeros((graph.n_points, self.d), dtype=dtype, device=graph.edge_features.device)
        for i, block in enumerate(self.blocks):
            features = block(features, graph, geometric[2 * i : 2 * i + 2])
        return self.head(features)


def fused_geometric_terms(nets, graph: NeighborGraph) -> list[list[torch.Tensor]]:
    """Geometric LFA terms of several networks from one pass over the edge features.

    The geometric half of every LFA depends only on the geometry, so teacher and student
    (and all their blocks) can evaluate it together: one matrix product per chunk of points
    instead of 2 * n_blocks * len(nets). Differentiable in every network's weights.
    """
    lfas = [net.lfa_blocks() for net in nets]
    flat = [lfa for group in lfas for lfa in group]
    slopes = {lfa.slope for lfa in flat}
    absolute = {lfa.absolute_coordinates for lfa in flat}
    if len(slopes) != 1 or len(absolute) != 1:
        raise ValueError("networks with different LeakyReLU slopes or geometric inputs cannot be fused")
    weight = torch.cat([lfa.geometric.weight for lfa in flat], dim=0).T
    bias = torch.cat([lfa.geometric.bias for lfa in flat])
    dtype = graph.edge_features.dtype
    inputs = graph.geometric_inputs(absolute.pop())
    joint = geometric_mean_mlp(inputs, weight.to(dtype), bias.to(dtype), slopes.pop())
    pieces = iter(torch.split(joint, [lfa.d_lfa for lfa in flat], dim=1))
    return [[next(pieces) for _ in group] for group in lfas]


class ReceptiveFieldDecoder(nn.Module):
    """Decoder D of the pretraining: ``d -> 128 -> 128 -> 3 m`` with LeakyReLU(0.05).

    The descriptors are standardised first (batch normalisation without learned affine
    parameters): local descriptors differ from point to point by a few percent of their
    magnitude, and an MLP fed the raw values learns the mean receptive field and ignores
    them (measured: the same Chamfer loss with each point's own descriptor as with the mean
    descriptor). Standardising makes those differences the decoder's input.

    Examples
    --------
    >>> import torch
    >>> ReceptiveFieldDecoder(d=16, n_points=32)(torch.zeros(4, 16)).shape
    torch.Size([4, 32, 3])
    """

    def __init__(self, d: int = 64, n_points: int = 1024, hidden: int = 128, slope: float = DECODER_SLOPE):
        super().__init__()
        self.n_points = n_points
        self.mlp = nn.Sequential(
            nn.BatchNorm1d(d, affine=False),
            nn.Linear(d, hidden),
            nn.LeakyReLU(slope),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(slope),
            nn.Linear(hidden, 3 * n_points),
        )

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        return self.mlp(descriptors).view(-1, self.n_points, 3)


def gather_descriptors(net, points: torch.Tensor, knn_indices: torch.Tensor) -> torch.Tensor:
    """:class:`DescriptorNet` output computed the obvious way: gather, concatenate, mean.

    Every LFA block materialises the (n, k, channels) tensor of its neighbours' features and
    geometric terms. Equal to ``net(NeighborGraph.from_knn(points, knn_indices))`` up to
    rounding; tests check the fused kernels against it and benchmarks time them against it.

    Examples
    --------
    >>> import torch
    >>> from skst3d.nn import DescriptorNet, NeighborGraph, gather_descriptors
    >>> pts = torch.randn(40, 3)
    >>> idx = torch.cdist(pts, pts).topk(5, largest=False).indices[:, 1:]
    >>> net = DescriptorNet(d=8, n_blocks=1)
    >>> torch.allclose(gather_descriptors(net, pts, idx), net(NeighborGraph.from_knn(pts, idx)), atol=1e-5)
    True
    """
    diff = points[:, None, :] - points[knn_indices]
    geometry = torch.cat([diff, diff.norm(dim=-1, keepdim=True)], dim=-1)
    if getattr(net, "absolute_coordinates", False):
        own = points[:, None, :].expand_as(diff)
        geometry = torch.cat([geometry, own, points[knn_indices]], dim=-1)
    features = torch.zeros(points.shape[0], net.d, dtype=points.dtype, device=points.device)
    for block in net.blocks:
        hidden = block.mlp_in(features)
        for lfa in (block.lfa1, block.lfa2):
            geo = torch.nn.functional.leaky_relu(lfa.geometric(geometry), lfa.slope)
            hidden = torch.cat([geo, hidden[knn_indices]], dim=-1).mean(dim=1)
        features = features + block.mlp_out(hidden)
    return net.head(features)
