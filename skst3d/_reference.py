"""Straightforward reference implementations, for tests and benchmarks only.

They compute what the optimised code computes, the obvious way: the descriptor network with
an explicit (n, k, channels) gather, concatenation and mean in every LFA block.
"""

import torch


def naive_descriptors(net, points: torch.Tensor, knn_indices: torch.Tensor) -> torch.Tensor:
    """DescriptorNet output by gather-concat-mean (no fused or sparse kernels).

    Examples
    --------
    >>> import torch
    >>> from skst3d._graph import NeighborGraph
    >>> from skst3d.nn import DescriptorNet
    >>> pts = torch.randn(40, 3)
    >>> idx = torch.cdist(pts, pts).topk(5, largest=False).indices[:, 1:]
    >>> net = DescriptorNet(d=8, n_blocks=1)
    >>> torch.allclose(naive_descriptors(net, pts, idx), net(NeighborGraph.from_knn(pts, idx)), atol=1e-5)
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
