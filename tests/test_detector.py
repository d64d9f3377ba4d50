"""StudentTeacherDetector: semantics of equations (4)-(6), sklearn behaviour, persistence."""

import copy
import pickle

import joblib
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skst3d import StudentTeacherDetector, TeacherPretrainer
from skst3d.nn import NeighborGraph

# Raw errors (the paper's score, equation 6), which the by-hand checks below recompute.
# the paper's score (no normalisation, no smoothing), which the tests recompute by hand
SMALL = dict(k=6, d=8, n_blocks=1, n_epochs=3, score_normalization="none", smoothing=0, registration=False, fusion=None)


def wavy_clouds(n_clouds=5, n=160, seed=0, bump=False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_clouds):
        uv = rng.uniform(-1, 1, size=(n, 2))
        z = 0.2 * np.sin(3 * uv[:, 0])
        if bump:
            z = z + 0.6 * np.exp(-((uv[:, 0] - 0.3) ** 2 + uv[:, 1] ** 2) / 0.02)
        out.append(np.c_[uv * 20, z * 20] + rng.normal(scale=0.05, size=(n, 3)))
    return out


@pytest.fixture(scope="module")
def fitted():
    return StudentTeacherDetector("random", **SMALL, random_state=0).fit(wavy_clouds())


def test_init_only_stores():
    det = StudentTeacherDetector(teacher="nonsense", k=0)
    assert det.teacher == "nonsense"
    with pytest.raises(ValueError):
        det.fit(wavy_clouds())


def test_not_fitted():
    with pytest.raises(NotFittedError):
        StudentTeacherDetector().score_samples(wavy_clouds(1))


def test_score_is_minus_regression_error_computed_independently(fitted):
    cloud = wavy_clouds(1, seed=3)[0]
    scores = fitted.score_samples([cloud])[0]
    # equation (6) by hand: kNN graph of the scaled cloud, teacher and student run separately
    pts = torch.as_tensor(cloud / fitted.scale_, dtype=torch.float32)
    idx = torch.from_numpy(cKDTree(cloud).query(cloud, SMALL["k"] + 1)[1][:, 1:])
    graph = NeighborGraph.from_knn(pts, idx)
    with torch.no_grad():
        teacher = fitted.teacher_.network_(graph).numpy()
        student = fitted.student_(graph).numpy()
    error = np.linalg.norm(student - (teacher - fitted.feature_mean_) / fitted.feature_std_, axis=1)
    np.testing.assert_allclose(scores, -error, rtol=1e-4, atol=1e-5)


def test_scale_and_standardisation(fitted):
    clouds = wavy_clouds()
    k = SMALL["k"]
    total = sum(cKDTree(c).query(c, k + 1)[0][:, 1:].sum() for c in clouds)
    assert fitted.scale_ == pytest.approx(total / (k * sum(map(len, clouds))), rel=1e-5)
    assert fitted.feature_mean_.shape == fitted.feature_std_.shape == (SMALL["d"],)
    assert np.all(fitted.feature_std_ > 0)


def test_offset_flags_contamination_fraction():
    clouds = wavy_clouds(6)
    det = StudentTeacherDetector("random", **SMALL, contamination=0.1, validation_fraction=0.5, random_state=0)
    det.fit(clouds)
    # the held-out clouds are those not used for training; over all training clouds the
    # flagged fraction should be near 10 %
    flagged = np.mean(np.concatenate(det.predict(clouds)) == -1)
    assert 0.0 < flagged < 0.3
    decision = det.decision_function(clouds)
    for d, s in zip(decision, det.score_samples(clouds)):
        np.testing.assert_allclose(d, s - det.offset_)


def test_predict_and_fit_predict_shapes(fitted):
    clouds = wavy_clouds(2, seed=4)
    labels = fitted.predict(clouds)
    assert [l.shape for l in labels] == [(160,), (160,)]
    assert set(np.concatenate(labels)) <= {-1, 1}
    out = clone(fitted).fit_predict(wavy_clouds())
    assert len(out) == 5


def test_score_clouds_is_the_mean_of_the_lowest_point_scores(fitted):
    clouds = wavy_clouds(3, seed=6)
    lowest = [np.sort(s)[: max(1, round(0.03 * len(s)))].mean() for s in fitted.score_samples(clouds)]
    np.testing.assert_allclose(fitted.score_clouds(clouds), lowest, rtol=1e-12)


def test_student_learns_and_anomaly_scores_higher():
    train = wavy_clouds(8)
    det = StudentTeacherDetector(
        "random", k=8, d=16, n_blocks=1, n_epochs=40, score_normalization="none", smoothing=0, random_state=0
    ).fit(train)
    assert det.loss_curve_[-1] < 0.5 * det.loss_curve_[0]
    (test,) = wavy_clouds(1, seed=11, bump=True)
    anomaly = -det.score_samples([test])[0]
    uv = test[:, :2] / 20
    in_bump = ((uv[:, 0] - 0.3) ** 2 + uv[:, 1] ** 2) < 0.01
    assert anomaly[in_bump].mean() > 2 * anomaly[~in_bump].mean()


def test_y_leaves_out_anomalous_clouds():
    clouds = wavy_clouds(4)
    y = [np.zeros(160, bool) for _ in clouds]
    y[0][3] = True
    det = StudentTeacherDetector("random", **SMALL, validation_fraction=0, random_state=0)
    det.fit(clouds, y)
    ref = StudentTeacherDetector("random", **SMALL, validation_fraction=0, random_state=0).fit(clouds[1:])
    assert det.scale_ == pytest.approx(ref.scale_)
    with pytest.raises(ValueError, match="anomaly-free"):
        StudentTeacherDetector("random", **SMALL).fit(clouds[:1], [y[0]])
    with pytest.raises(ValueError):
        StudentTeacherDetector("random", **SMALL).fit(clouds, [np.zeros(3)] * 4)


def test_n_points_reduces_and_scores_every_input_point():
    clouds = wavy_clouds(4, n=300)
    det = StudentTeacherDetector("random", **SMALL, n_points=100, random_state=0).fit(clouds)
    scores = det.score_samples(clouds[:1])[0]
    assert scores.shape == (300,)
    assert len(np.unique(scores)) <= 100  # carried from the 100 sampled points


def test_fitted_teacher_used_as_is_and_d_mismatch():
    clouds = wavy_clouds()
    teacher = TeacherPretrainer(d=8, k=6, n_blocks=1, n_epochs=1, n_decoded_points=8, random_state=0).fit(clouds)
    det = StudentTeacherDetector(teacher, **SMALL, random_state=0).fit(clouds)
    assert det.teacher_ is teacher
    with pytest.raises(ValueError, match="d=8"):
        StudentTeacherDetector(teacher, k=6, d=16).fit(clouds)


def test_unfitted_teacher_is_pretrained_and_cached(tmp_path, monkeypatch):
    import skst3d.detector as mod

    monkeypatch.setattr(mod, "_BUILTIN_SCENES", dict(n_scenes=2, n_points=300))
    teacher = TeacherPretrainer(n_blocks=1, n_epochs=1, n_decoded_points=8, samples_per_step=2, random_state=0)
    det = StudentTeacherDetector(teacher, **SMALL, memory=str(tmp_path), random_state=0).fit(wavy_clouds())
    assert det.teacher_.d == 8 and det.teacher_.k == 6
    assert not hasattr(teacher, "network_")  # the user's object is cloned, not fitted
    again = StudentTeacherDetector(teacher, **SMALL, memory=str(tmp_path), random_state=0).fit(wavy_clouds())
    for a, b in zip(det.teacher_.network_.parameters(), again.teacher_.network_.parameters()):
        assert torch.equal(a, b)


def test_repeatable_on_cpu():
    a = StudentTeacherDetector("random", **SMALL, random_state=5).fit(wavy_clouds())
    b = StudentTeacherDetector("random", **SMALL, random_state=5).fit(wavy_clouds())
    np.testing.assert_array_equal(a.score_samples(wavy_clouds(1))[0], b.score_samples(wavy_clouds(1))[0])


def test_pickle_and_joblib_identical_scores(fitted, tmp_path):
    clouds = wavy_clouds(2, seed=8)
    expected = fitted.score_samples(clouds)
    blob = pickle.dumps(fitted)
    # only the networks' weights (teacher with its decoder, student) and a few arrays: no
    # cached graphs, descriptors or compiled objects
    n_params = sum(p.numel() for m in (fitted.teacher_.network_, fitted.teacher_.decoder_, fitted.student_)
                   for p in m.parameters())
    assert len(blob) < 4 * n_params * 1.1 + 50_000
    assert b"LazyTensor" not in blob
    for got, exp in zip(pickle.loads(blob).score_samples(clouds), expected):
        np.testing.assert_array_equal(got, exp)
    joblib.dump(fitted, tmp_path / "d.joblib")
    for got, exp in zip(joblib.load(tmp_path / "d.joblib").score_samples(clouds), expected):
        np.testing.assert_array_equal(got, exp)


def test_interrupted_fit_leaves_unfitted(monkeypatch):
    import skst3d.detector as mod

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "fit_students", boom)
    det = StudentTeacherDetector("random", **SMALL)
    with pytest.raises(KeyboardInterrupt):
        det.fit(wavy_clouds())
    assert not any(name.endswith("_") and not name.startswith("_") for name in vars(det))


def test_refit_after_interrupt_is_clean(monkeypatch, fitted):
    det = pickle.loads(pickle.dumps(fitted))
    before = det.offset_
    import skst3d.detector as mod

    monkeypatch.setattr(mod, "fit_students", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        det.fit(wavy_clouds(3, seed=1))
    assert det.offset_ == before  # the old fit is untouched


@pytest.mark.cuda
def test_cuda_fit_loads_on_cpu():
    det = StudentTeacherDetector("random", **SMALL, device="cuda", random_state=0).fit(wavy_clouds())
    loaded = pickle.loads(pickle.dumps(det))
    loaded.set_params(device="cpu")
    a = loaded.score_samples(wavy_clouds(1))[0]
    b = det.score_samples(wavy_clouds(1))[0]
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def _by_hand(det, cloud):
    """Teacher target and each student's output on the scaled cloud's kNN graph."""
    pts = torch.as_tensor(cloud / det.scale_, dtype=torch.float32)
    idx = torch.from_numpy(cKDTree(cloud).query(cloud, det.k + 1)[1][:, 1:])
    graph = NeighborGraph.from_knn(pts, idx)
    with torch.no_grad():
        target = (det.teacher_.network_(graph).numpy() - det.feature_mean_) / det.feature_std_
        outputs = [s(graph).numpy() for s in det.students_]
    return target, outputs, idx.numpy()


def test_ensemble_score_is_rms_of_student_errors():
    det = StudentTeacherDetector("random", **SMALL, n_students=3, random_state=0).fit(wavy_clouds())
    assert len(det.students_) == 3 and det.student_ is det.students_[0]
    cloud = wavy_clouds(1, seed=12)[0]
    target, outputs, _ = _by_hand(det, cloud)
    squared = np.mean([((o - target) ** 2).sum(1) for o in outputs], axis=0)
    np.testing.assert_allclose(-det.score_samples([cloud])[0], np.sqrt(squared), rtol=1e-4, atol=1e-5)
    # students start from different weights
    assert not torch.equal(det.students_[0].head[0].weight, det.students_[1].head[0].weight)


def test_smoothing_averages_over_neighbourhoods():
    det = StudentTeacherDetector("random", **dict(SMALL, smoothing=2), random_state=0).fit(wavy_clouds())
    cloud = wavy_clouds(1, seed=13)[0]
    target, (output,), idx = _by_hand(det, cloud)
    anomaly = np.linalg.norm(output - target, axis=1)
    for _ in range(2):
        anomaly = np.c_[anomaly, anomaly[idx]].mean(1)  # itself and its k neighbours
    np.testing.assert_allclose(-det.score_samples([cloud])[0], anomaly, rtol=1e-4, atol=1e-5)


def test_cosine_schedule_follows_the_half_cosine(monkeypatch):
    recorded = []
    original = torch.optim.lr_scheduler.CosineAnnealingLR

    class Recording(original):
        def step(self, *args, **kwargs):
            super().step(*args, **kwargs)
            recorded.append(self.optimizer.param_groups[0]["lr"])

    monkeypatch.setattr(torch.optim.lr_scheduler, "CosineAnnealingLR", Recording)
    lr, epochs = 4e-3, 4
    StudentTeacherDetector(
        "random", **dict(SMALL, n_epochs=epochs), learning_rate=lr, learning_rate_schedule="cosine", random_state=0
    ).fit(wavy_clouds())
    # the scheduler's constructor steps once (the starting rate), then one step per epoch
    expected = [lr * (1 + np.cos(np.pi * t / epochs)) / 2 for t in range(0, epochs + 1)]
    np.testing.assert_allclose(recorded, expected, atol=1e-12)
    recorded.clear()
    StudentTeacherDetector("random", **SMALL, learning_rate_schedule="constant", random_state=0).fit(wavy_clouds())
    assert recorded == []  # the paper's constant rate


def test_identity_rotation_augmentation_equals_no_augmentation(monkeypatch):
    # The augmented path recomputes the teacher's targets on the turned graph: with the
    # identity it must train exactly the unaugmented student.
    import skst3d.geometry as geometry

    plain = StudentTeacherDetector("random", **SMALL, random_state=0).fit(wavy_clouds())
    monkeypatch.setattr(geometry, "random_rotation", lambda degrees, rng: np.eye(3))
    same = StudentTeacherDetector("random", **SMALL, rotation_augmentation=30.0, random_state=0).fit(wavy_clouds())
    np.testing.assert_allclose(same.loss_curve_, plain.loss_curve_, rtol=1e-5)
    test = wavy_clouds(1, seed=3)
    np.testing.assert_allclose(same.score_samples(test)[0], plain.score_samples(test)[0], rtol=1e-4, atol=1e-6)


def test_rotation_augmentation_makes_turned_parts_look_normal():
    train = wavy_clouds(8)
    turn = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # 90 degrees about x: stood up
    (test,) = wavy_clouds(1, seed=11)
    params = dict(k=8, d=16, n_blocks=1, n_epochs=40, score_normalization="none", smoothing=0, random_state=0,
                  registration=False, fusion=None)
    errors = {}
    for degrees in (0.0, 180.0):
        det = StudentTeacherDetector("random", **params, rotation_augmentation=degrees).fit(train)
        upright, turned = (-det.score_samples([c])[0].mean() for c in (test, test @ turn.T))
        errors[degrees] = turned / upright
    # Without augmentation the stood-up part is unlike anything seen (measured ratio 1.32);
    # with uniform rotations it scores as normal as the upright one (0.92).
    assert errors[0.0] > 1.2
    assert errors[180.0] < 1.1


def test_registration_scores_a_turned_cloud_like_the_original():
    # Registered onto the reference training cloud, a turned copy gives nearly the same scores
    # (ICP stops within its tolerance, so the two poses differ slightly), while without
    # registration the turn changes them (measured: mean difference 0.05 against 0.33).
    from skst3d.datasets import make_synthetic_parts
    from skst3d.geometry import random_rotation

    data = make_synthetic_parts(n_train=4, n_test=1, part_types=["bracket"], n_points=1024, random_state=0)
    turned = data.test[0] @ random_rotation(60.0, random_state=1).T + 40.0
    params = dict(k=8, d=16, n_blocks=1, n_epochs=2, score_normalization="location", fusion=None, random_state=0)
    registered = StudentTeacherDetector("random", **params).fit(data.train)  # registration=True: the default
    assert registered.registration_ is not None
    a, b = registered.score_samples([data.test[0], turned])
    registered_difference = np.abs(a - b).mean()
    assert np.corrcoef(a, b)[0, 1] > 0.97
    plain = StudentTeacherDetector("random", registration=False, **params).fit(data.train)
    assert plain.registration_ is None
    a, b = plain.score_samples([data.test[0], turned])
    assert np.abs(a - b).mean() > 4 * registered_difference
    with pytest.raises(ValueError, match="registration"):
        registered.set_params(registration=False).score_samples([turned])


def test_fusion_companion_keeps_the_training_density_and_follows_n_jobs(monkeypatch):
    import skst3d.detector as detector_module

    # with the cap at 100 points, training clouds of 160 and 200 points: every cloud keeps
    # the share 100 / 200 (the largest), so a scored cloud of the training density keeps it too
    monkeypatch.setattr(detector_module, "_FUSION_MAX_POINTS", 100)
    train = wavy_clouds(3) + wavy_clouds(1, n=200, seed=4)
    det = StudentTeacherDetector("random", **dict(SMALL, fusion="fpfh"), validation_fraction=0.25,
                                 random_state=0).fit(train)
    assert det.fusion_.n_points == pytest.approx(0.5) and det.fusion_.sampling == "random"
    monkeypatch.setattr(detector_module, "_FUSION_MAX_POINTS", 1000)  # no cap reached: every point
    assert StudentTeacherDetector("random", **dict(SMALL, fusion="fpfh"), random_state=0).fit(
        wavy_clouds(3)).fusion_.n_points is None
    det.set_params(n_jobs=2).score_samples(wavy_clouds(1, seed=7))
    assert det.fusion_.n_jobs == 2


@pytest.mark.parametrize("k", [6, 32])
def test_fusion_averages_the_standardised_anomalies_of_both_methods(k, monkeypatch):
    # With fusion, a point's anomaly is the mean over 3D-ST and the FPFH memory bank of
    # (anomaly - median) / (99th percentile - median), the statistics taken on held-out clouds.
    # With k >= the companion's 32 FPFH neighbours, the companion reuses 3D-ST's kNN graph
    # instead of its own k-d tree query: the scores must be those of the companion alone.
    from skst3d.baseline import FPFHMemoryBankDetector
    from skst3d.geometry import knn_graph

    train, test = wavy_clouds(6), wavy_clouds(2, seed=9, bump=True)
    det = StudentTeacherDetector("random", **dict(SMALL, k=k, fusion="fpfh"), validation_fraction=0.34,
                                 random_state=0).fit(train)
    assert isinstance(det.fusion_, FPFHMemoryBankDetector)
    import skst3d.baseline as baseline_module

    given = []
    fpfh = baseline_module._fpfh_and_neighbours
    monkeypatch.setattr(baseline_module, "_fpfh_and_neighbours",
                        lambda *args: given.append(args[-1]) or fpfh(*args))
    det.score_samples(test[:1])
    if k < 32:
        assert given == [None]
    else:
        np.testing.assert_array_equal(given[0], knn_graph(torch.as_tensor(test[0]), k)[0].numpy())
    monkeypatch.undo()
    st_only = copy.deepcopy(det)
    st_only.fusion_ = st_only.fusion_scales_ = None
    st = [-s for s in st_only.score_samples(test)]
    fp = [-s for s in det.fusion_.score_samples(test)]
    medians, scales = det.fusion_scales_.medians, det.fusion_scales_.scales
    for got, a, b in zip(det.score_samples(test), st, fp):
        want = ((a - medians[0]) / scales[0] + (b - medians[1]) / scales[1]) / 2
        # shared neighbours: the same sets, so only the float order of the FPFH sums can differ
        np.testing.assert_allclose(-got, want, rtol=1e-10 if k < 32 else 1e-6)
    assert scales.min() > 0 and det.offset_ < 0
    with pytest.raises(ValueError, match="fusion"):
        det.set_params(fusion=None).score_samples(test)
