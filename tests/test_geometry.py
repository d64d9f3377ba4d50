"""Tests for skst3d.geometry against brute-force numpy references."""

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skst3d import _keops
from skst3d.geometry import (
    _fps_blocked,
    _fps_torch,
    chamfer_distance,
    farthest_point_sampling,
    knn_graph,
    mean_knn_distance,
    random_rotation,
    receptive_fields,
)

# KeOps compiles one binary per formula (7-10 s on a cold cache): its tests use one k and float32.
KEOPS_K = 8
CPU_BACKENDS = ["kdtree", "torch", "keops"]


@pytest.fixture(scope="module")
def keops_ok():
    if not _keops.keops_available("cpu"):
        pytest.skip("KeOps cannot compile or run on this machine")


def _skip_keops_unless_available(backend, request):
    if backend == "keops":
        request.getfixturevalue("keops_ok")


# ----------------------------------------------------------------------------- references


def brute_knn(points, k):
    """Exact kNN in float64, self excluded by index; returns (idx, dist) sorted by distance."""
    p = np.asarray(points, dtype=np.float64)
    d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def assert_valid_knn(points, k, idx, dist, rtol=1e-5):
    """idx/dist form a correct kNN answer: equal to brute force up to exact distance ties."""
    p = np.asarray(points, dtype=np.float64)
    idx = idx.cpu().numpy()
    dist = dist.cpu().numpy().astype(np.float64)
    n = len(p)
    assert idx.shape == dist.shape == (n, k)
    assert idx.dtype == np.int64
    ref_idx, ref_dist = brute_knn(p, k)
    atol = rtol * max(1.0, float(np.abs(p).max()))
    rows = np.arange(n)[:, None]
    # no self by index, no repeated neighbour, in range
    assert not (idx == rows).any()
    assert all(len(set(r)) == k for r in idx)
    assert idx.min() >= 0 and idx.max() < n
    # returned distances are the true distances of the returned points, ascending
    true = np.sqrt(((p[idx] - p[:, None, :]) ** 2).sum(-1))
    np.testing.assert_allclose(dist, true, rtol=rtol, atol=atol)
    assert (np.diff(dist, axis=1) >= -atol).all()
    # and they are the k smallest: any set with these distances is a valid answer under ties
    np.testing.assert_allclose(dist, ref_dist, rtol=rtol, atol=atol)
    # where the k-th and (k+1)-th distances are clearly apart, the sets match exactly
    if n > k + 1:
        d_all = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
        np.fill_diagonal(d_all, np.inf)
        kth = np.sort(d_all, axis=1)[:, k - 1 : k + 1]
        clear = kth[:, 1] - kth[:, 0] > 1e-4 * (1 + kth[:, 1])
        for i in np.flatnonzero(clear):
            assert set(idx[i]) == set(ref_idx[i]), f"row {i}"


def brute_chamfer(pred, target):
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return d.min(axis=1).mean() + d.min(axis=0).mean()


def brute_fps(points, n_samples, first):
    """The plain algorithm, in the input dtype with the library's operation order."""
    p = np.asarray(points)
    mind = np.full(len(p), np.inf, dtype=p.dtype)
    out = [first]
    i = first
    for _ in range(n_samples - 1):
        dx, dy, dz = (p[:, a] - p[i, a] for a in range(3))
        d = dx * dx
        d += dy * dy
        d += dz * dz
        mind = np.minimum(mind, d)
        mind[out] = -1
        i = int(np.argmax(mind))  # first maximum: lowest index
        out.append(i)
    return np.array(out)


def brute_receptive_field(knn, center, n_hops):
    field = {center}
    frontier = {center}
    for _ in range(n_hops):
        frontier = {int(q) for p in frontier for q in knn[p]} - field
        field |= frontier
    return sorted(field)


def surface(n, seed=0, dtype=torch.float32):
    """Points on a wavy surface, as real scans are (no exact ties)."""
    g = np.random.default_rng(seed)
    uv = g.random((n, 2))
    z = 0.1 * np.sin(6 * uv[:, 0]) * np.cos(4 * uv[:, 1])
    return torch.from_numpy(np.column_stack([uv, z])).to(dtype)


# ----------------------------------------------------------------------------- knn_graph


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_knn_graph_matches_brute_force(backend, request):
    _skip_keops_unless_available(backend, request)
    points = surface(600, seed=1)
    idx, dist = knn_graph(points, KEOPS_K, backend=backend)
    assert dist.dtype == torch.float32 and idx.device == points.device
    assert_valid_knn(points, KEOPS_K, idx, dist)


@pytest.mark.parametrize("backend", ["kdtree", "torch"])
def test_knn_graph_float64(backend):
    points = surface(300, seed=2, dtype=torch.float64) * 1e-3  # small scale: precision matters
    idx, dist = knn_graph(points, 5, backend=backend)
    assert dist.dtype == torch.float64
    assert_valid_knn(points, 5, idx, dist, rtol=1e-10)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_knn_graph_duplicates(backend, request):
    """More than k copies of a point: the row's own index is still never returned."""
    _skip_keops_unless_available(backend, request)
    g = np.random.default_rng(3)
    base = g.random((40, 3)).astype(np.float32)
    points = np.concatenate([base, np.repeat(base[:1], 12, axis=0), base[5:8]])  # 13 copies of point 0
    points = torch.from_numpy(g.permutation(points))
    idx, dist = knn_graph(points, KEOPS_K, backend=backend)
    assert_valid_knn(points, KEOPS_K, idx, dist)
    copies = (points == torch.from_numpy(base[0])).all(1)
    assert int(copies.sum()) == 13
    assert (dist[copies] == 0).all()


@settings(deadline=None, max_examples=30)
@given(
    n=st.integers(3, 40),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    grid=st.booleans(),
    backend=st.sampled_from(["kdtree", "torch"]),
)
def test_knn_graph_property(n, k, seed, grid, backend):
    """Random sizes, and integer grids full of exact ties and duplicates."""
    k = min(k, n - 1)
    g = np.random.default_rng(seed)
    coords = g.integers(0, 3, (n, 3)) if grid else g.normal(size=(n, 3))
    points = torch.from_numpy(coords.astype(np.float32))
    idx, dist = knn_graph(points, k, backend=backend)
    assert_valid_knn(points, k, idx, dist)


def test_knn_graph_errors():
    points = torch.rand(5, 3)
    with pytest.raises(ValueError, match=r"k \+ 1 = 6 .*k = 5.*n = 5"):
        knn_graph(points, 5)
    with pytest.raises(ValueError, match="backend must be one of"):
        knn_graph(points, 2, backend="faiss")
    with pytest.raises(ValueError, match="k must be an integer"):
        knn_graph(points, 0)
    with pytest.raises(ValueError, match="shape"):
        knn_graph(torch.rand(5, 2), 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        knn_graph(torch.ones(5, 3, dtype=torch.int64), 2)
    bad = points.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="point 3"):
        knn_graph(bad, 2)


def test_knn_graph_accepts_numpy_and_grad_tensors():
    points = surface(50, seed=4).requires_grad_()
    idx, dist = knn_graph(points, 3)
    idx_np, _ = knn_graph(points.detach().numpy(), 3)
    assert torch.equal(idx, idx_np)
    assert not dist.requires_grad


# ----------------------------------------------------------------------------- chamfer


def _chamfer_case(seed, dtype=torch.float32, sizes=(7, 1, 12), m=5):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(len(sizes), m, 3, generator=g, dtype=dtype)
    targets = [torch.randn(s, 3, generator=g, dtype=dtype) for s in sizes]
    return pred, targets


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_chamfer_matches_brute_force(backend, request):
    _skip_keops_unless_available(backend, request)
    pred, targets = _chamfer_case(0)
    cd = chamfer_distance(pred, targets, backend=backend)
    expected = [brute_chamfer(p, t) for p, t in zip(pred, targets)]
    assert cd.shape == (3,) and cd.dtype == torch.float32
    np.testing.assert_allclose(cd.numpy(), expected, rtol=1e-5)


def test_chamfer_list_and_flat_forms_agree():
    pred, targets = _chamfer_case(1, dtype=torch.float64)
    flat = torch.cat(targets)
    offsets = torch.tensor([0, 7, 8, 20])
    a = chamfer_distance(pred, targets)
    b = chamfer_distance(pred, flat, offsets)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    expected = [brute_chamfer(p, t) for p, t in zip(pred, targets)]
    np.testing.assert_allclose(a.numpy(), expected, rtol=1e-12)


def test_chamfer_gradcheck():
    pred, targets = _chamfer_case(2, dtype=torch.float64, sizes=(3, 6), m=4)
    flat = torch.cat(targets).requires_grad_()
    offsets = torch.tensor([0, 3, 9])
    pred.requires_grad_()
    assert torch.autograd.gradcheck(lambda p, t: chamfer_distance(p, t, offsets), (pred, flat))


@pytest.mark.parametrize("backend", ["torch", "keops"])
def test_chamfer_gradient_matches_autograd_through_cdist(backend, request):
    _skip_keops_unless_available(backend, request)
    pred, targets = _chamfer_case(3, sizes=(30, 50), m=20)
    pred.requires_grad_()
    chamfer_distance(pred, targets, backend=backend).sum().backward()
    ref = pred.detach().clone().requires_grad_()
    total = 0
    for p, t in zip(ref, targets):
        d = torch.cdist(p, t, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        total = total + d.min(1).values.mean() + d.min(0).values.mean()
    total.backward()
    torch.testing.assert_close(pred.grad, ref.grad, rtol=1e-4, atol=1e-6)


def test_chamfer_chunks_bound_memory(monkeypatch):
    """Many pairs split over several cdist chunks give the same answer."""
    import skst3d.geometry as geometry

    pred, targets = _chamfer_case(4, dtype=torch.float64, sizes=(9, 4, 11, 2, 8), m=6)
    whole = chamfer_distance(pred, targets)
    monkeypatch.setattr(geometry, "_TORCH_BLOCK_ELEMENTS", 1)
    torch.testing.assert_close(chamfer_distance(pred, targets), whole, rtol=0, atol=0)


def test_chamfer_errors():
    pred, targets = _chamfer_case(5)
    with pytest.raises(ValueError, match="shape \\(B, m, 3\\)"):
        chamfer_distance(pred[0], targets)
    with pytest.raises(ValueError, match="3 predictions"):
        chamfer_distance(pred, targets[:2])
    with pytest.raises(ValueError, match="needs offsets"):
        chamfer_distance(pred, torch.cat(targets))
    with pytest.raises(ValueError, match="end at len"):
        chamfer_distance(pred, torch.cat(targets), torch.tensor([0, 7, 8, 19]))
    with pytest.raises(ValueError, match="target set 1 is empty"):
        chamfer_distance(pred, torch.cat(targets), torch.tensor([0, 8, 8, 20]))
    with pytest.raises(ValueError, match="backend"):
        chamfer_distance(pred, targets, backend="kdtree")


# ----------------------------------------------------------------------------- FPS


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(1, 700),
    frac=st.floats(0.05, 1.2),
    seed=st.integers(0, 2**16),
    grid=st.booleans(),
    double=st.booleans(),
)
def test_fps_equals_plain_algorithm(n, frac, seed, grid, double):
    """Blocked CPU FPS and the torch loop both equal the plain algorithm, ties included."""
    g = np.random.default_rng(seed)
    coords = g.integers(0, 4, (n, 3)) if grid else g.normal(size=(n, 3))
    coords = coords.astype(np.float64 if double else np.float32)
    m = max(1, min(n, int(frac * n)))
    first = int(g.integers(n))
    expected = brute_fps(coords, m, first)
    np.testing.assert_array_equal(_fps_blocked(coords, m, first, block=16), expected)
    np.testing.assert_array_equal(_fps_torch(torch.from_numpy(coords), m, first).numpy(), expected)


def test_fps_each_pick_is_farthest():
    points = surface(400, seed=6, dtype=torch.float64)
    idx = farthest_point_sampling(points, 60, random_state=0).numpy()
    p = points.numpy()
    assert len(set(idx)) == 60
    for s in range(1, 60):
        d = np.sqrt(((p[:, None, :] - p[idx[:s]][None]) ** 2).sum(-1)).min(1)
        assert d[idx[s]] == pytest.approx(d.max(), rel=1e-12)


def test_fps_random_state():
    points = surface(500, seed=7)
    a = farthest_point_sampling(points, 20, random_state=3)
    assert torch.equal(a, farthest_point_sampling(points, 20, random_state=3))
    assert int(a[0]) == np.random.RandomState(3).randint(500)
    b = farthest_point_sampling(points, 20, random_state=np.random.default_rng(3))
    assert int(b[0]) == np.random.default_rng(3).integers(500)
    c = farthest_point_sampling(points, 20, random_state=np.random.RandomState(3))
    assert torch.equal(a, c)
    assert a.dtype == torch.int64


def test_fps_all_points_with_duplicates():
    points = torch.tensor([[0.0, 0, 0]] * 4 + [[1.0, 0, 0]] * 3)
    idx = farthest_point_sampling(points, 50, random_state=0)
    assert sorted(idx.tolist()) == list(range(7))
    assert idx[0] == np.random.RandomState(0).randint(7)


def test_fps_errors():
    with pytest.raises(ValueError, match="n_samples"):
        farthest_point_sampling(torch.rand(5, 3), 0)
    with pytest.raises(ValueError, match="empty"):
        farthest_point_sampling(torch.rand(0, 3), 1)


# ----------------------------------------------------------------------------- receptive fields


@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(1, 30),
    k=st.integers(1, 4),
    n_hops=st.integers(0, 5),
    seed=st.integers(0, 2**16),
    n_centers=st.integers(0, 6),
)
def test_receptive_fields_equal_bfs(n, k, n_hops, seed, n_centers):
    g = np.random.default_rng(seed)
    knn = g.integers(0, n, (n, k))
    centers = g.integers(0, n, n_centers)
    indices, offsets = receptive_fields(torch.from_numpy(knn), torch.from_numpy(centers), n_hops)
    assert indices.dtype == offsets.dtype == torch.int64
    assert offsets.shape == (n_centers + 1,) and offsets[0] == 0 and offsets[-1] == len(indices)
    for b, c in enumerate(centers):
        field = indices[offsets[b] : offsets[b + 1]].tolist()
        assert field == brute_receptive_field(knn, int(c), n_hops)


def test_receptive_fields_on_knn_graph():
    points = surface(2000, seed=8)
    knn, _ = knn_graph(points, 6)
    centers = torch.tensor([0, 17, 1999, 17])
    indices, offsets = receptive_fields(knn, centers, 3)
    for b, c in enumerate(centers.tolist()):
        assert indices[offsets[b] : offsets[b + 1]].tolist() == brute_receptive_field(knn.numpy(), c, 3)


def test_receptive_fields_max_points():
    points = surface(3000, seed=9)
    knn, _ = knn_graph(points, 8)
    centers = torch.tensor([5, 100, 2000])
    full, full_off = receptive_fields(knn, centers, 4)
    small = [2000] + [int(s) for s in full_off.diff()]
    limit = min(small) - 3  # some fields larger than the limit
    idx, off = receptive_fields(knn, centers, 4, max_points=limit, random_state=0)
    again, _ = receptive_fields(knn, centers, 4, max_points=limit, random_state=0)
    assert torch.equal(idx, again)
    for b, c in enumerate(centers.tolist()):
        field = idx[off[b] : off[b + 1]]
        whole = set(full[full_off[b] : full_off[b + 1]].tolist())
        assert len(field) == min(limit, len(whole))
        assert c in field.tolist()
        assert set(field.tolist()) <= whole
        assert (field.diff() > 0).all()
    other, _ = receptive_fields(knn, centers, 4, max_points=limit, random_state=1)
    assert not torch.equal(idx, other)
    # fields already within the limit are untouched
    same, same_off = receptive_fields(knn, centers, 4, max_points=10**6, random_state=0)
    assert torch.equal(same, full) and torch.equal(same_off, full_off)


def test_receptive_fields_errors():
    knn = torch.tensor([[1], [0]])
    with pytest.raises(ValueError, match=r"centers must lie in \[0, 2\)"):
        receptive_fields(knn, [2], 1)
    with pytest.raises(ValueError, match="n_hops"):
        receptive_fields(knn, [0], -1)
    with pytest.raises(ValueError, match="max_points"):
        receptive_fields(knn, [0], 1, max_points=0)
    with pytest.raises(ValueError, match="knn_indices must lie"):
        receptive_fields(torch.tensor([[1], [5]]), [0], 1)


# ----------------------------------------------------------------------------- mean kNN distance


def test_mean_knn_distance_equation_4():
    g = np.random.default_rng(10)
    clouds = [g.normal(size=(n, 3)) for n in (30, 55, 12)]
    k = 4
    total = sum(brute_knn(c, k)[1].sum() for c in clouds)
    expected = total / (k * sum(len(c) for c in clouds))
    assert mean_knn_distance(clouds, k) == pytest.approx(expected, rel=1e-12)
    tensors = [torch.from_numpy(c).float() for c in clouds]
    assert mean_knn_distance(tensors, k, backend="torch") == pytest.approx(expected, rel=1e-5)


def test_mean_knn_distance_errors():
    with pytest.raises(ValueError, match=r"clouds\[1\] has 3 points; k \+ 1 = 4"):
        mean_knn_distance([np.zeros((10, 3)), np.zeros((3, 3))], 3)
    with pytest.raises(ValueError, match="list of point clouds"):
        mean_knn_distance(np.zeros((10, 3)), 3)
    with pytest.raises(ValueError, match="empty"):
        mean_knn_distance([], 3)


# ----------------------------------------------------------------------------- KeOps plumbing


def test_keops_first_run_is_logged(keops_ok, caplog):
    import logging

    _keops._seen_formulas.discard(("nearest", "float32", "cpu"))
    with caplog.at_level(logging.INFO, logger="skst3d"):
        x = torch.rand(10, 3)
        _keops.nearest_indices(x, x)
        _keops.nearest_indices(x, x)
    messages = [r.getMessage() for r in caplog.records if "KeOps formula nearest" in r.getMessage()]
    assert len(messages) == 1 and _keops.build_folder() in messages[0]


def test_slow_first_run_is_a_warning_fast_one_info(monkeypatch, caplog):
    import logging

    monkeypatch.setattr(_keops, "_COMPILE_NOTICE_SECONDS", 0.05)
    with caplog.at_level(logging.INFO, logger="skst3d"):
        _keops._run_logged(("test", "slow"), lambda: time.sleep(0.1))
        _keops._run_logged(("test", "fast"), lambda: None)
        _keops._run_logged(("test", "slow"), lambda: time.sleep(0.1))  # second run: silent
    levels = {r.getMessage().split()[2]: r.levelno for r in caplog.records if "formula test/" in r.getMessage()}
    assert levels == {"test/slow": logging.WARNING, "test/fast": logging.INFO}


def test_keops_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("KEOPS_CACHE_FOLDER", str(tmp_path))
    assert _keops.build_folder().startswith(str(tmp_path))
    assert "pykeops-" in _keops.build_folder()
    monkeypatch.delenv("KEOPS_CACHE_FOLDER")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _keops.cache_root() == str(tmp_path / "xdg" / "skst3d" / "keops")


def test_importing_skst3d_does_not_import_pykeops():
    import subprocess
    import sys

    code = "import sys, skst3d, skst3d.geometry; print('pykeops' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
def test_cuda_keops_matches_kdtree():
    points = surface(20_000, seed=11)
    idx_ref, dist_ref = knn_graph(points, 32, backend="kdtree")
    idx, dist = knn_graph(points.cuda(), 32, backend="keops")
    assert idx.is_cuda and dist.is_cuda
    torch.testing.assert_close(dist.cpu(), dist_ref, rtol=1e-5, atol=1e-6)
    same = (idx.cpu().sort(1).values == idx_ref.sort(1).values).all(1)
    assert same.float().mean() > 0.999  # the rest differ only at exact ties
    assert_valid_knn(points[:2000], 8, *knn_graph(points[:2000].cuda(), 8, backend="auto"))


@pytest.mark.cuda
def test_cuda_chamfer_fps_receptive_fields():
    pred, targets = _chamfer_case(12, sizes=(300, 40, 1000), m=64)
    cpu = chamfer_distance(pred, targets, backend="torch")
    gpu = chamfer_distance(pred.cuda(), [t.cuda() for t in targets], backend="keops")
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-6)
    points = surface(5000, seed=13)
    gpu_idx = farthest_point_sampling(points.cuda(), 200, random_state=0)
    assert gpu_idx.is_cuda and len(set(gpu_idx.tolist())) == 200
    assert gpu_idx[0] == farthest_point_sampling(points, 1, random_state=0)[0]
    # GPU rounding (fused multiply-add) may break near-ties differently: check the property.
    p, idx = points.double().numpy(), gpu_idx.cpu().numpy()
    for s in range(1, 200, 7):
        d = np.sqrt(((p[:, None, :] - p[idx[:s]][None]) ** 2).sum(-1)).min(1)
        assert d[idx[s]] == pytest.approx(d.max(), rel=1e-5)
    knn, _ = knn_graph(points, 8)
    a = receptive_fields(knn, [0, 9], 3)
    b = receptive_fields(knn.cuda(), [0, 9], 3)
    assert all(torch.equal(x, y.cpu()) for x, y in zip(a, b))


@settings(deadline=None, max_examples=40)
@given(max_degrees=st.floats(0.0, 360.0), seed=st.integers(0, 2**31 - 1))
def test_random_rotation_is_a_rotation_within_the_bound(max_degrees, seed):
    rotation = random_rotation(max_degrees, random_state=seed)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
    assert angle <= min(max_degrees, 180.0) + 1e-6


def test_uniform_rotations_average_to_zero():
    # Under the Haar measure E[R] = 0; a bounded angle keeps the mean near the identity.
    rng = np.random.default_rng(0)
    uniform = np.mean([random_rotation(180.0, rng) for _ in range(4000)], axis=0)
    assert np.abs(uniform).max() < 0.05
    small = np.mean([random_rotation(10.0, rng) for _ in range(500)], axis=0)
    assert np.trace(small) > 2.95
    with pytest.raises(ValueError, match="max_degrees"):
        random_rotation(-1.0)
