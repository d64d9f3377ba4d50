"""skst3d.defects: cloud scores and threshold, defect regions, the point-spacing check; the mixin's methods."""

import copy
import json
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from skst3d import StudentTeacherDetector
from sklearn.exceptions import NotFittedError

from skst3d.defects import (
    CLOUD_MARGIN,
    CLOUD_TAIL,
    FUSED_CLOUD_MARGIN,
    DefectRegion,
    PointSpacingWarning,
    check_point_spacing,
    cloud_scores,
    cloud_threshold,
    find_defects,
    point_spacing,
    threshold_from_percentiles,
)

FAR = np.array([5e5, 5.4e6, 0.0])  # millimetres far from the origin, as survey-referenced scans are


def grid(n=30, pitch=1.0, seed=0, noise=0.0):
    xx, yy = np.meshgrid(np.arange(n) * pitch, np.arange(n) * pitch)
    points = np.c_[xx.ravel(), yy.ravel(), np.zeros(n * n)]
    if noise:
        points[:, 2] += np.random.default_rng(seed).normal(scale=noise, size=n * n)
    return points


def brute_force_regions(points, anomaly, threshold, min_points, merge_distance, n_neighbors):
    """The documented rule with dense distance matrices and a union-find: index sets per region."""
    flagged = np.flatnonzero(anomaly > threshold)
    distances = cdist(points, points)
    np.fill_diagonal(distances, np.inf)
    spacing = np.median(distances.min(axis=1))
    parent = {i: i for i in flagged}

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    def union(i, j):
        parent[root(i)] = root(j)

    flagged_set = set(flagged.tolist())
    for i in flagged:
        for j in np.argsort(distances[i], kind="stable")[:n_neighbors]:
            if j in flagged_set:
                union(i, j)
        for j in flagged:
            if distances[i, j] <= merge_distance * spacing:
                union(i, j)
    groups = {}
    for i in flagged:
        groups.setdefault(root(i), []).append(i)
    return sorted((sorted(g) for g in groups.values() if len(g) >= min_points), key=lambda g: g[0])


# ------------------------------------------------------------------------------ regions
def test_regions_match_a_brute_force_union_find_and_report_exact_geometry():
    rng = np.random.default_rng(1)
    points = grid(24, noise=0.02) + FAR
    anomaly = rng.normal(scale=0.3, size=len(points))
    xy = points[:, :2] - FAR[:2]
    blob = np.hypot(xy[:, 0] - 5, xy[:, 1] - 6) <= 2.2                          # a round defect
    crack = (np.abs(xy[:, 1] - 17) < 0.5) & (xy[:, 0] >= 8) & (xy[:, 0] <= 20)  # a line ...
    crack &= xy[:, 0] != 13                                                    # ... broken by a gap
    anomaly[blob] = 6.0 + xy[blob, 0]
    anomaly[crack] = 4.0
    anomaly[np.flatnonzero(~blob & ~crack)[::97]] = 3.0                         # isolated noise points
    expected = brute_force_regions(points, anomaly, 1.5, 5, 3.0, 8)
    regions = find_defects(points, anomaly, 1.5)
    assert sorted(r.indices.tolist() for r in regions) == expected
    assert len(regions) == 2  # the crack's two pieces are one region; noise points are dropped
    assert [r.peak_score for r in regions] == sorted((r.peak_score for r in regions), reverse=True)
    for region in regions:
        members = points[region.indices]
        # centroids in the input frame and units, exact to float64 rounding 5,400 km from the origin
        np.testing.assert_allclose(region.centroid, members.mean(axis=0), rtol=0, atol=1e-8)
        np.testing.assert_allclose(region.extent, np.ptp(members, axis=0), rtol=0, atol=1e-8)
        assert region.n_points == len(region.indices)
        assert region.peak_score == anomaly[region.indices].max()
        assert region.mean_score == pytest.approx(anomaly[region.indices].mean())
    first = regions[0]
    assert np.hypot(*(np.array(first.centroid[:2]) - FAR[:2] - [5, 6])) < 1.0  # within the blob


def test_merge_distance_and_min_points_and_min_peak():
    points = grid(20)
    anomaly = np.zeros(len(points))
    left = (points[:, 0] <= 2) & (points[:, 1] <= 2)                       # 9 points
    right = (points[:, 0] >= 5) & (points[:, 0] <= 7) & (points[:, 1] <= 2)  # 9 points, a 2-point gap
    anomaly[left], anomaly[right] = 5.0, 9.0
    assert [r.n_points for r in find_defects(points, anomaly, 1.0)] == [18]  # gap of 3 spacings: merged
    assert [r.n_points for r in find_defects(points, anomaly, 1.0, merge_distance=1.0)] == [9, 9]
    split = find_defects(points, anomaly, 1.0, merge_distance=1.0)
    assert [r.peak_score for r in split] == [9.0, 5.0]                       # sorted by peak
    assert find_defects(points, anomaly, 1.0, merge_distance=1.0, min_points=10) == []
    assert [r.peak_score for r in find_defects(points, anomaly, 1.0, merge_distance=1.0, min_peak=5.0)] == [9.0]
    assert find_defects(points, np.zeros(len(points)), 1.0) == []


def test_region_to_dict_is_json():
    region = find_defects(grid(10), np.r_[np.full(9, 5.0), np.zeros(91)], 1.0, merge_distance=0)[0]
    data = json.loads(json.dumps(region.to_dict()))
    assert set(data) == {"centroid", "extent", "n_points", "peak_score", "mean_score"}
    assert data["n_points"] == 9 and len(data["centroid"]) == len(data["extent"]) == 3
    assert isinstance(region, DefectRegion)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"anomaly": np.zeros(5)}, "anomaly has 5"),
        ({"anomaly": np.r_[np.nan, np.zeros(99)]}, "NaN at point 0"),
        ({"points": np.zeros((100, 2))}, r"shape \(n, 3\)"),
        ({"threshold": float("nan")}, "threshold"),
        ({"min_points": 0}, "min_points"),
        ({"merge_distance": -1.0}, "merge_distance"),
    ],
)
def test_find_defects_errors_name_the_argument(kwargs, match):
    args = {"points": grid(10), "anomaly": np.zeros(100), "threshold": 1.0} | kwargs
    with pytest.raises(ValueError, match=match):
        find_defects(args.pop("points"), args.pop("anomaly"), args.pop("threshold"), **args)


# ------------------------------------------------------------------------- cloud scores
def test_cloud_scores_and_threshold_by_hand():
    a, b = np.array([-1.0, -0.5, -4.0, -1.5]), np.array([-2.0, -2.5, -1.0])
    np.testing.assert_array_equal(cloud_scores([a, b], tail=0), [-4.0, -2.5])
    # half of 4 points: -4 and -1.5; half of 3: round(1.5) = 2 points, -2.5 and -2
    np.testing.assert_array_equal(cloud_scores([a, b], tail=0.5), [-2.75, -2.25])
    np.testing.assert_array_equal(cloud_scores([a, b], tail=1), [-7.0 / 4, -5.5 / 3])
    assert cloud_scores([a], tail=CLOUD_TAIL)[0] == cloud_scores([a])[0] == -4.0  # 3 % of 4 points: one
    for bad in (-0.1, 1.5, np.nan, "all", True):
        with pytest.raises(ValueError, match="tail must be a number in \\[0, 1\\]"):
            cloud_scores([a], tail=bad)
    # the pooled held-out scores' median minus margin times (median - 1st percentile); numpy's
    # percentile is linear interpolation between order statistics, recomputed here by hand
    pooled = np.sort(np.r_[a, b])
    def percentile(q):
        position = q * (len(pooled) - 1)
        low = int(np.floor(position))
        return pooled[low] + (position - low) * (pooled[min(low + 1, len(pooled) - 1)] - pooled[low])
    q01, q50 = percentile(0.01), percentile(0.5)
    assert q50 == -1.5 and q01 == pytest.approx(-4.0 + 0.06 * 1.5)  # 7 scores: positions 3 and 0.06
    assert cloud_threshold([a, b], margin=2.0) == pytest.approx(q50 - 2.0 * (q50 - q01))
    assert cloud_threshold([a, b], margin=0.0) == pytest.approx(q50)
    assert cloud_threshold([a, b], margin=0.0, min_anomaly=-q50 + 1.0) == pytest.approx(q50 - 1.0)
    assert cloud_threshold([a, b], margin=0.0, min_anomaly=-q50 - 1.0) == pytest.approx(q50)
    with pytest.raises(ValueError, match="point_scores\\[1\\] is empty"):
        cloud_scores([a, np.array([])])
    with pytest.raises(ValueError, match="one array per cloud"):
        cloud_scores(a)


def test_cloud_threshold_follows_the_units_of_the_scores():
    rng = np.random.default_rng(0)
    held = [rng.normal(size=500) for _ in range(2)]
    base = cloud_threshold(held)
    assert cloud_threshold([3.0 * h - 7.0 for h in held]) == pytest.approx(3.0 * base - 7.0)


# ------------------------------------------------------------------------ point spacing
def test_point_spacing_is_the_mean_knn_distance():
    cloud = grid(12, pitch=0.5, noise=0.05) + FAR
    distances = np.sort(cdist(cloud, cloud), axis=1)[:, 1:5]
    assert point_spacing(cloud, k=4) == pytest.approx(distances.mean())


def test_check_point_spacing_warns_about_other_units_and_densities_only():
    cloud = grid(40, pitch=1.0)
    dense = grid(160, pitch=0.25)  # 16x the points on the same area
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ratios = check_point_spacing([cloud, dense, cloud / 1000, cloud * 1.5], point_spacing(cloud, 8), 8)
    np.testing.assert_allclose(ratios, [1.0, 0.25, 0.001, 1.5], rtol=0.05)
    messages = [str(w.message) for w in caught if issubclass(w.category, PointSpacingWarning)]
    assert len(messages) == 2
    assert messages[0].startswith("cloud 1:") and "smaller" in messages[0]
    assert messages[1].startswith("cloud 2:")


# ------------------------------------------------------------- the estimators' methods
def wavy(n_clouds, n=300, seed=0, bump=False):
    rng = np.random.default_rng(seed)
    clouds = []
    for _ in range(n_clouds):
        uv = rng.uniform(-1, 1, size=(n, 2))
        z = 0.2 * np.sin(3 * uv[:, 0])
        if bump:
            z = z + 0.5 * np.exp(-((uv[:, 0] - 0.3) ** 2 + uv[:, 1] ** 2) / 0.02)
        clouds.append(np.c_[uv * 20, z * 20] + FAR)
    return clouds


@pytest.fixture(scope="module")
def detector():
    return StudentTeacherDetector("random", k=8, d=8, n_blocks=1, n_epochs=3, validation_fraction=0.25,
                                  fusion=None, random_state=0).fit(wavy(6))


def test_calibrate_returns_the_point_and_the_cloud_threshold(detector):
    held = [0.3 * np.random.default_rng(s).normal(size=200) for s in range(2)]
    detector = copy.deepcopy(detector)  # _calibrate sets held_out_*_: keep the module's fixture as fitted
    offset, cloud_offset = detector._calibrate(held)
    assert offset == np.quantile(np.concatenate(held), detector.contamination)
    q01, q50 = np.quantile(np.concatenate(held), [0.01, 0.5])
    assert cloud_offset == pytest.approx(q50 - CLOUD_MARGIN * (q50 - q01), rel=1e-12)
    np.testing.assert_array_equal(detector.held_out_quantiles_, [q01, q50])
    raw = copy.deepcopy(detector).set_params(score_normalization="none")
    assert raw._calibrate(held)[1] == cloud_offset
    # fused scores, in units of the members' tails, have their own margin
    fused = copy.deepcopy(detector).set_params(fusion="fpfh")
    assert fused._calibrate(held)[1] == pytest.approx(q50 - FUSED_CLOUD_MARGIN * (q50 - q01), rel=1e-12)
    deciles = np.quantile(np.concatenate(held), np.arange(1, 10) / 10)  # levels differ from linspace by an ulp
    np.testing.assert_allclose(fused.held_out_deciles_, deciles, rtol=0, atol=1e-12)
    assert np.isfinite(detector.cloud_offset_)


def _tail_mean(scores, tail=CLOUD_TAIL):
    """Mean of the lowest round(tail * n) scores (at least one), by sorting."""
    return np.sort(scores)[: max(1, int(round(tail * len(scores))))].mean()


def test_cloud_methods_agree_with_the_point_scores(detector):
    clouds = wavy(2, seed=5) + wavy(2, seed=6, bump=True)
    scores = detector.score_samples(clouds)
    tails = np.array([_tail_mean(s) for s in scores])
    np.testing.assert_allclose(detector.score_clouds(clouds), tails, rtol=1e-12)
    expected = np.where(tails >= detector.cloud_offset_, 1, -1)
    np.testing.assert_array_equal(detector.predict_clouds(clouds), expected)
    flagged = detector.find_defects(clouds, threshold=None, min_peak=None)  # decision_function < 0
    auto = detector.find_defects(clouds, min_peak=None)  # midway between the point and the cloud threshold
    middle = (-detector.offset_ - detector.cloud_offset_) / 2
    for cloud, score, found, found_auto in zip(clouds, scores, flagged, auto):
        again = find_defects(cloud, -score, -detector.offset_)
        assert [r.indices.tolist() for r in found] == [r.indices.tolist() for r in again]
        again = find_defects(cloud, -score, middle)
        assert [r.indices.tolist() for r in found_auto] == [r.indices.tolist() for r in again]
    # by default only clouds called defective have regions, those that reach the cloud threshold
    for verdict, found, cloud, score in zip(detector.predict_clouds(clouds), detector.find_defects(clouds), clouds,
                                            scores):
        if verdict == 1:
            assert found == []
        else:
            again = find_defects(cloud, -score, middle, min_peak=-detector.cloud_offset_)
            assert [r.indices.tolist() for r in found] == [r.indices.tolist() for r in again]
        for region in found:
            assert region.peak_score > -detector.cloud_offset_


def test_a_scan_in_other_units_warns_naming_it(detector):
    clouds = wavy(2, seed=5)
    with pytest.warns(PointSpacingWarning, match="^cloud 1: point spacing") as record:
        detector.score_clouds([clouds[0], clouds[1] / 1000])
    assert len([w for w in record if issubclass(w.category, PointSpacingWarning)]) == 1


def test_predict_clouds_refuses_a_model_without_cloud_threshold(detector):
    from sklearn.exceptions import NotFittedError

    old = copy.deepcopy(detector)
    del old.cloud_offset_
    with pytest.raises(NotFittedError, match="cloud_offset_"):
        old.predict_clouds(wavy(1))


def test_a_cloud_called_good_has_no_region_even_with_a_point_above_the_cloud_threshold(detector):
    # five neighbouring points spike just above the cloud threshold: the highest point exceeds
    # it, the mean of the 3 % most anomalous (9 of 300 points) does not, so the cloud is good
    cloud = wavy(1, seed=11)[0]
    c = detector.cloud_offset_
    assert c < 0
    spike = np.argsort(np.linalg.norm(cloud - cloud[0], axis=1))[:5]
    scores = np.zeros(len(cloud))
    scores[spike] = c + 0.4 * c  # anomaly 1.4 * |c|: 5 * 1.4 / 9 < 1
    assert scores.min() < c and cloud_scores([scores])[0] >= c
    low = -0.5 * c  # flag only the spike: anomaly above 0.5 * |c|
    assert detector._regions([cloud], [scores], low, 5, 3.0, "cloud") == [[]]
    assert len(detector._regions([cloud], [scores], low, 5, 3.0, None)[0]) == 1
    scores[spike] = 3 * c  # anomaly 3 * |c|: 5 * 3 / 9 > 1, the cloud is defective
    (found,) = detector._regions([cloud], [scores], low, 5, 3.0, "cloud")
    assert [r.indices.tolist() for r in found] == [sorted(spike.tolist())]


def test_threshold_from_percentiles_checks_its_arguments_and_old_thresholds_are_refused(detector):
    assert threshold_from_percentiles(-3.0, -1.0, 2.0) == -5.0
    assert threshold_from_percentiles(-3.0, -1.0, 2.0, min_anomaly=10.0) == -10.0
    for args, match in [((np.nan, -1.0, 1.0), "q01"), ((-3.0, "x", 1.0), "q50"), ((-1.0, -3.0, 1.0), "must not exceed"),
                        ((-3.0, -1.0, -1.0), "margin"), ((-3.0, -1.0, np.inf), "margin")]:
        with pytest.raises(ValueError, match=match):
            threshold_from_percentiles(*args)
    assert detector.cloud_offset_ == pytest.approx(threshold_from_percentiles(*detector.held_out_quantiles_, CLOUD_MARGIN))
    old = copy.deepcopy(detector)
    del old.held_out_quantiles_  # fitted before the current cloud score
    with pytest.raises(NotFittedError, match="another cloud score"):
        old.predict_clouds(wavy(1, seed=3))
