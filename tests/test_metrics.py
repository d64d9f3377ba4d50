"""Tests for skst3d.metrics against hand-worked values and a literal re-implementation."""

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from skst3d.metrics import (
    au_pro,
    au_pro_scorer,
    cloud_auroc_scorer,
    cloud_roc_auc,
    make_au_pro_scorer,
    pro_curve,
)

# --------------------------------------------------------------------------- #
# A literal second implementation: loops over thresholds and regions, its own
# flood fill for 8-connectivity and a dense-distance kNN graph (no scipy).
# --------------------------------------------------------------------------- #


def _components(n, edges):
    """Connected components of an undirected graph by repeated flood fill."""
    neighbours = [set() for _ in range(n)]
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    component = [-1] * n
    count = 0
    for start in range(n):
        if component[start] >= 0:
            continue
        stack = [start]
        component[start] = count
        while stack:
            node = stack.pop()
            for other in neighbours[node]:
                if component[other] < 0:
                    component[other] = count
                    stack.append(other)
        count += 1
    return component, count


def _brute_regions(truth, score, pts, k):
    """(normal scores, list of region score arrays) of one sample."""
    truth = np.asarray(truth)
    score = np.asarray(score, dtype=float)
    if truth.ndim == 2:
        cells = [
            (r, c) for r in range(truth.shape[0]) for c in range(truth.shape[1]) if truth[r, c]
        ]
        index = {cell: i for i, cell in enumerate(cells)}
        edges = [
            (index[(r, c)], index[(r + dr, c + dc)])
            for (r, c) in cells
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
            if (r + dr, c + dc) in index
        ]
        comp, count = _components(len(cells), edges)
        regions = [
            np.array([score[cells[i]] for i in range(len(cells)) if comp[i] == j])
            for j in range(count)
        ]
        return score[truth == 0], regions
    if truth.dtype == bool:
        anomalous = [i for i in range(len(truth)) if truth[i]]
        dist = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)
        knn = [set(np.argsort(dist[i])[: k + 1].tolist()) for i in range(len(truth))]
        edges = [
            (a, b)
            for a in range(len(anomalous))
            for b in range(len(anomalous))
            if anomalous[b] in knn[anomalous[a]]
        ]
        comp, count = _components(len(anomalous), edges)
        regions = [
            np.array([score[anomalous[i]] for i in range(len(anomalous)) if comp[i] == j])
            for j in range(count)
        ]
        return score[~truth], regions
    regions = [score[truth == r] for r in sorted(set(truth.tolist())) if r > 0]
    return score[truth == 0], regions


def brute_pro_curve(y_true, y_score, num_thresholds=100, points=None, k=8):
    normal, regions = [], []
    for i, (truth, score) in enumerate(zip(y_true, y_score)):
        ok, reg = _brute_regions(truth, score, None if points is None else points[i], k)
        normal.extend(np.ravel(ok).tolist())
        regions.extend(reg)
    normal = sorted(normal)
    n_ok = len(normal)
    if num_thresholds is None:
        positions = list(range(n_ok))
    else:
        positions = np.linspace(0, n_ok - 1, num_thresholds, dtype=int).tolist()
    curve = [(1.0, 1.0)]
    for pos in positions:
        threshold = normal[pos]
        overlaps = [np.mean(region > threshold) for region in regions]
        curve.append((1.0 - (pos + 1) / n_ok, sum(overlaps) / len(regions)))
    curve.sort(key=lambda point: point[0])
    return np.array([c[0] for c in curve]), np.array([c[1] for c in curve])


def brute_au_pro(y_true, y_score, limit=0.3, num_thresholds=100, points=None, k=8):
    fpr, pro = brute_pro_curve(y_true, y_score, num_thresholds, points, k)
    area = 0.0
    for x0, x1, y0, y1 in zip(fpr[:-1], fpr[1:], pro[:-1], pro[1:]):
        if x0 >= limit:
            break
        if x1 <= limit:
            area += 0.5 * (y0 + y1) * (x1 - x0)
        else:  # the limit cuts this segment: interpolate linearly
            y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += 0.5 * (y0 + y_limit) * (limit - x0)
            break
    return area / limit


# --------------------------------------------------------------------------- #
# hand-worked cases
# --------------------------------------------------------------------------- #
# One cloud: normal scores 0.1 0.2 0.3 0.4 (N_ok = 4); region 1 = {0.25, 0.5},
# region 2 = {0.35}. Every normal score is a threshold (num_thresholds=None):
#   pos  threshold  FPR = 1-(pos+1)/4   region 1 (> t)  region 2 (> t)   PRO
#    0     0.1          0.75              2/2             1/1           1
#    1     0.2          0.50              2/2             1/1           1
#    2     0.3          0.25              1/2             1/1           0.75
#    3     0.4          0.00              1/2             0/1           0.25
# plus the end point (1, 1).
HAND_TRUE = [np.array([0, 0, 0, 0, 1, 1, 2])]
HAND_SCORE = [np.array([0.1, 0.2, 0.3, 0.4, 0.25, 0.5, 0.35])]


def test_hand_worked_curve():
    fpr, pro = pro_curve(HAND_TRUE, HAND_SCORE, num_thresholds=None)
    np.testing.assert_allclose(fpr, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(pro, [0.25, 0.75, 1.0, 1.0, 1.0])


def test_hand_worked_au_pro():
    # limit 0.3: [0, .25] -> .25 * (.25 + .75) / 2 = .125; PRO(.3) = .75 + .25 * .05 / .25 = .8,
    # [.25, .3] -> .05 * (.75 + .8) / 2 = .03875; (.125 + .03875) / .3 = .5458333...
    assert au_pro(HAND_TRUE, HAND_SCORE, num_thresholds=None) == pytest.approx(
        0.16375 / 0.3, abs=1e-12
    )
    # limit .25 is a curve point: no interpolation, .125 / .25.
    assert au_pro(
        HAND_TRUE, HAND_SCORE, integration_limit=0.25, num_thresholds=None
    ) == pytest.approx(0.5)
    # limit 1: .125 + .25 * (.75 + 1) / 2 + .25 + .25 = .84375.
    assert au_pro(
        HAND_TRUE, HAND_SCORE, integration_limit=1.0, num_thresholds=None
    ) == pytest.approx(0.84375)


def test_hand_worked_three_thresholds():
    # linspace(0, 3, 3) = [0, 1.5, 3] -> integer positions [0, 1, 3]: FPR .75, .5, 0.
    fpr, pro = pro_curve(HAND_TRUE, HAND_SCORE, num_thresholds=3)
    np.testing.assert_allclose(fpr, [0.0, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(pro, [0.25, 1.0, 1.0, 1.0])
    # PRO(.3) = .25 + .75 * .3 / .5 = .7; area .3 * (.25 + .7) / 2 = .1425; / .3 = .475.
    assert au_pro(HAND_TRUE, HAND_SCORE, num_thresholds=3) == pytest.approx(0.475)


def test_ties_use_positions_and_strict_overlap():
    # Normal scores 1 1 1 1: thresholds all 1 with FPR .75 .5 .25 0 (positions, not values).
    # Region {1, 2}: only 2 is strictly above 1 -> PRO .5 everywhere below FPR 1.
    fpr, pro = pro_curve(
        [np.array([0, 0, 0, 0, 1, 1])], [np.array([1.0, 1, 1, 1, 1, 2])], num_thresholds=None
    )
    np.testing.assert_allclose(fpr, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(pro, [0.5, 0.5, 0.5, 0.5, 1.0])


def test_regions_are_per_sample_and_pooled_over_the_dataset():
    # Label 1 in two samples = two regions; region ids need not be contiguous (7).
    # Normal scores 0 and 0 (N_ok = 2); regions {5}, {-1}, {5, -1}: overlaps at t = 0 -> 1, 0, .5.
    y_true = [np.array([0, 1]), np.array([0, 1, 7, 7])]
    y_score = [np.array([0.0, 5.0]), np.array([0.0, -1.0, 5.0, -1.0])]
    fpr, pro = pro_curve(y_true, y_score)
    # linspace(0, 1, 100, dtype=int) truncates: position 0 (FPR .5) 99 times, position 1 once.
    np.testing.assert_allclose(fpr, np.r_[0.0, 0.5 * np.ones(99), 1.0])
    np.testing.assert_allclose(pro, np.r_[0.5 * np.ones(100), 1.0])


def test_two_d_masks_use_eight_connectivity():
    # A and B touch diagonally (one region), C stands apart.
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[0, 0] = mask[1, 1] = mask[3, 3] = 255
    score = np.zeros((4, 4))
    score[0, 0], score[1, 1], score[3, 3] = 10.0, -10.0, 10.0
    # At every threshold (all normal scores are 0): {A, B} -> 1/2, {C} -> 1; mean .75
    # (4-connectivity would give three regions and 2/3).
    fpr, pro = pro_curve([mask], [score])
    np.testing.assert_allclose(pro[:-1], 0.75)
    assert au_pro([mask], [score]) == pytest.approx(0.75)


def test_stacked_array_equals_list():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 8, 8)) < 0.2
    masks[0, 0, 0] = True
    scores = rng.normal(size=(3, 8, 8))
    assert au_pro(masks, scores) == au_pro(list(masks), list(scores))


def test_bool_masks_split_by_knn_graph_of_the_whole_cloud():
    # Points on a line x = 0..19; anomalous at both ends. With k = 2 each end is one
    # component; the normal points in between keep them apart (a kNN graph of the
    # anomalous points alone would join them).
    points = np.c_[np.arange(20.0), np.zeros(20), np.zeros(20)]
    mask = np.zeros(20, dtype=bool)
    mask[[0, 1, 18, 19]] = True
    score = np.zeros(20)
    score[[0, 1]] = [5.0, -5.0]  # left region half detected
    score[[18, 19]] = 5.0  # right region fully detected
    fpr, pro = pro_curve([mask], [score], points=[points], region_k=2)
    np.testing.assert_allclose(pro[:-1], 0.75)  # (1/2 + 1) / 2
    # Same result as integer labels that name the two regions.
    labels = np.zeros(20, dtype=int)
    labels[[0, 1]], labels[[18, 19]] = 1, 2
    assert au_pro([mask], [score], points=[points], region_k=2) == au_pro([labels], [score])


def test_num_thresholds_none_equals_n_ok_thresholds():
    rng = np.random.default_rng(1)
    y_true = [rng.integers(0, 3, 40), rng.integers(0, 2, 30)]
    y_score = [rng.normal(size=40), rng.normal(size=30)]
    n_ok = sum(int((t == 0).sum()) for t in y_true)
    a = pro_curve(y_true, y_score, num_thresholds=None)
    b = pro_curve(y_true, y_score, num_thresholds=n_ok)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (n_ok + 1,)


def test_large_input_is_vectorised():
    rng = np.random.default_rng(2)
    masks = rng.random((20, 128, 128)) < 0.05
    scores = rng.normal(size=masks.shape) + masks
    value = au_pro(list(masks), list(scores), num_thresholds=None)
    assert 0.0 < value < 1.0


# --------------------------------------------------------------------------- #
# properties against the literal implementation
# --------------------------------------------------------------------------- #
@st.composite
def labelled_clouds(draw, max_label=3):
    """Integer region labels with small integer scores (many ties)."""
    n_samples = draw(st.integers(1, 4))
    y_true, y_score = [], []
    for _ in range(n_samples):
        n = draw(st.integers(0, 15))
        y_true.append(draw(arrays(np.int64, n, elements=st.integers(0, max_label))))
        y_score.append(draw(arrays(np.float64, n, elements=st.integers(-4, 4).map(float))))
    labels = np.concatenate(y_true)
    assume((labels > 0).any() and (labels == 0).any())
    return y_true, y_score


@st.composite
def image_masks(draw):
    n_samples = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    y_true = [draw(arrays(np.bool_, shape)) for _ in range(n_samples)]
    y_score = [
        draw(arrays(np.float64, shape, elements=st.integers(-3, 3).map(float)))
        for _ in range(n_samples)
    ]
    stacked = np.stack(y_true)
    assume(stacked.any() and not stacked.all())
    return y_true, y_score


@st.composite
def masked_clouds(draw):
    n_samples = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y_true, y_score, points = [], [], []
    for _ in range(n_samples):
        n = draw(st.integers(1, 25))
        points.append(rng.random((n, 3)))  # continuous: no distance ties
        y_true.append(draw(arrays(np.bool_, n)))
        y_score.append(rng.integers(-3, 4, n).astype(float))
    stacked = np.concatenate(y_true)
    assume(stacked.any() and not stacked.all())
    return y_true, y_score, points


NUM_THRESHOLDS = st.sampled_from([None, 2, 3, 7, 100])
LIMITS = st.sampled_from([0.3, 0.05, 0.5, 1.0]) | st.floats(0.001, 1.0)


def _assert_matches_brute(y_true, y_score, num_thresholds, limit, points=None, k=8):
    fpr, pro = pro_curve(y_true, y_score, num_thresholds=num_thresholds, points=points, region_k=k)
    bfpr, bpro = brute_pro_curve(y_true, y_score, num_thresholds, points, k)
    np.testing.assert_allclose(fpr, bfpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pro, bpro, rtol=0, atol=1e-12)
    expected = brute_au_pro(y_true, y_score, limit, num_thresholds, points, k)
    got = au_pro(
        y_true,
        y_score,
        integration_limit=limit,
        num_thresholds=num_thresholds,
        points=points,
        region_k=k,
    )
    assert got == pytest.approx(expected, abs=1e-9)


@given(labelled_clouds(), NUM_THRESHOLDS, LIMITS)
def test_matches_literal_definition_labels(data, num_thresholds, limit):
    _assert_matches_brute(*data, num_thresholds, limit)


@given(image_masks(), NUM_THRESHOLDS, LIMITS)
def test_matches_literal_definition_images(data, num_thresholds, limit):
    _assert_matches_brute(*data, num_thresholds, limit)


@given(masked_clouds(), NUM_THRESHOLDS, LIMITS, st.integers(1, 5))
def test_matches_literal_definition_point_masks(data, num_thresholds, limit, k):
    y_true, y_score, points = data
    _assert_matches_brute(y_true, y_score, num_thresholds, limit, points=points, k=k)


@given(labelled_clouds(), NUM_THRESHOLDS, LIMITS)
def test_invariant_to_strictly_increasing_transforms(data, num_thresholds, limit):
    y_true, y_score = data
    ref = pro_curve(y_true, y_score, num_thresholds=num_thresholds)
    ref_area = au_pro(y_true, y_score, integration_limit=limit, num_thresholds=num_thresholds)
    # Both maps keep every order and tie of the integer scores exactly.
    for transform in (lambda s: 2.0 * s**3 + 7.0, np.exp):
        scores = [transform(s) for s in y_score]
        curve = pro_curve(y_true, scores, num_thresholds=num_thresholds)
        np.testing.assert_array_equal(curve[0], ref[0])
        np.testing.assert_array_equal(curve[1], ref[1])
        assert (
            au_pro(y_true, scores, integration_limit=limit, num_thresholds=num_thresholds)
            == ref_area
        )


@given(labelled_clouds(), NUM_THRESHOLDS, LIMITS)
def test_perfect_and_reversed_scores(data, num_thresholds, limit):
    y_true, _ = data
    perfect = [np.where(t > 0, 10.0, 0.0) + np.arange(t.size) % 3 for t in y_true]
    assert au_pro(
        y_true, perfect, integration_limit=limit, num_thresholds=num_thresholds
    ) == pytest.approx(1.0)
    reversed_ = [-s for s in perfect]
    n_ok = sum(int((t == 0).sum()) for t in y_true)
    # Every threshold lies above every anomalous score: PRO = 0 up to FPR 1 - 1/n_ok,
    # then the segment to the fixed end point (1, 1) has slope n_ok, so a limit past
    # its start adds the triangle 0.5 * (limit - start) * (limit - start) * n_ok.
    start = 1.0 - 1.0 / n_ok
    expected = 0.0 if limit <= start else 0.5 * (limit - start) ** 2 * n_ok / limit
    value = au_pro(y_true, reversed_, integration_limit=limit, num_thresholds=num_thresholds)
    assert value == pytest.approx(expected, abs=1e-12)


def test_reversed_scores_full_limit():
    # Limit 1: the only area is the last triangle from (1 - 1/n_ok, 0) to (1, 1): 0.5 / n_ok.
    y_true = [np.array([0, 0, 0, 0, 0, 1, 1])]
    y_score = [np.array([5.0, 6, 7, 8, 9, 1, 2])]
    assert au_pro(y_true, y_score, integration_limit=1.0) == pytest.approx(0.5 / 5)
    assert au_pro(y_true, y_score) == 0.0


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "y_true, y_score, kwargs, match",
    [
        ([np.array([0, 0])], [np.array([1.0, 2.0])], {}, "no anomalous region"),
        ([np.array([1, 2])], [np.array([1.0, 2.0])], {}, "no normal point"),
        ([np.array([False, True])], [np.array([1.0, 2.0])], {}, "pass points"),
        (
            [np.array([0, 1]), np.array([0, 1])],
            [np.array([1.0, 2.0]), np.array([1.0])],
            {},
            r"Sample 1: .*\(1,\).*\(2,\)",
        ),
        (
            [np.array([0, 1])],
            [np.array([1.0, 2.0]), np.array([1.0])],
            {},
            "1 samples but y_score has 2",
        ),
        (
            [np.array([0.0, 1.0])],
            [np.array([1.0, 2.0])],
            {},
            "integer region labels or a boolean mask",
        ),
        ([np.array([0, -1])], [np.array([1.0, 2.0])], {}, "must be >= 0"),
        ([np.zeros((2, 2, 2))], [np.zeros((2, 2, 2))], {}, "1-D .* or 2-D"),
        (np.array([0, 1]), np.array([1.0, 2.0]), {}, "wrap it in a list"),
        ([np.array([0, 1])], [np.array([np.nan, 2.0])], {}, "NaN"),
        ([np.array([0, 1])], [np.array([1.0, 2.0])], {"num_thresholds": 1}, "num_thresholds"),
        ([np.array([0, 1])], [np.array([1.0, 2.0])], {"num_thresholds": 2.5}, "num_thresholds"),
        (
            [np.array([0, 1])],
            [np.array([1.0, 2.0])],
            {"integration_limit": 0.0},
            "integration_limit",
        ),
        (
            [np.array([0, 1])],
            [np.array([1.0, 2.0])],
            {"integration_limit": 1.5},
            "integration_limit",
        ),
        ([np.array([0, 1])], [np.array([1.0, 2.0])], {"region_k": 0}, "region_k"),
        (
            [np.array([False, True])],
            [np.array([1.0, 2.0])],
            {"points": [np.zeros((3, 3))]},
            r"Sample 0: points must have shape \(2, 3\)",
        ),
        ([np.array([0, 1])], [np.array([1.0, 2.0])], {"points": []}, "points has 0"),
    ],
)
def test_errors(y_true, y_score, kwargs, match):
    with pytest.raises(ValueError, match=match):
        au_pro(y_true, y_score, **kwargs)


def test_not_a_list():
    with pytest.raises(TypeError, match="one array per sample"):
        au_pro(3, [np.zeros(2)])


def test_cloud_roc_auc_hand_worked_and_errors():
    # Cloud scores (max): .3 normal, .9 anomalous, .5 normal, .4 anomalous.
    # Pairs (anomalous > normal): .9 beats both, .4 beats .3 only -> 3/4.
    y_true = [np.zeros(3, int), np.array([0, 1, 1]), np.zeros(3, int), np.array([True, False])]
    y_score = [
        np.array([0.1, 0.2, 0.3]),
        np.array([0.1, 0.9, 0.4]),
        np.array([0.5, 0.1, 0.1]),
        np.array([0.4, 0.0]),
    ]
    assert cloud_roc_auc(y_true, y_score) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="all 2 samples are normal"):
        cloud_roc_auc(y_true[::2], y_score[::2])
    with pytest.raises(ValueError, match="Sample 0 is empty"):
        cloud_roc_auc([np.zeros(0, int)], [np.zeros(0)])


# --------------------------------------------------------------------------- #
# scorers inside scikit-learn model selection
# --------------------------------------------------------------------------- #
class ToyDetector(BaseEstimator):
    """Anomalous = far from the origin; ``sign=-1`` turns it upside down."""

    def __init__(self, sign=1.0):
        self.sign = sign

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def score_samples(self, X):
        return [-self.sign * np.linalg.norm(x, axis=1) for x in X]


def _toy_clouds(n_clouds=8, seed=0, defective=(0, 2, 4, 6)):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n_clouds):
        n = 15 + i  # clouds of different sizes
        cloud = rng.random((n, 3))
        labels = np.zeros(n, dtype=int)
        if i in defective:
            cloud[:3] += 5.0  # one compact defect, far from the origin
            labels[:3] = 1
        X.append(cloud)
        y.append(labels)
    return X, y


def test_scorers_repr_and_pickle():
    assert (
        repr(au_pro_scorer)
        == "make_au_pro_scorer(integration_limit=0.3, num_thresholds=100, region_k=8)"
    )
    assert repr(cloud_auroc_scorer) == "cloud_auroc_scorer"
    X, y = _toy_clouds()
    for scorer in (au_pro_scorer, make_au_pro_scorer(0.1, None, region_k=3), cloud_auroc_scorer):
        clone = pickle.loads(pickle.dumps(scorer))
        assert repr(clone) == repr(scorer)
        assert clone(ToyDetector(), X, y) == scorer(ToyDetector(), X, y)
    with pytest.raises(ValueError, match="integration_limit"):
        make_au_pro_scorer(integration_limit=2)


def test_scorers_negate_score_samples():
    X, y = _toy_clouds()
    detector = ToyDetector()
    anomaly = [np.linalg.norm(x, axis=1) for x in X]
    assert au_pro_scorer(detector, X, y) == au_pro(y, anomaly) == 1.0
    assert au_pro_scorer(ToyDetector(sign=-1.0), X, y) == au_pro(y, [-a for a in anomaly]) == 0.0
    scorer = make_au_pro_scorer(integration_limit=1.0, num_thresholds=None)
    assert scorer(detector, X, y) == au_pro(y, anomaly, integration_limit=1.0, num_thresholds=None)
    labels = [int(t.any()) for t in y]
    expected = roc_auc_score(labels, [a.max() for a in anomaly])
    assert cloud_auroc_scorer(detector, X, y) == expected == 1.0


def test_scorer_passes_clouds_as_points_for_bool_masks():
    X, y = _toy_clouds()
    masks = [t.astype(bool) for t in y]
    rng = np.random.default_rng(3)
    noisy = ToyDetector()
    noisy.score_samples = lambda X: [
        -np.linalg.norm(x, axis=1) + rng.normal(size=len(x)) for x in X
    ]
    scores = noisy.score_samples(X)
    noisy.score_samples = lambda X: scores  # freeze the noise for the comparison
    expected = au_pro(masks, [-s for s in scores], points=X, num_thresholds=None)
    assert make_au_pro_scorer(num_thresholds=None)(noisy, X, masks) == pytest.approx(expected)


def test_grid_search_picks_the_right_sign():
    X, y = _toy_clouds()
    search = GridSearchCV(
        ToyDetector(),
        {"sign": [-1.0, 1.0]},
        scoring={"au_pro": au_pro_scorer, "auroc": cloud_auroc_scorer},
        refit="au_pro",
        cv=KFold(2),
    )
    search.fit(X, y)
    assert search.best_params_ == {"sign": 1.0}
    assert search.best_score_ == 1.0
    # Upside down, a cloud's score is minus its point nearest the origin: chance-like.
    assert search.cv_results_["mean_test_auroc"][1] == 1.0


def test_cross_val_score_in_parallel():
    X, y = _toy_clouds()
    scores = cross_val_score(ToyDetector(), X, y, scoring=au_pro_scorer, cv=KFold(2), n_jobs=2)
    np.testing.assert_array_equal(scores, [1.0, 1.0])


def test_fold_without_defects():
    X, y = _toy_clouds(defective=(0, 1))  # the second fold has none
    with pytest.raises(ValueError, match="no anomalous region"):
        cross_val_score(
            ToyDetector(), X, y, scoring=au_pro_scorer, cv=KFold(2), error_score="raise"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = cross_val_score(ToyDetector(), X, y, scoring=au_pro_scorer, cv=KFold(2))
    assert scores[0] == 1.0 and np.isnan(scores[1])
    assert any("no anomalous region" in str(w.message) for w in caught)


# --------------------------------------------------------------------------- #
# malformed inputs: a ValueError/TypeError naming the argument and the sample
# --------------------------------------------------------------------------- #
def _labels_and_scores(n_samples=4):
    y_true = [np.array([0, 0, 1, 1, 0]) for _ in range(n_samples)]
    y_score = [np.array([0.1, 0.2, 0.9, 0.8, 0.3]) + i for i in range(n_samples)]
    return y_true, y_score


@pytest.mark.parametrize("metric", [pro_curve, au_pro, cloud_roc_auc])
def test_complex_scores_are_rejected_without_truncation(metric):
    y_true, y_score = _labels_and_scores()
    y_true[0] = np.zeros(5, int)  # cloud_roc_auc needs a normal cloud
    y_score[3] = y_score[3] + 0.5j
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning, no silent .real
        with pytest.raises(TypeError, match=r"Sample 3: y_score has complex dtype complex128"):
            metric(y_true, y_score)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_points_are_rejected_with_the_sample_and_point(bad):
    rng = np.random.default_rng(0)
    points = [rng.random((6, 3)) for _ in range(3)]
    points[1][4, 2] = bad
    y_true = [np.array([0, 0, 0, 1, 1, 0], bool) for _ in range(3)]
    y_score = [rng.random(6) for _ in range(3)]
    for metric in (pro_curve, au_pro):
        with pytest.raises(ValueError, match=r"Sample 1: points contains NaN or infinite .*point 4"):
            metric(y_true, y_score, points=points)


def _bool_case(points):
    return [np.array([False, True, False])], [np.array([1.0, 2.0, 0.0])], {"points": points}


@pytest.mark.parametrize(
    "y_true, y_score, kwargs, error, match",
    [
        ([], [], {}, ValueError, r"y_true is empty"),
        ([np.array([0, 1])], [[1.0, [2.0, 3.0]]], {}, ValueError, r"Sample 0: y_score could not be read"),
        ([[0, [1, 1]]], [np.array([1.0, 2.0])], {}, ValueError, r"Sample 0: y_true could not be read"),
        ([np.array([0, 1])], [None], {}, TypeError, r"Sample 0: y_score .*object"),
        ([np.array([0, 1])], [np.array([1.0, None], dtype=object)], {}, TypeError,
         r"Sample 0: y_score .*None"),
        ([np.array([0, 1])], [np.array(["1.0", "2"])], {}, TypeError, r"Sample 0: y_score has string dtype"),
        ([np.array([0, 1])], [np.array([1.0, "a"], dtype=object)], {}, TypeError, r"Sample 0: y_score .*'a'"),
        ([np.array([0, 1])], [np.array([1.0, 2.0]).astype("M8[s]")], {}, TypeError,
         r"Sample 0: y_score has dtype datetime64"),
        ([np.array([[0, 1]]), np.array([["a", "b"]])], [np.ones((1, 2))] * 2, {}, TypeError,
         r"Sample 1: y_true .*dtype <U1"),
        ([np.array([[0, 1j]])], [np.ones((1, 2))], {}, TypeError, r"Sample 0: y_true has complex dtype"),
        ([np.array([0, 1j])], [np.ones(2)], {}, TypeError, r"Sample 0: y_true has complex dtype"),
        ([np.array([[0, 1, np.nan]])], [np.ones((1, 3))], {}, ValueError, r"Sample 0: y_true contains NaN"),
        ([np.array([0, 1])], [np.array([1.0, np.nan])], {}, ValueError,
         r"Sample 0: y_score contains NaN .*index 1"),
        ([np.array([0, 1])], [[10**400, 1]], {}, ValueError,
         r"Sample 0: y_score holds a number that float64"),
        (*_bool_case([None]), ValueError, r"Sample 0: .*pass points"),
        (*_bool_case([np.zeros((3, 3), complex)]), TypeError, r"Sample 0: points has complex dtype"),
        (*_bool_case([np.zeros((3, 2))]), ValueError, r"Sample 0: points must have shape \(3, 3\)"),
        (*_bool_case([[[0, 0, 0], [1, 1]]]), ValueError, r"Sample 0: points could not be read"),
        (*_bool_case([np.full((3, 3), "x")]), TypeError, r"Sample 0: points has string dtype"),
        (*_bool_case("abc"), TypeError, r"points must be a list"),
    ],
)
@pytest.mark.parametrize("metric", [pro_curve, au_pro])
def test_malformed_inputs(metric, y_true, y_score, kwargs, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error, match=match):
            metric(y_true, y_score, **kwargs)


def test_infinite_scores_are_ranked():
    # +-inf are valid anomaly scores (e.g. minus a log-density); only their order matters.
    y_true = [np.array([0, 0, 1, 1, 0]), np.zeros(3, int), np.array([0, 1, 0]), np.zeros(2, int)]
    finite = [np.array([0.1, 0.2, 9.0, 0.8, 0.3]), np.array([0.5, -9.0, 0.1]),
              np.array([0.0, 0.4, 0.1]), np.array([0.2, 0.3])]
    infinite = [np.where(s == 9.0, np.inf, np.where(s == -9.0, -np.inf, s)) for s in finite]
    assert cloud_roc_auc(y_true, infinite) == cloud_roc_auc(y_true, finite) == pytest.approx(0.75)
    assert au_pro(y_true, infinite) == au_pro(y_true, finite)


@pytest.mark.parametrize(
    "y_true, y_score, error, match",
    [
        ([], [], ValueError, r"y_true is empty"),
        ([np.array([0, 1]), np.array([0, 0])], [np.ones(2), np.array([1.0, 1j])], TypeError,
         r"Sample 1: y_score has complex dtype"),
        ([np.array([0, 1]), np.array([0.0, np.nan])], [np.ones(2), np.ones(2)], ValueError,
         r"Sample 1: y_true contains NaN"),
        ([np.array([0, 1]), np.array([0, -1])], [np.ones(2), np.ones(2)], ValueError,
         r"Sample 1: y_true .*must be >= 0"),
        ([np.array([0, 1]), np.array(["0", "0"])], [np.ones(2), np.ones(2)], TypeError,
         r"Sample 1: y_true has string dtype"),
        ([np.array([0, 1]), np.array([0, None], dtype=object)], [np.ones(2), np.ones(2)], TypeError,
         r"Sample 1: y_true .*None"),
        ([np.array([0, 1]), np.array([0, 0])], [np.ones(2), [[1.0], [1.0, 2.0]]], ValueError,
         r"Sample 1: y_score could not be read"),
        ([np.array([0, 1]), np.zeros(0, int)], [np.ones(2), np.zeros(0)], ValueError, r"Sample 1 is empty"),
    ],
)
def test_cloud_roc_auc_malformed_inputs(y_true, y_score, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error, match=match):
            cloud_roc_auc(y_true, y_score)


class _Returns(BaseEstimator):
    """A stand-in detector whose score_samples returns a fixed object."""

    def __init__(self, scores=None):
        self.scores = scores

    def score_samples(self, X):
        return self.scores


@pytest.mark.parametrize("scorer", [au_pro_scorer, cloud_auroc_scorer])
def test_scorers_reject_malformed_score_samples(scorer):
    X, y = _toy_clouds()
    good = [-np.linalg.norm(x, axis=1) for x in X]
    complex_ = [s.astype(complex) for s in good]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=r"Sample 0: _Returns.score_samples\(X\) has complex dtype"):
            scorer(_Returns(complex_), X, y)
        with pytest.raises(TypeError, match=r"_Returns.score_samples\(X\) must be a list"):
            scorer(_Returns(None), X, y)
        with pytest.raises(ValueError, match=r"returned 7 arrays for 8 clouds"):
            scorer(_Returns(good[:7]), X, y)
        nan = [s.copy() for s in good]
        nan[2][5] = np.nan
        with pytest.raises(ValueError, match=r"Sample 2: _Returns.score_samples\(X\) contains NaN"):
            scorer(_Returns(nan), X, y)
        with pytest.raises(ValueError, match=r"y has 7 samples but X has 8"):
            scorer(_Returns(good), X, y[:7])
        with pytest.raises(ValueError, match=r"Sample 1: _Returns.score_samples\(X\) has shape"):
            scorer(_Returns([good[0], good[1][:3], *good[2:]]), X, y)
    # bool scores are read as 0/1 (numpy cannot negate a boolean array)
    as_bool = [s < -5 for s in good]
    assert au_pro_scorer(_Returns(as_bool), X, y) == au_pro(y, [-s.astype(float) for s in as_bool])


def test_scorer_names_non_finite_clouds_as_X():
    X, y = _toy_clouds()
    X[3] = X[3].copy()
    X[3][1] = np.nan
    masks = [t.astype(bool) for t in y]
    scores = [-np.ones(len(x)) for x in X]
    with pytest.raises(ValueError, match=r"Sample 3: X contains NaN or infinite coordinates .*point 1"):
        au_pro_scorer(_Returns(scores), X, masks)
