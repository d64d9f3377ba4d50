"""GridSearchCV over k and d with the AU-PRO scorer: in process, with loky workers, on Dask."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skst3d import StudentTeacherDetector, TeacherPretrainer
from skst3d.datasets import make_synthetic_parts
from skst3d.metrics import au_pro, au_pro_scorer


@pytest.fixture(scope="module")
def labelled():
    data = make_synthetic_parts(n_train=3, n_test=6, n_points=400, part_types=["plate"], random_state=0)
    X = data.train + data.test
    y = [np.zeros(len(c), dtype=np.int64) for c in data.train] + list(data.test_labels)
    defective = np.array([bool(np.any(lab)) for lab in y])
    # two folds, each testing on defective and good clouds and training on the rest
    order = np.arange(len(X))
    folds = [order % 2 == 0, order % 2 == 1]
    cv = [(order[~f], order[f]) for f in folds]
    assert all(defective[test].any() and (~defective[test]).any() for _, test in cv)
    return X, y, cv


GRID = {"k": [4, 8], "d": [8, 16]}


def _search(cv, n_jobs, **params):
    base = dict(teacher="random", n_blocks=1, n_epochs=2, random_state=0)
    base.update(params)
    return GridSearchCV(StudentTeacherDetector(**base), GRID, scoring=au_pro_scorer, cv=cv, n_jobs=n_jobs)


def test_grid_search_in_process_matches_manual_scores(labelled):
    X, y, cv = labelled
    search = _search(cv, n_jobs=1).fit(X, y)
    assert search.best_params_["k"] in GRID["k"] and search.best_params_["d"] in GRID["d"]
    # recompute one candidate's fold score by hand: fit on the training fold (good clouds only)
    params = search.cv_results_["params"][0]
    train, test = cv[0]
    det = StudentTeacherDetector("random", n_blocks=1, n_epochs=2, random_state=0, **params)
    det.fit([X[i] for i in train], [y[i] for i in train])
    expected = au_pro([y[i] for i in test], [-s for s in det.score_samples([X[i] for i in test])])
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(expected, abs=1e-12)
    assert search.best_estimator_.n_features_in_ == 3


def test_grid_search_with_two_loky_workers_agrees(labelled):
    X, y, cv = labelled
    serial = _search(cv, n_jobs=1).fit(X, y)
    parallel = _search(cv, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])


def test_bundled_teachers_mean_no_pretraining(labelled, monkeypatch):
    bundled = {d for d, k in TeacherPretrainer.available_pretrained() if k == 32}
    if not {32, 64} <= bundled:
        pytest.skip("bundled teachers for d=32 and d=64 not present")
    import skst3d.detector as mod

    def no_pretraining(*args, **kwargs):
        raise AssertionError("a teacher was pretrained during the grid search")

    monkeypatch.setattr(mod, "_fit_teacher_on_builtin_scenes", no_pretraining)
    X, y, cv = labelled
    search = GridSearchCV(
        StudentTeacherDetector(n_epochs=1, random_state=0), {"k": [8, 16], "d": [32, 64]},
        scoring=au_pro_scorer, cv=cv, error_score="raise",
    ).fit(X, y)
    assert search.best_estimator_.teacher_.d == search.best_params_["d"]


def test_grid_search_on_a_local_dask_cluster(labelled):
    distributed = pytest.importorskip("dask.distributed")
    import joblib

    X, y, cv = labelled
    serial = _search(cv, n_jobs=1).fit(X, y)
    # worker processes, as on a real cluster; their torch may use other thread counts, hence
    # a tolerance instead of bitwise equality
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            with joblib.parallel_backend("dask"):
                on_dask = _search(cv, n_jobs=-1).fit(X, y)
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=1e-5)


def test_concurrent_fits_in_threads_are_reproducible(labelled):
    """Fits seeded alike in two threads build the same student (seeding is thread-safe).

    Without the lock in torch_seed about 1 fit in 12 came out different here: a race can only
    make this fail, never a correct implementation.
    """
    from concurrent.futures import ThreadPoolExecutor

    X, y, _ = labelled
    make = lambda: StudentTeacherDetector("random", k=8, d=8, n_blocks=1, n_epochs=1, random_state=3)  # noqa: E731
    with ThreadPoolExecutor(2) as pool:
        fitted = list(pool.map(lambda _: make().fit(X[:3]), range(8)))
    reference = make().fit(X[:3])
    for det in fitted:
        for a, b in zip(det.student_.parameters(), reference.student_.parameters()):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
