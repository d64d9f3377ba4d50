"""Fuzz the public metrics with malformed inputs.

Every call must either return a finite result in [0, 1] (valid input) or raise ValueError /
TypeError whose message names the offending argument, and the sample (``Sample i``) where the
fault is in one sample; never an exception from inside numpy/scipy/sklearn, a warning (e.g.
numpy's ComplexWarning when complex scores are cast to float) or a NaN.

Two strategies: valid inputs with zero or more known faults injected (so the test knows which
argument and sample the message must name), and lists of arbitrary entries (any dtype, shape,
None, strings, ragged lists), for which only the kind of outcome is checked.
"""

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skst3d.metrics import au_pro, cloud_roc_auc, make_au_pro_scorer, pro_curve

METRICS = ["pro_curve", "au_pro", "cloud_roc_auc", "au_pro_scorer"]


class FixedScores:
    """A stand-in estimator: ``score_samples`` returns the given object, whatever ``X`` is."""

    def __init__(self, scores):
        self.scores = scores

    def fit(self, X, y=None):
        return self

    def score_samples(self, X):
        return self.scores


def _names(metric):
    """How each argument is named in the messages of ``metric``."""
    if metric == "au_pro_scorer":  # scorer(estimator, X, y)
        return {"y_true": "y", "y_score": "FixedScores.score_samples", "points": "X"}
    return {"y_true": "y_true", "y_score": "y_score", "points": "points"}


def _call(metric, y_true, y_score, points):
    if metric == "pro_curve":
        return pro_curve(y_true, y_score, points=points)
    if metric == "au_pro":
        return au_pro(y_true, y_score, points=points, integration_limit=0.5)
    if metric == "cloud_roc_auc":
        return cloud_roc_auc(y_true, y_score)
    return make_au_pro_scorer(num_thresholds=None)(FixedScores(y_score), points, y_true)


def _check_outcome(metric, y_true, y_score, points, faults, n_samples):
    """Run ``metric``; valid input (no fault) must give a finite result, else a named error."""
    names = _names(metric)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (ComplexWarning, RuntimeWarning) fails
        try:
            result = _call(metric, y_true, y_score, points)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            sample = re.search(r"Sample (\d+)", message)
            assert sample is None or int(sample.group(1)) < n_samples, message
            if faults is None:  # arbitrary input: some argument must be named
                assert any(name in message for name in names.values()), message
                return
            assert faults, f"valid input rejected: {exc!r}"
            assert any(
                names[arg] in message and (index is None or re.search(rf"Sample {index}\b", message))
                for arg, index in faults
            ), f"{message!r} names none of the faults {faults}"
            return
    if faults:
        pytest.fail(f"faults {faults} went unnoticed; result {result!r}")
    values = np.concatenate([np.ravel(r) for r in result]) if isinstance(result, tuple) else np.array([result])
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all(), result


# --------------------------------------------------------------------------- valid input + known faults
@st.composite
def valid_inputs(draw):
    """Integer labels, boolean point masks and image masks; sample 0 is defective, sample 1 normal."""
    n_samples = draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scores_of = st.floats(allow_nan=False, width=64) | st.sampled_from([0.0, 1.0, -1.0])
    kinds, y_true, y_score, points = [], [], [], []
    for i in range(n_samples):
        kind = draw(st.sampled_from(["labels", "mask", "image"]))
        shape = (draw(st.integers(1, 4)), draw(st.integers(2, 4))) if kind == "image" else (draw(st.integers(2, 10)),)
        labels = rng.integers(0, 3, size=shape)
        labels.flat[0] = 0  # every sample has a normal point
        if i == 0:
            labels.flat[-1] = 2  # a defective sample
        elif i == 1:
            labels[...] = 0  # a normal sample (cloud_roc_auc needs both)
        if kind == "mask":
            truth = labels > 0
        elif kind == "image":
            truth = (labels > 0).astype(draw(st.sampled_from([bool, np.uint8, np.int64, np.float32])))
        else:
            truth = labels.astype(draw(st.sampled_from([np.int64, np.int32, np.uint8])))
        kinds.append(kind)
        y_true.append(truth)
        y_score.append(draw(hnp.arrays(np.float64, shape, elements=scores_of)))  # +-inf included
        points.append(rng.normal(size=(math.prod(shape), 3)))
    return kinds, y_true, y_score, points


def _sample_fault(draw, fault, kinds, y_true, y_score, points, metric, applied):
    """Inject one per-sample fault; returns ``(argument, sample)`` or None if it does not apply."""
    i = draw(st.integers(0, len(kinds) - 1))
    arg = "points" if fault.startswith("points_") else "y_score" if fault.startswith("score_") else "y_true"
    if (arg, i) in applied:
        return None  # one fault per argument and sample
    score, truth = y_score[i], y_true[i]  # untouched: no fault on (arg, i) yet
    j = draw(st.integers(0, 10**6)) % score.size if arg == "y_score" else 0
    if fault == "score_complex":
        y_score[i] = score + 1j
    elif fault == "score_nan":
        y_score[i] = score.copy()
        y_score[i].flat[j] = np.nan
    elif fault == "score_str":
        y_score[i] = score.astype(str)
    elif fault == "score_object":
        y_score[i] = score.astype(object)
        y_score[i].flat[j] = draw(st.sampled_from([None, "1.0", 1j, [1.0]]))
    elif fault == "score_shape":
        y_score[i] = np.append(score.ravel(), 0.0)
    elif fault == "score_ragged":
        y_score[i] = [1.0, [2.0, 3.0]]
    elif fault == "score_none":
        y_score[i] = None
    elif fault == "truth_negative":
        if kinds[i] != "labels":
            return None
        y_true[i] = truth.astype(np.int64)
        y_true[i].flat[0] = -1
    elif fault == "truth_nan":
        y_true[i] = truth.astype(np.float64)
        y_true[i].flat[0] = np.nan
    elif fault == "truth_complex":
        y_true[i] = truth.astype(complex)
    elif fault == "truth_str":
        y_true[i] = truth.astype(str)
    elif fault == "truth_object":
        y_true[i] = truth.astype(object)
        y_true[i].flat[0] = None
    elif fault.startswith("points_"):
        if metric == "cloud_roc_auc" or kinds[i] != "mask":
            return None  # points are only read for boolean masks
        cloud = points[i]
        if fault == "points_nonfinite":
            points[i] = cloud.copy()
            points[i][draw(st.integers(0, len(cloud) - 1)), draw(st.integers(0, 2))] = draw(
                st.sampled_from([np.nan, np.inf, -np.inf]))
        elif fault == "points_shape":
            points[i] = cloud[:, :2] if draw(st.booleans()) else cloud[:-1]
        elif fault == "points_complex":
            points[i] = cloud.astype(complex)
        elif fault == "points_str":
            points[i] = cloud.astype(str)
        elif fault == "points_missing":
            points[i] = None
    else:  # pragma: no cover
        raise AssertionError(fault)
    return arg, i


SAMPLE_FAULTS = [
    "score_complex", "score_nan", "score_str", "score_object", "score_shape", "score_ragged", "score_none",
    "truth_negative", "truth_nan", "truth_complex", "truth_str", "truth_object",
    "points_nonfinite", "points_shape", "points_complex", "points_str", "points_missing",
]
LIST_FAULTS = ["drop_score", "drop_points", "extra_truth", "empty", "not_a_list"]  # in the order applied


@settings(deadline=None)
@given(data=valid_inputs(), faults=st.lists(st.sampled_from(SAMPLE_FAULTS + LIST_FAULTS), max_size=2),
       metric=st.sampled_from(METRICS), draw=st.data())
def test_faults_are_named(data, faults, metric, draw):
    kinds, y_true, y_score, points = data
    n_samples = len(kinds)
    applied = []
    for fault in sorted(faults, key=(SAMPLE_FAULTS + LIST_FAULTS).index):  # per-sample faults first
        if fault in SAMPLE_FAULTS:
            where = _sample_fault(draw.draw, fault, kinds, y_true, y_score, points, metric, applied)
        elif fault == "drop_score":
            y_score, where = y_score[:-1], ("y_score", None)
        elif fault == "drop_points":
            if metric == "cloud_roc_auc":
                continue
            points, where = points[:-1], ("points", None)
        elif fault == "extra_truth":
            y_true, where = [*y_true, np.array([0, 1])], ("y_true", None)
            n_samples += 1
        elif fault == "not_a_list":
            arg = draw.draw(st.sampled_from(["y_true", "y_score"] + ["points"] * (metric != "cloud_roc_auc")))
            bad = draw.draw(st.sampled_from(["abc", 3.0, np.float64(1.0), {"a": 1}, {1.0, 2.0}]))
            y_true, y_score, points = (bad if arg == name else value for name, value in
                                       (("y_true", y_true), ("y_score", y_score), ("points", points)))
            where = (arg, None)
        elif fault == "empty":
            y_true, y_score, points = [], [], []
            where = ("y_true", None)
        if where is not None:
            applied.append(where)
    _check_outcome(metric, y_true, y_score, points, applied, n_samples)


# --------------------------------------------------------------------------- arbitrary entries
ENTRIES = st.one_of(
    hnp.arrays(
        hnp.scalar_dtypes() | hnp.byte_string_dtypes(max_len=2) | hnp.unicode_string_dtypes(max_len=2),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    hnp.arrays(np.int64, st.integers(0, 6), elements=st.integers(-1, 3)),
    hnp.arrays(np.bool_, st.integers(0, 6)),
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6)),
    st.none(),
    st.text(max_size=3),
    st.floats(),
    st.complex_numbers(),
    st.lists(st.floats() | st.integers(-2, 2) | st.sampled_from([10**400, -(2**70)])
             | st.lists(st.floats(), max_size=2), max_size=4),
)
ARGUMENTS = st.lists(ENTRIES, max_size=4) | ENTRIES


@settings(deadline=None)
@given(y_true=ARGUMENTS, y_score=ARGUMENTS, points=st.none() | ARGUMENTS, metric=st.sampled_from(METRICS))
def test_arbitrary_inputs_give_a_result_or_a_named_error(y_true, y_score, points, metric):
    if metric == "au_pro_scorer" and points is None:
        points = y_true if isinstance(y_true, list) else []
    n_samples = max((len(v) if isinstance(v, (list, str)) else v.shape[0] if np.ndim(v) else 0
                    for v in (y_true, y_score, points) if v is not None), default=0)
    _check_outcome(metric, y_true, y_score, points, None, n_samples)


@settings(deadline=None)
@given(data=valid_inputs(), metric=st.sampled_from(METRICS))
def test_valid_inputs_give_finite_results(data, metric):
    _, y_true, y_score, points = data
    _check_outcome(metric, y_true, y_score, points, [], len(y_true))
