"""Properties of the descriptor network, checked against independent computations."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from skst3d._graph import induced_subgraph
from skst3d.nn import NeighborGraph
from skst3d.nn import gather_descriptors as naive_forward
from skst3d.nn import DescriptorNet, ReceptiveFieldDecoder, fused_geometric_terms, geometric_mean_mlp


def knn_indices(points, k):
    return torch.from_numpy(cKDTree(points.numpy()).query(points.numpy(), k + 1)[1][:, 1:])


def bfs_field(idx, center, hops):
    field, frontier = {center}, {center}
    for _ in range(hops):
        frontier = {int(j) for i in frontier for j in idx[i]} - field
        field |= frontier
    return sorted(field)


@pytest.fixture
def cloud():
    torch.manual_seed(0)
    pts = torch.randn(400, 3)
    return pts, knn_indices(pts, 8)


def test_matches_naive_gather_concat_mean(cloud):
    pts, idx = cloud
    torch.manual_seed(1)
    net = DescriptorNet(d=16, n_blocks=2)
    fast = net(NeighborGraph.from_knn(pts, idx))
    torch.testing.assert_close(fast, naive_forward(net, pts, idx), atol=1e-5, rtol=1e-5)


def test_gradients_match_naive(cloud):
    pts, idx = cloud
    torch.manual_seed(2)
    net = DescriptorNet(d=8, n_blocks=2)
    net(NeighborGraph.from_knn(pts, idx)).pow(2).sum().backward()
    fast = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    naive_forward(net, pts, idx).pow(2).sum().backward()
    for a, b in zip(fast, [p.grad for p in net.parameters()]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_geometric_mean_mlp_gradcheck():
    torch.manual_seed(3)
    edges = torch.randn(6, 3, 4, dtype=torch.float64)
    weight = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, b: geometric_mean_mlp(edges, w, b), (weight, bias))


@pytest.mark.parametrize("elements", [1, 7 * 3 * 5, 1 << 18])
def test_geometric_mean_mlp_chunks_match_dense(monkeypatch, elements):
    # Several chunks with a ragged last one, one point per chunk, and a single chunk.
    import skst3d.nn as nn_module

    monkeypatch.setitem(nn_module._CHUNK_ELEMENTS, "cpu", elements)
    torch.manual_seed(4)
    edges = torch.randn(23, 3, 4, dtype=torch.float64)
    weight = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    out = geometric_mean_mlp(edges, weight, bias, 0.2)
    dense = torch.nn.functional.leaky_relu(edges @ weight + bias, 0.2).mean(1)
    torch.testing.assert_close(out, dense)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (weight, bias), grad)
    expected = torch.autograd.grad(dense, (weight, bias), grad)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_rotated_graph_equals_graph_of_rotated_cloud(cloud):
    from skst3d.geometry import random_rotation

    pts, idx = cloud
    rotation = torch.as_tensor(random_rotation(90.0, random_state=0), dtype=torch.float32)
    moved = NeighborGraph.from_knn(pts @ rotation.T, idx)
    turned = NeighborGraph.from_knn(pts, idx).rotated(rotation)
    torch.testing.assert_close(turned.edge_features, moved.edge_features, atol=1e-5, rtol=1e-5)
    net = DescriptorNet(d=8, n_blocks=1)
    torch.testing.assert_close(net(turned), net(moved), atol=1e-4, rtol=1e-4)


def test_network_gradcheck_float64():
    torch.manual_seed(4)
    pts = torch.randn(30, 3, dtype=torch.float64)
    graph = NeighborGraph.from_knn(pts, knn_indices(pts.float(), 4))
    net = DescriptorNet(d=4, n_blocks=1).double()
    weight = net.blocks[0].lfa2.geometric.weight

    def f(w):
        with torch.no_grad():
            weight.copy_(w)
        return net(graph).sum()

    # compare autograd with central finite differences through the whole module
    w0 = weight.detach().clone()
    net.zero_grad()
    net(graph).sum().backward()
    analytic = weight.grad.clone()
    eps = 1e-6
    numeric = torch.zeros_like(w0)
    for i in range(w0.numel()):
        bump = torch.zeros_like(w0).view(-1)
        bump[i] = eps
        numeric.view(-1)[i] = (f(w0 + bump.view_as(w0)) - f(w0 - bump.view_as(w0))) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, atol=1e-6, rtol=1e-5)


@settings(deadline=None, max_examples=10)
@given(shift=st.tuples(*[st.floats(-1e3, 1e3)] * 3), seed=st.integers(0, 100))
def test_translation_invariance(shift, seed):
    gen = torch.Generator().manual_seed(seed)
    pts = torch.randn(120, 3, generator=gen, dtype=torch.float64)
    idx = knn_indices(pts.float(), 6)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = DescriptorNet(d=8, n_blocks=2).double()
    a = net(NeighborGraph.from_knn(pts, idx))
    b = net(NeighborGraph.from_knn(pts + torch.tensor(shift, dtype=torch.float64), idx))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_translation_invariance_float32_with_recomputed_knn(cloud):
    pts, idx = cloud
    net = DescriptorNet(d=8, n_blocks=2)
    moved = pts + torch.tensor([5.0, -3.0, 2.0])
    a = net(NeighborGraph.from_knn(pts, idx))
    b = net(NeighborGraph.from_knn(moved, knn_indices(moved, 8)))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_permutation_equivariance(cloud):
    pts, idx = cloud
    net = DescriptorNet(d=8, n_blocks=2)
    perm = torch.randperm(pts.shape[0], generator=torch.Generator().manual_seed(0))
    inverse = torch.argsort(perm)
    permuted_idx = inverse[idx[perm]]  # neighbours of the permuted points, renumbered
    a = net(NeighborGraph.from_knn(pts, idx))
    b = net(NeighborGraph.from_knn(pts[perm], permuted_idx))
    torch.testing.assert_close(b, a[perm], atol=1e-5, rtol=1e-5)


def test_descriptor_depends_only_on_receptive_field(cloud):
    pts, idx = cloud
    net = DescriptorNet(d=8, n_blocks=1)  # 2 hops
    center = 7
    field = set(bfs_field(idx.tolist(), center, net.n_hops))
    outside = next(i for i in range(pts.shape[0]) if i not in field)
    moved = pts.clone()
    moved[outside] += torch.tensor([0.3, -0.2, 0.1])  # kNN indices kept: only geometry changes
    a = net(NeighborGraph.from_knn(pts, idx))
    b = net(NeighborGraph.from_knn(moved, idx))
    torch.testing.assert_close(a[center], b[center], atol=0, rtol=0)
    # and a point inside the field does change it
    inside = max(field - {center})
    moved = pts.clone()
    moved[inside] += torch.tensor([0.3, -0.2, 0.1])
    c = net(NeighborGraph.from_knn(moved, idx))
    assert not torch.allclose(a[center], c[center])


def test_union_subgraph_gives_exact_centre_descriptors(cloud):
    pts, idx = cloud
    net = DescriptorNet(d=8, n_blocks=1)
    centers = [3, 50, 333]
    nodes = torch.tensor(sorted(set().union(*(bfs_field(idx.tolist(), c, net.n_hops) for c in centers))))
    assert nodes.numel() < pts.shape[0]
    sub_knn, where = induced_subgraph(idx, nodes)
    full = net(NeighborGraph.from_knn(pts, idx))[centers]
    part = net(NeighborGraph.from_knn(pts[nodes], sub_knn))[where[centers]]
    torch.testing.assert_close(part, full, atol=1e-6, rtol=1e-6)


def test_fused_terms_equal_separate_terms(cloud):
    pts, idx = cloud
    graph = NeighborGraph.from_knn(pts, idx)
    a, b = DescriptorNet(d=8, n_blocks=2), DescriptorNet(d=8, n_blocks=2)
    ga, gb = fused_geometric_terms([a, b], graph)
    torch.testing.assert_close(a(graph, ga), a(graph))
    torch.testing.assert_close(b(graph, gb), b(graph))


def test_neighbor_mean_equals_gather_mean_and_backward(cloud):
    pts, idx = cloud
    graph = NeighborGraph.from_knn(pts, idx)
    f = torch.randn(pts.shape[0], 5, requires_grad=True)
    out = graph.neighbor_mean(f)
    torch.testing.assert_close(out, f[idx].mean(1), atol=1e-6, rtol=1e-6)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, f, g)
    f2 = f.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(f2[idx].mean(1), f2, g)
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-6)


def test_duplicate_points_give_finite_descriptors():
    pts = torch.zeros(20, 3)
    pts[10:] = 1.0
    idx = knn_indices(pts, 4)
    out = DescriptorNet(d=8, n_blocks=1)(NeighborGraph.from_knn(pts, idx))
    assert torch.isfinite(out).all()


def test_bad_dimension():
    with pytest.raises(ValueError, match="multiple of 4"):
        DescriptorNet(d=6)


def test_decoder_shape():
    dec = ReceptiveFieldDecoder(d=8, n_points=10)
    assert dec(torch.zeros(3, 8)).shape == (3, 10, 3)
    assert len(dec.mlp) == 6  # input standardisation + 3 dense layers + 2 activations
    assert [m.out_features for m in dec.mlp if isinstance(m, torch.nn.Linear)] == [128, 128, 30]


def test_architecture_dimensions():
    net = DescriptorNet(d=64, n_blocks=4)
    block = net.blocks[0]
    assert (block.mlp_in[0].in_features, block.mlp_in[0].out_features) == (64, 16)
    assert (block.lfa1.d_lfa, block.lfa2.d_lfa) == (16, 32)
    assert (block.mlp_out[0].in_features, block.mlp_out[0].out_features) == (64, 64)
    assert net.n_hops == 8
    assert abs(net.blocks[0].mlp_in[1].negative_slope - 0.2) < 1e-12


def test_absolute_coordinates_match_naive_and_break_translation_invariance(cloud):
    pts, idx = cloud
    torch.manual_seed(5)
    net = DescriptorNet(d=8, n_blocks=2, absolute_coordinates=True)
    assert net.blocks[0].lfa1.geometric.in_features == 10
    graph = NeighborGraph.from_knn(pts, idx)
    fast = net(graph)
    torch.testing.assert_close(fast, naive_forward(net, pts, idx), atol=1e-5, rtol=1e-5)
    fast.pow(2).sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    naive_forward(net, pts, idx).pow(2).sum().backward()
    for a, b in zip(grads, [p.grad for p in net.parameters()]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    shifted = net(NeighborGraph.from_knn(pts + torch.tensor([5.0, -3.0, 2.0]), idx))
    assert (shifted - fast).abs().max() > 1e-2
    with pytest.raises(ValueError, match="geometric inputs"):
        fused_geometric_terms([net, DescriptorNet(d=8, n_blocks=2)], graph)
