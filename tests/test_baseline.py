"""The classical FPFH + memory-bank baseline."""

import pickle

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from skst3d.baseline import FPFHMemoryBankDetector, _pair_angles, fpfh_features


def _pair_features(p_s, n_s, p_t, n_t):
    """The Darboux frame built explicitly (Rusu et al.): the reference for the dot-product form."""
    diff = p_t - p_s
    direction = diff / np.linalg.norm(diff, axis=-1, keepdims=True)
    swap = np.abs((n_s * direction).sum(-1)) < np.abs((n_t * direction).sum(-1)) - 1e-7
    u = np.where(swap[..., None], n_t, n_s)
    other = np.where(swap[..., None], n_s, n_t)
    direction = np.where(swap[..., None], -direction, direction)
    v = np.cross(u, direction)
    v /= np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    w = np.cross(u, v)
    return (v * other).sum(-1), (u * direction).sum(-1), np.arctan2((w * other).sum(-1), (u * other).sum(-1))


def test_pair_features_worked_by_hand():
    # source at origin with normal +z, target at (1, 0, 0) with normal tilted 45 deg towards +x
    p_s, n_s = np.zeros(3), np.array([0.0, 0.0, 1.0])
    p_t, n_t = np.array([1.0, 0.0, 0.0]), np.array([np.sqrt(0.5), 0.0, np.sqrt(0.5)])
    # |n_s . d| = 0 < |n_t . d| = 0.707: the source becomes the target point (swap), d -> (-1, 0, 0)
    # u = n_t, v = u x d = (0, -0.707, 0) normalised = (0, -1, 0), w = u x v = (0.707, 0, -0.707)
    alpha, phi, theta = _pair_angles(p_s, n_s, p_t, n_t)
    assert alpha == pytest.approx(0.0, abs=1e-12)  # v . n_s
    assert phi == pytest.approx(-np.sqrt(0.5))  # u . d
    # theta = atan2(w . n_s, u . n_s) = atan2(-0.707, 0.707) = -pi/4
    assert theta == pytest.approx(-np.pi / 4)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@settings(deadline=None, max_examples=50)
@given(st.integers(0, 2**32 - 1))
def test_pair_angles_equal_the_explicit_darboux_frame(seed):
    rng = np.random.default_rng(seed)
    p_s, p_t = rng.normal(size=(2, 500, 3))
    n_s, n_t = _unit(rng.normal(size=(2, 500, 3)))
    expected = _pair_features(p_s, n_s, p_t, n_t)
    # away from the degenerate frame (normal along the connecting line) and theta's branch cut
    direction = _unit(p_t - p_s)
    regular = np.maximum(np.abs((n_s * direction).sum(-1)), np.abs((n_t * direction).sum(-1))) < 0.999
    regular &= np.abs(np.abs(expected[2]) - np.pi) > 1e-9
    for got, want in zip(_pair_angles(p_s.T, n_s.T, p_t.T, n_t.T), expected):  # coordinates first
        np.testing.assert_allclose(got[regular], want[regular], atol=1e-9)


def test_fpfh_features_equal_a_point_by_point_computation():
    # FPFH by its definition, one point at a time: brute-force neighbours, PCA normal towards
    # +z, the explicit frame, np.histogram per angle, the inverse-distance-weighted SPFH mean
    rng = np.random.default_rng(5)
    xy = rng.uniform(-1, 1, size=(150, 2))
    points = np.c_[xy, 0.3 * np.sin(2 * xy[:, 0]) + 0.05 * rng.normal(size=150)]
    k_normals, k_features, n_bins = 8, 10, 5
    order = np.argsort(((points[:, None] - points[None]) ** 2).sum(-1), axis=1, kind="stable")
    normals = []
    for i in range(len(points)):
        patch = points[order[i, : k_normals + 1]]
        normal = np.linalg.eigh(np.cov(patch.T))[1][:, 0]
        normals.append(normal if normal[2] >= 0 else -normal)
    normals = np.array(normals)
    ranges = [(-1, 1), (-1, 1), (-np.pi, np.pi)]
    spfh = []
    for i in range(len(points)):
        near = order[i, 1 : k_features + 1]
        angles = _pair_features(points[i], normals[i], points[near], normals[near])
        spfh.append(np.concatenate([np.histogram(a, n_bins, r)[0] for a, r in zip(angles, ranges)]) / k_features)
    spfh = np.array(spfh)
    expected = []
    for i in range(len(points)):
        near = order[i, 1 : k_features + 1]
        weights = 1 / np.linalg.norm(points[near] - points[i], axis=1)
        expected.append(spfh[i] + weights @ spfh[near] / weights.sum())
    got = fpfh_features(points, k_normals=k_normals, k_features=k_features, n_bins=n_bins)
    np.testing.assert_allclose(got, np.array(expected), atol=1e-6)


def test_fpfh_blocks_on_threads_give_the_same_features():
    from skst3d.baseline import _FPFH_BLOCK, _fpfh_and_neighbours

    rng = np.random.default_rng(6)
    xy = rng.uniform(-1, 1, size=(_FPFH_BLOCK + 1500, 2))
    points = np.c_[xy, np.sin(3 * xy[:, 0]) * 0.2]
    one, idx_one = _fpfh_and_neighbours(points, 16, 32, 11, (0.0, 0.0, 1.0), workers=1)
    two, idx_two = _fpfh_and_neighbours(points, 16, 32, 11, (0.0, 0.0, 1.0), workers=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(idx_one, idx_two)


def test_flat_plane_histograms_concentrate():
    rng = np.random.default_rng(0)
    plane = np.c_[rng.uniform(size=(400, 2)), np.zeros(400)]
    f = fpfh_features(plane, k_normals=10, k_features=10, n_bins=5)
    # on a plane every pair has alpha = phi = theta = 0: all mass in the middle bins
    centre = f.reshape(-1, 3, 5)[:, :, 2]
    np.testing.assert_allclose(centre, 2.0, atol=1e-6)  # SPFH (1) + weighted neighbour mean (1)


def test_bump_scores_higher_than_plane():
    rng = np.random.default_rng(0)

    def plate(bump):
        xy = rng.uniform(-1, 1, size=(1500, 2))
        z = 0.01 * rng.normal(size=1500)
        if bump:
            z = z + 0.25 * np.exp(-(xy ** 2).sum(1) / 0.02)
        return np.c_[xy, z]

    det = FPFHMemoryBankDetector(k_normals=12, k_features=16).fit([plate(False) for _ in range(3)])
    test = plate(True)
    anomaly = -det.score_samples([test])[0]
    inside = (test[:, :2] ** 2).sum(1) < 0.02
    assert anomaly[inside].mean() > 3 * anomaly[~inside].mean()
    assert det.predict([test])[0][inside].tolist().count(-1) > 0


def test_memory_size_and_pickle():
    rng = np.random.default_rng(1)
    clouds = [rng.normal(size=(200, 3)) for _ in range(2)]
    det = FPFHMemoryBankDetector(k_normals=8, k_features=8, memory_size=50, random_state=0).fit(clouds)
    assert det.memory_bank_.shape[0] == 50
    loaded = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(loaded.score_samples(clouds)[0], det.score_samples(clouds)[0])


def test_y_filters_training_clouds():
    rng = np.random.default_rng(2)
    clouds = [rng.normal(size=(100, 3)) for _ in range(2)]
    y = [np.zeros(100, int), np.ones(100, int)]
    det = FPFHMemoryBankDetector(k_normals=8, k_features=8).fit(clouds, y)
    assert det.memory_bank_.shape[0] == 100


def test_smoothing_averages_nearest_bank_distances_and_keeps_the_offset_calibrated():
    rng = np.random.default_rng(3)
    clouds = [rng.normal(size=(300, 3)).astype(np.float32) for _ in range(3)]
    test = rng.normal(size=(250, 3)).astype(np.float32)  # the detector works in float32
    params = dict(k_normals=8, k_features=8, contamination=0.1)
    raw = FPFHMemoryBankDetector(**params).fit(clouds)
    smooth = FPFHMemoryBankDetector(**params, smoothing=1).fit(clouds)
    # by hand: the nearest bank distance of every point, by brute force, then averaged
    features = fpfh_features(test, k_normals=8, k_features=8)
    nearest = np.sqrt(((features[:, None, :] - raw.memory_bank_[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(-raw.score_samples([test])[0], nearest, rtol=1e-5)
    order = np.argsort(((test[:, None] - test[None]) ** 2).sum(-1), axis=1, kind="stable")[:, :9]
    np.testing.assert_allclose(-smooth.score_samples([test])[0], nearest[order].mean(1), rtol=1e-5)
    # the offset is the 10 % quantile of minus the smoothed leave-one-out distances
    bank = smooth.memory_bank_.astype(np.float64)
    leave_one_out, start = [], 0
    for cloud in clouds:
        distances = np.sqrt(((bank[start:start + 300, None] - bank[None]) ** 2).sum(-1))
        distances[np.arange(300), start + np.arange(300)] = np.inf  # not itself
        order = np.argsort(((cloud[:, None] - cloud[None]) ** 2).sum(-1), axis=1, kind="stable")[:, :9]
        leave_one_out.append(distances.min(1)[order].mean(1))
        start += 300
    assert smooth.offset_ == pytest.approx(np.quantile(-np.concatenate(leave_one_out), 0.1), rel=1e-5)


# Open3DFPFHDetector: BTF's recipe on Open3D (the tests skip cleanly without open3d).


def _require_open3d():
    # An installed wheel without its system library (libusb-1.0) fails to import with a plain
    # ImportError, which importorskip does not skip by default.
    pytest.importorskip("open3d", exc_type=ImportError, reason="open3d cannot be imported here")


def _bumpy_plane(rng, bump, n=3000):
    xy = rng.uniform(-1, 1, size=(n, 2))
    z = 0.002 * rng.normal(size=n)
    if bump:
        z = z + 0.15 * np.exp(-(xy**2).sum(1) / 0.01)
    return np.c_[xy, z]


def test_open3d_detector_bump_on_a_plane_scores_highest():
    _require_open3d()
    from skst3d.baseline import Open3DFPFHDetector

    rng = np.random.default_rng(0)
    det = Open3DFPFHDetector(voxel_ratio=2.0).fit([_bumpy_plane(rng, False) for _ in range(3)])
    test = _bumpy_plane(rng, True)
    anomaly = -det.score_samples([test])[0]
    inside = (test[:, :2] ** 2).sum(1) < 0.02
    assert det.voxel_size_ > 0 and det.memory_bank_.shape[1] == 33
    assert anomaly[inside].mean() > 3 * anomaly[~inside].mean()
    # the highest-scoring points lie on the bump, and predict flags some of it, little else
    assert inside[np.argsort(anomaly)[-20:]].all()
    flagged = det.predict([test])[0] == -1
    assert flagged[inside].any() and flagged[~inside].mean() < 0.05
    assert det.predict_clouds([test])[0] == -1


def test_open3d_detector_lengths_order_and_pickle():
    _require_open3d()
    import pickle

    from skst3d.baseline import Open3DFPFHDetector

    rng = np.random.default_rng(1)
    train = [_bumpy_plane(rng, False, n) for n in (1500, 1800)]
    det = Open3DFPFHDetector(voxel_ratio=2.0, random_state=0).fit(train)
    tests = [_bumpy_plane(rng, True, 1200), _bumpy_plane(rng, False, 900).astype(np.float32)]
    scores = det.score_samples(tests)
    assert [s.shape for s in scores] == [(1200,), (900,)]
    # scores follow the input order: a permuted cloud gets permuted scores
    perm = rng.permutation(1200)
    np.testing.assert_allclose(det.score_samples([tests[0][perm]])[0], scores[0][perm], rtol=1e-4, atol=1e-4)
    assert [d.shape for d in det.decision_function(tests)] == [(1200,), (900,)]
    assert det.score_clouds(tests).shape == (2,)
    loaded = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(loaded.score_samples(tests)[0], scores[0])


def test_open3d_detector_bank_size_voxel_size_and_y():
    _require_open3d()
    from skst3d.baseline import Open3DFPFHDetector

    rng = np.random.default_rng(2)
    clouds = [_bumpy_plane(rng, False, 1000) for _ in range(2)]
    det = Open3DFPFHDetector(voxel_size=0.1, memory_size=50, random_state=0).fit(clouds)
    assert det.voxel_size_ == 0.1 and det.memory_bank_.shape == (50, 33)
    y = [np.zeros(1000, int), np.r_[1, np.zeros(999, int)]]
    one = Open3DFPFHDetector(voxel_size=0.1).fit(clouds, y)
    alone = Open3DFPFHDetector(voxel_size=0.1).fit(clouds[:1])
    np.testing.assert_array_equal(one.memory_bank_, alone.memory_bank_)
    # the default voxel is voxel_ratio times the mean nearest-neighbour distance of the training points
    from scipy.spatial import cKDTree

    spacing = np.mean([cKDTree(c).query(c, 2)[0][:, 1].mean() for c in clouds])
    auto = Open3DFPFHDetector(voxel_ratio=1.5).fit(clouds)
    assert auto.voxel_size_ == pytest.approx(1.5 * spacing, rel=1e-5)


@pytest.mark.parametrize("params", [dict(voxel_size=-1.0), dict(voxel_ratio=0), dict(n_neighbors=0),
                                    dict(max_nn_normals=2), dict(contamination=0.7), dict(normal_radius="big")])
def test_open3d_detector_validates_parameters(params):
    from skst3d.baseline import Open3DFPFHDetector

    with pytest.raises(ValueError):  # sklearn's InvalidParameterError, before open3d is needed
        Open3DFPFHDetector(**params).fit([np.random.default_rng(0).normal(size=(100, 3))])


def test_open3d_detector_says_how_to_install(monkeypatch):
    import sys

    from skst3d.baseline import Open3DFPFHDetector

    monkeypatch.setitem(sys.modules, "open3d", None)  # import open3d raises ImportError
    with pytest.raises(ImportError, match=r"pip install skst3d\[open3d\]"):
        Open3DFPFHDetector().fit([np.random.default_rng(0).normal(size=(100, 3))])


def test_open3d_detector_docstring_example_runs():
    _require_open3d()
    import doctest

    from skst3d import baseline

    source = baseline.Open3DFPFHDetector.__doc__.replace("  # doctest: +SKIP", "")
    test = doctest.DocTestParser().get_doctest(source, {}, "Open3DFPFHDetector", None, 0)
    result = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS).run(test)
    assert result.failed == 0 and result.attempted >= 4


@pytest.mark.parametrize("sampling", ["farthest", "random"])
def test_n_points_scores_every_input_point_from_a_sample(sampling):
    from scipy.spatial import cKDTree

    from skst3d._graph import sample_rows
    from skst3d.baseline import FPFHMemoryBankDetector

    rng = np.random.default_rng(3)
    clouds = [np.c_[rng.uniform(size=(600, 2)) * 10, rng.normal(scale=0.01, size=600)] for _ in range(3)]
    full = FPFHMemoryBankDetector(k_normals=8, k_features=8).fit(clouds[:2])
    sampled = FPFHMemoryBankDetector(k_normals=8, k_features=8, n_points=0.5, sampling=sampling).fit(clouds[:2])
    (scores,) = sampled.score_samples(clouds[2:])
    assert scores.shape == (600,) and len(sampled.memory_bank_) == 600  # half of each training cloud
    # every input point takes the score of its nearest sampled point, whose score is the bank distance
    rows = sample_rows(clouds[2], 0.5, seed=0, method=sampling)
    assert len(np.unique(rows)) == 300
    if sampling == "random":  # a seeded uniform subset, in increasing order
        np.testing.assert_array_equal(rows, np.sort(np.random.default_rng(0).choice(600, 300, replace=False)))
    on_sample = FPFHMemoryBankDetector(k_normals=8, k_features=8).fit(
        [c[sample_rows(c, 0.5, seed=0, method=sampling)] for c in clouds[:2]]).score_samples([clouds[2][rows]])[0]
    nearest = cKDTree(clouds[2][rows]).query(clouds[2])[1]
    np.testing.assert_allclose(scores, on_sample[nearest], rtol=1e-6)
    assert full.score_samples(clouds[2:])[0].shape == (600,)


def test_centroid_orientation_points_normals_outwards_on_a_closed_surface():
    # A sphere scanned all around: towards +z half the normals point inwards (the lower half),
    # away from the centroid all point outwards, so a point's histogram no longer depends on
    # which half of the part it lies on.
    from scipy.spatial import cKDTree

    from skst3d.baseline import _normals

    points = np.random.default_rng(0).normal(size=(2000, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    neighbours = cKDTree(points).query(points, 17)[1][:, 1:]
    outwards = _normals(points, neighbours, "centroid")
    assert np.all(np.einsum("ni,ni->n", outwards, points) > 0.9)
    up = _normals(points, neighbours, np.array([0.0, 0.0, 1.0]))
    lower = points[:, 2] < -0.2
    assert np.all(np.einsum("ni,ni->n", up[lower], points[lower]) < 0)
    bottom, top = points[:, 2] < -0.5, points[:, 2] > 0.5
    # same shape everywhere: the two caps' mean histograms differ only by sampling noise once
    # normals point outwards (measured 0.09 in one bin), by whole bins towards +z (1.09)
    caps = {}
    for view in ("centroid", (0.0, 0.0, 1.0)):
        features = fpfh_features(points, view_direction=view)
        caps[view] = np.abs(features[bottom].mean(0) - features[top].mean(0)).max()
    assert caps["centroid"] < 0.2 < 0.8 < caps[(0.0, 0.0, 1.0)]
    FPFHMemoryBankDetector(view_direction="centroid").fit([points, points[::-1]])


def test_sampling_keeps_enough_points_for_the_neighbourhoods_and_old_pickles_score():
    from skst3d.baseline import FPFHMemoryBankDetector

    rng = np.random.default_rng(8)
    clouds = [np.c_[rng.uniform(size=(200, 2)), rng.normal(scale=0.01, size=200)] for _ in range(2)]
    det = FPFHMemoryBankDetector(k_normals=8, k_features=8, n_points=0.5, sampling="random").fit(clouds)
    small = clouds[0][:40]  # half of it, 20 points, would do; 0.5 of 16 would not (9 needed)
    assert det.score_samples([small[:16]])[0].shape == (16,)
    assert det.score_samples([small])[0].shape == (40,)
    # a detector pickled before `sampling` existed: farthest point sampling, as it was fitted
    old = pickle.loads(pickle.dumps(det))
    del old.__dict__["sampling"]
    revived = pickle.loads(pickle.dumps(old))
    assert revived.sampling == "farthest" and revived.score_samples([small])[0].shape == (40,)
