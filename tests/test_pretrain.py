"""TeacherPretrainer: scikit-learn behaviour, training semantics, persistence."""

import os
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from scipy.spatial import cKDTree

from skst3d import TeacherPretrainer
from skst3d._training import InconsistentVersionWarning

SMALL = dict(d=8, k=6, n_blocks=1, n_epochs=3, samples_per_step=4, n_decoded_points=16)


def surface_clouds(n_clouds=4, n=150, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_clouds):
        uv = rng.uniform(-1, 1, size=(n, 2))
        z = 0.3 * np.sin(2 * uv[:, 0]) * np.cos(uv[:, 1])
        out.append(np.c_[uv, z] * 10.0 + rng.normal(size=3))
    return out


@pytest.fixture(scope="module")
def fitted():
    return TeacherPretrainer(**SMALL, random_state=0).fit(surface_clouds())


def test_init_stores_parameters_only():
    t = TeacherPretrainer(d=5, k=-1)  # invalid values are accepted until fit
    assert t.get_params()["d"] == 5 and not hasattr(t, "network_")
    with pytest.raises(ValueError):
        t.fit(surface_clouds())


def test_not_fitted_errors():
    t = TeacherPretrainer(**SMALL)
    for method in (t.transform, t.score_samples):
        with pytest.raises(NotFittedError):
            method(surface_clouds(1))


def test_scale_matches_equation_4(fitted):
    clouds = surface_clouds()
    k = SMALL["k"]
    dists = [cKDTree(c).query(c, k + 1)[0][:, 1:] for c in clouds]
    expected = sum(d.sum() for d in dists) / (k * sum(len(c) for c in clouds))
    assert fitted.scale_ == pytest.approx(expected, rel=1e-5)


def test_fitted_attributes(fitted):
    assert len(fitted.loss_curve_) == SMALL["n_epochs"] == len(fitted.validation_loss_curve_)
    assert 0 <= fitted.best_epoch_ < SMALL["n_epochs"]
    assert fitted.best_loss_ == pytest.approx(min(fitted.validation_loss_curve_))
    assert fitted.n_features_in_ == 3


def test_repeatable_on_cpu():
    a = TeacherPretrainer(**SMALL, random_state=3).fit(surface_clouds())
    b = TeacherPretrainer(**SMALL, random_state=3).fit(surface_clouds())
    assert a.loss_curve_ == b.loss_curve_
    for pa, pb in zip(a.network_.parameters(), b.network_.parameters()):
        assert torch.equal(pa, pb)


def test_training_reduces_reconstruction_loss():
    clouds = surface_clouds(3)
    t = TeacherPretrainer(**dict(SMALL, n_epochs=25), validation_fraction=0, random_state=0).fit(clouds)
    assert t.loss_curve_[-1] < 0.7 * t.loss_curve_[0]
    # the kept epoch is the best training epoch when nothing is held out
    assert t.best_epoch_ == int(np.argmin(t.loss_curve_))


def test_transform_shape_and_scale_argument(fitted):
    clouds = surface_clouds(2)
    out = fitted.transform(clouds)
    assert [o.shape for o in out] == [(150, 8), (150, 8)] and out[0].dtype == np.float32
    # scaling the input and passing the matching scale gives the same descriptors
    scaled = fitted.transform([c * 3.0 for c in clouds], scale=3.0 * fitted.scale_)
    np.testing.assert_allclose(scaled[0], out[0], atol=1e-4)


def test_score_samples_is_minus_chamfer_and_repeatable(fitted):
    clouds = surface_clouds(2, seed=5)
    s1, s2 = fitted.score_samples(clouds), fitted.score_samples(clouds)
    assert s1.shape == (2,) and np.all(s1 < 0)
    np.testing.assert_array_equal(s1, s2)
    assert fitted.score(clouds) == pytest.approx(s1.mean())


def test_reconstruct_returns_centred_fields(fitted):
    cloud = surface_clouds(1)[0]
    (res,) = fitted.reconstruct([cloud], [[0, 5]])
    assert res.decoded.shape == (2, SMALL["n_decoded_points"], 3)
    assert len(res.fields) == 2
    for field, mean in zip(res.fields, res.means):
        np.testing.assert_allclose(field.mean(0), 0, atol=1e-4)
        assert np.linalg.norm(mean - cloud[0]) < 20
    with pytest.raises(ValueError, match="outside"):
        fitted.reconstruct([cloud], [[1000]])


def test_clone_and_params():
    t = TeacherPretrainer(d=16, random_state=1)
    c = clone(t)
    assert c.get_params() == t.get_params()
    c.set_params(d=32)
    assert c.d == 32 and t.d == 16


def test_grid_search_default_score():
    clouds = surface_clouds(6)
    search = GridSearchCV(TeacherPretrainer(**SMALL, random_state=0), {"d": [4, 8]}, cv=2)
    search.fit(clouds)
    assert search.best_params_["d"] in (4, 8)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_pickle_and_joblib_round_trip(fitted, tmp_path):
    clouds = surface_clouds(1, seed=9)
    expected = fitted.transform(clouds)[0]
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.transform(clouds)[0], expected)
    joblib.dump(fitted, tmp_path / "t.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "t.joblib").transform(clouds)[0], expected)
    assert loaded.score(clouds) == fitted.score(clouds)


def test_pickle_from_other_version_warns(fitted):
    state = fitted.__getstate__()
    state["_skst3d_version"] = "0.0.1"
    fresh = TeacherPretrainer.__new__(TeacherPretrainer)
    with pytest.warns(InconsistentVersionWarning):
        fresh.__setstate__(state)


def test_save_and_load(fitted, tmp_path):
    path = tmp_path / "teacher.pt"
    fitted.save(path, data="unit test")
    loaded = TeacherPretrainer.load(path)
    assert loaded.metadata_["data"] == "unit test"
    clouds = surface_clouds(1)
    np.testing.assert_array_equal(loaded.transform(clouds)[0], fitted.transform(clouds)[0])
    assert (tmp_path / "teacher.pt.json").exists()


def test_warm_start_continues():
    clouds = surface_clouds(3)
    t = TeacherPretrainer(**SMALL, random_state=0).fit(clouds)
    scale, n = t.scale_, len(t.loss_curve_)
    t.set_params(warm_start=True).fit(clouds)
    assert len(t.loss_curve_) == 2 * n and t.scale_ == scale


def test_interrupted_fit_leaves_estimator_unfitted(monkeypatch):
    import skst3d.pretrain as mod

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "reconstruction_loss", boom)
    t = TeacherPretrainer(**SMALL)
    with pytest.raises(KeyboardInterrupt):
        t.fit(surface_clouds())
    assert not hasattr(t, "network_") and not hasattr(t, "scale_")


def test_bad_input_names_the_cloud():
    clouds = surface_clouds(3)
    clouds[1][4, 2] = np.nan
    with pytest.raises(ValueError, match="1"):
        TeacherPretrainer(**SMALL).fit(clouds)
    with pytest.raises(ValueError):
        TeacherPretrainer(**SMALL).fit([np.zeros((5, 3))])  # fewer than k + 1 points


@pytest.mark.cuda
def test_fitted_on_cuda_loads_on_cpu():
    t = TeacherPretrainer(**SMALL, device="cuda", random_state=0).fit(surface_clouds())
    state = pickle.dumps(t)
    loaded = pickle.loads(state)
    assert all(p.device.type == "cpu" for p in loaded.network_.parameters())
    loaded.set_params(device="cpu")
    out = loaded.transform(surface_clouds(1))[0]
    np.testing.assert_allclose(out, t.transform(surface_clouds(1))[0], atol=1e-4)


def test_available_pretrained_without_weights_folder(monkeypatch, tmp_path):
    import skst3d.weights as mod

    monkeypatch.setattr(mod, "WEIGHTS_DIR", str(tmp_path / "missing"))
    assert TeacherPretrainer.available_pretrained() == []
    with pytest.raises(FileNotFoundError, match="no bundled teacher"):
        TeacherPretrainer.from_pretrained(d=64)


def test_absolute_coordinates_teacher_saves_loads_and_teaches(tmp_path):
    from skst3d import StudentTeacherDetector

    clouds = surface_clouds()
    teacher = TeacherPretrainer(**SMALL, absolute_coordinates=True, random_state=0).fit(clouds)
    assert teacher.network_.absolute_coordinates
    path = tmp_path / "absolute.pt"
    teacher.save(path)
    loaded = TeacherPretrainer.load(path)
    assert loaded.absolute_coordinates and loaded.network_.absolute_coordinates
    np.testing.assert_allclose(loaded.transform(clouds[:1])[0], teacher.transform(clouds[:1])[0], rtol=1e-5, atol=1e-6)
    det = StudentTeacherDetector(loaded, k=6, d=8, n_epochs=2, random_state=0).fit(clouds)
    assert det.student_.absolute_coordinates
    assert np.isfinite(det.score_samples(clouds[:1])[0]).all()
    with pytest.raises(ValueError, match="absolute_coordinates"):
        teacher.set_params(warm_start=True, absolute_coordinates=False).fit(clouds)


def test_random_teacher_takes_the_bundled_architecture(monkeypatch, tmp_path):
    """"random" differs from the bundled teacher only in its weights; without one, the default."""
    import json

    import skst3d.weights as mod
    from skst3d import StudentTeacherDetector

    for d, k in TeacherPretrainer.available_pretrained():
        with open(os.path.join(mod.WEIGHTS_DIR, f"teacher_d{d}_k{k}.pt.json")) as fh:
            assert mod.n_blocks(d, k) == json.load(fh)["n_blocks"] == TeacherPretrainer.from_pretrained(d, k).network_.n_blocks
    (tmp_path / "teacher_d8_k32.pt.json").write_text(json.dumps({"n_blocks": 3}))
    monkeypatch.setattr(mod, "WEIGHTS_DIR", str(tmp_path))
    assert mod.n_blocks(8) == 3
    assert mod.n_blocks(16) == mod.DEFAULT_N_BLOCKS
    det = StudentTeacherDetector("random", k=6, d=8, n_epochs=1, random_state=0).fit(surface_clouds())
    assert det.teacher_.network_.n_blocks == det.student_.n_blocks == 3
