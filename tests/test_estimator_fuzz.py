"""Fuzz the public estimators with malformed and valid point-cloud inputs.

Every call of ``fit``, ``score_samples``, ``decision_function``, ``predict``, ``score_clouds``
and ``transform`` must either succeed with finite outputs of the right lengths, or raise
ValueError / TypeError whose message names the argument (``X``, ``X[3]``, ``y``, ``y[0]``):
never an exception from inside torch, scipy or KeOps (RuntimeError, IndexError, KeyError,
LinAlgError, ...), never a NaN score.

The estimators are tiny (k=6, d=8, one block, one epoch, a random teacher); fits for the
inference methods happen once per module.
"""

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skst3d import StudentTeacherDetector, TeacherPretrainer
from skst3d._validation import check_point_clouds
from skst3d.baseline import FPFHMemoryBankDetector
from skst3d.fusion import ScoreFusion
from skst3d.registration import RigidRegistration

K = 6
D = 8


def make_detector():
    return StudentTeacherDetector("random", k=K, d=D, n_blocks=1, n_epochs=1, validation_fraction=0.5, random_state=0)


def make_estimator(kind):
    if kind == "detector":
        return make_detector()
    if kind == "teacher":
        return TeacherPretrainer(d=D, k=K, n_blocks=1, n_epochs=1, samples_per_step=2, n_decoded_points=8, random_state=0)
    if kind == "fpfh":
        return FPFHMemoryBankDetector(k_normals=K, k_features=K, random_state=0)
    if kind == "registration":
        return RigidRegistration(max_iterations=5, n_subsample=32, random_state=0)
    if kind == "fusion":
        return ScoreFusion([("a", make_detector())])
    raise AssertionError(kind)


KINDS = ["detector", "teacher", "fpfh", "registration", "fusion"]
METHODS = {
    "detector": ["score_samples", "decision_function", "predict", "score_clouds"],
    "fusion": ["score_samples", "decision_function", "predict", "score_clouds"],
    "fpfh": ["score_samples", "decision_function", "predict", "score_clouds"],
    "teacher": ["transform", "score_samples"],
    "registration": ["transform", "transforms"],
}


def good_clouds(n_clouds=3, n=40, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_clouds):
        uv = rng.uniform(-1, 1, size=(n, 2))
        out.append(np.c_[uv, 0.2 * np.sin(3 * uv[:, 0])] * 5 + rng.normal(scale=0.05, size=(n, 3)))
    return out


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return {kind: make_estimator(kind).fit(good_clouds()) for kind in KINDS}


# --------------------------------------------------------------------------- strategies

SPECIAL = [np.nan, np.inf, -np.inf, 1e300, -1e300, 1e30, 1e-30, 1e-300]
NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8, np.int8, np.bool_]
BAD_NUMPY_DTYPES = [object, str, np.complex128, "datetime64[s]", "V8"]
TORCH_DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int16, torch.int8,
    torch.uint8, torch.bool, torch.complex64, torch.uint16, torch.float8_e4m3fn,
]


@st.composite
def base_points(draw, n=None):
    """A plausible cloud: n points on a noisy wavy sheet, at some scale and offset."""
    if n is None:
        n = draw(st.integers(0, 30))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([1.0, 1e-3, 1e3, 1e-8, 1e8]))
    offset = draw(st.sampled_from([0.0, 1e6, -1e12]))
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-1, 1, size=(n, 2))
    pts = np.c_[uv, 0.2 * np.sin(3 * uv[:, 0])] + rng.normal(scale=0.05, size=(n, 3))
    return pts * scale + offset


@st.composite
def clouds_entry(draw):
    """One entry of X: a cloud, a malformed cloud or something that is no cloud at all."""
    kind = draw(
        st.sampled_from(
            [
                "float64", "float64", "float64", "dtype", "special", "bad_dtype", "wrong_shape", "ragged",
                "torch", "nested_list", "none", "scalar", "string", "dict", "duplicates", "degenerate",
            ]
        )
    )
    if kind == "float64":
        return draw(base_points())
    if kind == "dtype":
        dtype = np.dtype(draw(st.sampled_from(NUMPY_DTYPES)))
        pts = draw(base_points()) * 10
        if dtype.kind in "iu":
            pts = np.clip(pts, np.iinfo(dtype).min, np.iinfo(dtype).max)
        elif dtype.kind == "f":
            pts = np.clip(pts, -np.finfo(dtype).max, np.finfo(dtype).max)
        return pts.astype(dtype)
    if kind == "special":
        pts = draw(base_points(n=draw(st.integers(1, 30))))
        i = draw(st.integers(0, pts.shape[0] - 1))
        pts[i, draw(st.integers(0, 2))] = draw(st.sampled_from(SPECIAL))
        return pts
    if kind == "bad_dtype":
        pts = draw(base_points())
        dtype = draw(st.sampled_from(BAD_NUMPY_DTYPES))
        if dtype == "datetime64[s]" or dtype == "V8":
            return np.zeros(pts.shape, dtype=dtype)
        return pts.astype(dtype)
    if kind == "wrong_shape":
        n = draw(st.integers(0, 20))
        shape = draw(st.sampled_from([(n, 2), (n, 4), (n,), (n, 3, 1), (), (3,), (1, n, 3), (3, n)]))
        return np.ones(shape)
    if kind == "ragged":
        pts = draw(base_points(n=draw(st.integers(2, 20)))).tolist()
        pts[draw(st.integers(0, len(pts) - 1))] = draw(st.sampled_from([[0.0, 1.0], [0.0, 1.0, 2.0, 3.0], [], None, "xyz"]))
        return pts
    if kind == "torch":
        pts = torch.from_numpy(draw(base_points()) * 10)
        layout = draw(st.sampled_from(["dense", "dense", "dense", "sparse", "meta", "transposed"]))
        if layout == "sparse":
            return pts.to_sparse()
        if layout == "meta":
            return torch.empty(pts.shape, device="meta")
        if layout == "transposed":
            return pts.t().contiguous().t()
        tensor = pts.to(draw(st.sampled_from(TORCH_DTYPES)))
        if draw(st.booleans()) and tensor.is_floating_point():
            tensor = tensor.requires_grad_()
        return tensor
    if kind == "nested_list":
        return draw(base_points()).tolist()
    if kind == "none":
        return None
    if kind == "scalar":
        return draw(st.sampled_from([3.0, 0, np.float32(1.0), True, complex(1, 1)]))
    if kind == "string":
        return draw(st.sampled_from(["cloud.ply", "", b"xyz"]))
    if kind == "dict":
        return {"points": draw(base_points())}
    if kind == "duplicates":  # every point repeated: k-nearest distances of 0
        pts = draw(base_points(n=draw(st.integers(1, 4))))
        return np.repeat(pts, draw(st.integers(1, 12)), axis=0)
    # degenerate but distinct: collinear or coplanar points, or a regular grid
    n = draw(st.integers(4, 30))
    t = np.linspace(0.0, 1.0, n)
    return draw(
        st.sampled_from(
            [
                np.c_[t, 2 * t, -t],
                np.c_[t, np.zeros(n), np.zeros(n)],
                np.c_[np.cos(7 * t), np.sin(7 * t), np.zeros(n)],
                np.stack(np.meshgrid(t[:4], t[:4], t[:2]), -1).reshape(-1, 3),
            ]
        )
    )


@st.composite
def X_values(draw):
    kind = draw(st.sampled_from(["list", "list", "list", "tuple", "good", "not_a_list", "empty", "array", "tensor3d"]))
    if kind in ("list", "tuple"):
        entries = draw(st.lists(clouds_entry(), min_size=1, max_size=3))
        if draw(st.booleans()):  # mostly valid collections with one odd cloud
            entries = good_clouds(draw(st.integers(1, 3)), n=draw(st.integers(7, 30)), seed=1) + entries[:1]
        return entries if kind == "list" else tuple(entries)
    if kind == "good":
        return good_clouds(draw(st.integers(1, 3)), n=draw(st.integers(7, 40)), seed=draw(st.integers(0, 9)))
    if kind == "not_a_list":
        return draw(st.sampled_from([None, 5, 2.5, "clouds", b"clouds", {"a": 1}, object(), np.float64(1.0), {1, 2}]))
    if kind == "empty":
        return draw(st.sampled_from([[], (), np.zeros((0, 10, 3)), torch.zeros((0, 10, 3))]))
    if kind == "array":
        shape = draw(st.sampled_from([(2, 20, 3), (2, 20, 2), (20, 3), (20,), (), (1, 2, 20, 3), (2, 0, 3)]))
        return np.random.default_rng(0).normal(size=shape)
    return torch.randn(2, 20, 3, dtype=draw(st.sampled_from([torch.float32, torch.float64, torch.float16])))


@st.composite
def y_values(draw, X):
    """Labels for X: None, matching labels, or labels wrong in one way."""
    kind = draw(st.sampled_from(["none", "none", "match", "match", "bad"]))
    try:
        lengths = [len(c) for c in check_point_clouds(X)]
    except (ValueError, TypeError):
        lengths = [10]
    if kind == "none":
        return None
    labels = [np.zeros(n, dtype=draw(st.sampled_from([np.int64, np.bool_, np.float64]))) for n in lengths]
    if kind == "match":
        if draw(st.booleans()) and labels and len(labels[0]):
            labels[0][0] = 1  # that cloud is left out of training
        return labels
    fault = draw(
        st.sampled_from(
            [
                "count", "length", "nan", "negative", "fraction", "string", "2d", "1d_array", "scalar", "none_entry",
                "dict", "ragged", "huge", "uint64", "meta", "complex",
            ]
        )
    )
    if fault == "count":
        return labels + [np.zeros(3, int)]
    if fault == "length":
        labels[0] = np.zeros(lengths[0] + 1, int)
    elif fault == "nan":
        labels[0] = np.full(lengths[0], np.nan)
    elif fault == "negative":
        labels[0] = -np.ones(lengths[0], int)
    elif fault == "fraction":
        labels[0] = np.full(lengths[0], 0.5)
    elif fault == "string":
        labels[0] = np.array(["a"] * lengths[0])
    elif fault == "2d":
        labels[0] = np.zeros((lengths[0], 2), int)
    elif fault == "1d_array":
        return np.zeros(sum(lengths), int)
    elif fault == "scalar":
        return 0
    elif fault == "none_entry":
        labels[0] = None
    elif fault == "ragged":
        labels[0] = [0] * max(lengths[0] - 1, 0) + [[0, 1]]
    elif fault == "huge":
        labels[0] = np.full(lengths[0], draw(st.sampled_from([1e300, 2.0**63, np.inf])))
    elif fault == "uint64":
        labels[0] = np.full(lengths[0], 2**64 - 1, dtype=np.uint64)
    elif fault == "meta":
        labels[0] = torch.empty(lengths[0], device="meta")
    elif fault == "complex":
        labels[0] = np.zeros(lengths[0], complex)
    else:
        return {"labels": labels}
    return labels


# --------------------------------------------------------------------------- checks

ARGUMENT = re.compile(r"(?<![A-Za-z0-9_])(X|y)(\[\d+\])?(?![A-Za-z0-9_])")

# Coordinates from this magnitude on meet the float32 and overflow defects listed below.
HUGE = 1e18

# Every defect the fuzzer found is fixed; an exception it tolerates would hide a new one.
KNOWN_ERRORS = []


def _has_huge(X):
    try:
        return any(np.abs(c).max(initial=0.0) >= HUGE for c in check_point_clouds(X))
    except (ValueError, TypeError):
        return False


def _known_error(kind, X, exc):
    return any(
        kind in kinds and (not huge_only or _has_huge(X)) and isinstance(exc, error) and pattern.search(str(exc))
        for kinds, huge_only, error, pattern in KNOWN_ERRORS
    )


def _expected_lengths(X):
    return [len(c) for c in check_point_clouds(X)]


def _check_output(kind, method, X, out):
    lengths = _expected_lengths(X)
    # Known defect: a coordinate HUGE away from the rest overflows float32 in the networks
    # (NaN scores, NaN descriptors) and in RigidRegistration.transform's float32 output.
    finite = not _has_huge(X) or kind == "fpfh"
    if method == "score_clouds" or (kind == "teacher" and method == "score_samples"):
        out = np.asarray(out)
        assert out.shape == (len(lengths),), out.shape
        assert np.isfinite(out).all() or not finite, out
    elif method == "transforms":
        rotations, translations, rmse = out
        assert rotations.shape == (len(lengths), 3, 3) and translations.shape == (len(lengths), 3)
        assert rmse.shape == (len(lengths),)
        assert all(np.isfinite(a).all() for a in (rotations, translations, rmse)) or not finite
    else:
        assert isinstance(out, list) and len(out) == len(lengths), (type(out), len(out), lengths)
        for values, n in zip(out, lengths):
            values = np.asarray(values)
            if method == "predict":
                assert values.shape == (n,) and set(np.unique(values)) <= {-1, 1}, values
                continue
            expected = {"teacher": (n, D), "registration": (n, 3)}.get(kind, (n,))
            assert values.shape == expected, (values.shape, expected)
            assert np.isfinite(values).all() or not finite, values


def _run(kind, X, call):
    """(True, result) or (False, None) after checking that ``call`` raised a named error."""
    try:
        with warnings.catch_warnings():
            # The estimators' own warnings are fine (e.g. offset_ taken from training clouds);
            # numpy's RuntimeWarnings (overflow, invalid value) mean a NaN is on its way.
            warnings.simplefilter("error" if not _has_huge(X) else "ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", "no training cloud was held out", UserWarning)
            return True, call()
    except (ValueError, TypeError) as exc:
        if not _known_error(kind, X, exc):
            assert ARGUMENT.search(str(exc)), f"{type(exc).__name__} names no argument: {exc}"
        return False, None
    except Exception as exc:
        if _known_error(kind, X, exc):
            return False, None
        raise AssertionError(f"{type(exc).__name__} escaped from inside: {exc!r}") from exc


@pytest.mark.parametrize("kind", KINDS)
@settings(deadline=None)
@given(data=st.data())
def test_fit_fuzz(kind, data):
    X = data.draw(X_values(), label="X")
    y = data.draw(y_values(X), label="y")
    estimator = make_estimator(kind)
    ok, fitted_estimator = _run(kind, X, lambda: estimator.fit(X, y))
    if not ok:
        return
    for attribute in ("scale_", "offset_"):
        if hasattr(fitted_estimator, attribute):
            assert np.isfinite(getattr(fitted_estimator, attribute)), attribute
    method = METHODS[kind][0]
    ok, out = _run(kind, X, lambda: getattr(fitted_estimator, method)(X))
    if ok:
        _check_output(kind, method, X, out)


@pytest.mark.parametrize("kind", KINDS)
@settings(deadline=None)
@given(data=st.data())
def test_inference_fuzz(kind, data, fitted):
    X = data.draw(X_values(), label="X")
    method = data.draw(st.sampled_from(METHODS[kind]), label="method")
    ok, out = _run(kind, X, lambda: getattr(fitted[kind], method)(X))
    if ok:
        _check_output(kind, method, X, out)


# --------------------------------------------------------------------------- fixed cases

_GOOD = good_clouds(2, n=20, seed=4)
_CLOUD = torch.from_numpy(_GOOD[0])
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # quantized tensors are deprecated
    _QUANTIZED = torch.quantize_per_tensor(_CLOUD.float(), 0.1, 0, torch.qint8)


def _labels(*faulty):
    return [np.zeros(20, int), *faulty]


# (id, X, y, the argument the message must name): inputs the fuzzer draws only now and then,
# every one of them once through every estimator and method.
ODD_INPUTS = [
    ("meta-tensor", [_GOOD[0], torch.empty(20, 3, device="meta")], None, "X[1]"),
    ("sparse-tensor", [_CLOUD.to_sparse()], None, "X[0]"),
    ("quantized-tensor", [_QUANTIZED], None, "X[0]"),
    ("float8-tensor", [_CLOUD.to(torch.float8_e4m3fn)], None, "X[0]"),
    ("complex-tensor", [_CLOUD.to(torch.complex64)], None, "X[0]"),
    ("ragged-rows", [_GOOD[0], [[0.0, 1.0, 2.0]] * 8 + [[0.0, 1.0]]], None, "X[1]"),
    ("structured-array", [np.zeros(20, dtype=[("x", float), ("y", float), ("z", float)])], None, "X[0]"),
    ("none-entry", [_GOOD[0], None], None, "X[1]"),
    ("nan", [_GOOD[0], np.where(np.arange(60).reshape(20, 3) == 7, np.nan, _GOOD[1])], None, "X[1]"),
    ("too-few-points", [_GOOD[0][:3]], None, "X[0]"),
    ("single-cloud", _GOOD[0], None, "X"),
    ("empty", [], None, "X"),
    ("labels-ragged", _GOOD, _labels([0] * 19 + [[0, 1]]), "y[1]"),
    ("labels-meta", _GOOD, _labels(torch.empty(20, device="meta")), "y[1]"),
    ("labels-sparse", _GOOD, _labels(torch.zeros(20).to_sparse()), "y[1]"),
    ("labels-huge-float", _GOOD, _labels(np.full(20, 1e300)), "y[1]"),
    ("labels-2**63", _GOOD, _labels(np.full(20, 2.0**63)), "y[1]"),
    ("labels-huge-uint64", _GOOD, _labels(np.full(20, 2**64 - 1, dtype=np.uint64)), "y[1]"),
    ("labels-count", _GOOD, _labels(), "y"),
    ("labels-length", _GOOD, _labels(np.zeros(21, int)), "y[1]"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case, X, y, argument", ODD_INPUTS, ids=[case[0] for case in ODD_INPUTS])
def test_odd_inputs_raise_errors_naming_the_argument(kind, case, X, y, argument, fitted):
    if kind in ("registration", "teacher") and y is not None:
        pytest.skip("RigidRegistration and TeacherPretrainer ignore y")
    calls = [lambda: make_estimator(kind).fit(X, y)]
    if y is None:
        calls += [lambda method=method: getattr(fitted[kind], method)(X) for method in METHODS[kind]]
    for call in calls:
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_\[])", str(info.value)), str(info.value)


# --------------------------------------------------------------------------- known defects

_NETWORK_KINDS = ["detector", "teacher", "fusion"]


def _named_error_or_finite(call, X):
    """The contract: a ValueError/TypeError naming X (or X[i]), or finite outputs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = call()
    except (ValueError, TypeError) as exc:
        assert ARGUMENT.search(str(exc)), f"{type(exc).__name__} names no argument: {exc}"
        return
    if isinstance(out, tuple):
        out = list(out)
    assert all(np.isfinite(np.asarray(o, dtype=float)).all() for o in out), "non-finite output"


@pytest.mark.parametrize("kind", _NETWORK_KINDS)
def test_coincident_training_points_error_names_X(kind):
    X = [np.zeros((10, 3)), np.repeat(_GOOD[0][:2], 7, axis=0)]
    _named_error_or_finite(lambda: make_estimator(kind).fit(X), X)


@pytest.mark.parametrize("kind", _NETWORK_KINDS)
@pytest.mark.parametrize("far", [1e20, 1e39, 1e300])
def test_far_outlier_scores_finite_or_named_error(kind, far, fitted):
    cloud = _GOOD[0].copy()
    cloud[3, 2] = far
    _named_error_or_finite(lambda: getattr(fitted[kind], METHODS[kind][0])([cloud]), [cloud])


@pytest.mark.parametrize("method", ["fit", "score_samples"])
def test_fpfh_huge_coordinate(method, fitted):
    cloud = _GOOD[0].copy()
    cloud[3, 2] = 1e300
    if method == "fit":
        def call():
            return [np.array([make_estimator("fpfh").fit([cloud, _GOOD[1]]).offset_])]
    else:
        def call():
            return fitted["fpfh"].score_samples([cloud])
    try:
        _named_error_or_finite(call, [cloud])
    except IndexError as exc:
        raise AssertionError(f"IndexError escaped: {exc}") from exc


@pytest.mark.parametrize("far", [1e40, 1e300])
def test_registration_huge_coordinate(far, fitted):
    cloud = _GOOD[0].copy()
    cloud[3, 2] = far
    _named_error_or_finite(lambda: fitted["registration"].transform([cloud]), [cloud])
