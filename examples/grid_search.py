"""Model selection: GridSearchCV over k and d with the AU-PRO scorer.

The search runs on a labelled mixed set (good clouds and defective ones with per-point
labels). ``StudentTeacherDetector.fit(X, y)`` trains only on the clouds without anomalous
points, and :data:`skst3d.metrics.au_pro_scorer` scores ``-score_samples`` on each test fold.
AU-PRO needs defect regions in every test fold, so the folds are stratified on the
cloud-level label (defective or not).

    python examples/grid_search.py                 # several minutes on a CPU
    python examples/grid_search.py --n-jobs 2      # two fits at a time (joblib)
    python examples/grid_search.py --quick         # seconds (for tests)

On a Dask cluster, wrap the fit: ``with joblib.parallel_backend("dask"): search.fit(X, y)``.
"""

import argparse
import tempfile

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skst3d import StudentTeacherDetector
from skst3d.datasets import make_synthetic_parts
from skst3d.metrics import au_pro_scorer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and an untrained teacher (seconds)")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel fits (joblib; default 1)")
    parser.add_argument("--n-splits", type=int, default=3, help="cross-validation folds (default 3)")
    args = parser.parse_args(argv)

    if args.quick:
        sizes = dict(n_train=4, n_test=6, n_points=400)
        estimator = StudentTeacherDetector("random", n_blocks=1, n_epochs=2, random_state=0)
        grid = {"k": [4, 8], "d": [8, 16]}
        n_splits = 2
    else:
        sizes = dict(n_train=12, n_test=12, n_points=2048)
        # teacher=None: bundled teachers for each d; a d without one is pretrained once on the
        # built-in scenes and cached in `memory`, so every fold and k reuses it.
        memory = tempfile.mkdtemp(prefix="skst3d_teachers_")
        estimator = StudentTeacherDetector(n_epochs=15, memory=memory, random_state=0)
        grid = {"k": [16, 32], "d": [32, 64]}
        n_splits = args.n_splits

    data = make_synthetic_parts(part_types=["bracket"], random_state=0, **sizes)
    # One labelled set: good training clouds (all-zero labels) plus the mixed test clouds.
    X = data.train + data.test
    y = [np.zeros(len(c), np.int64) for c in data.train] + data.test_labels
    defective = np.array([bool(np.any(labels)) for labels in y])
    print(f"{len(X)} clouds, {defective.sum()} defective; grid {grid}; {n_splits} folds; n_jobs={args.n_jobs}")

    # Stratify on the cloud-level label so that every test fold holds defective clouds; the
    # splits are passed as a list because StratifiedKFold would otherwise stratify on y.
    cv = list(StratifiedKFold(n_splits, shuffle=True, random_state=0).split(X, defective))
    search = GridSearchCV(estimator, grid, scoring=au_pro_scorer, cv=cv, n_jobs=args.n_jobs, refit=True)
    search.fit(X, y)

    print("mean AU-PRO@0.3 per setting (std over folds):")
    results = search.cv_results_
    for params, mean, std in zip(results["params"], results["mean_test_score"], results["std_test_score"]):
        print(f"  {params}: {mean:.3f} ({std:.3f})")
    print(f"best: {search.best_params_} with AU-PRO@0.3 {search.best_score_:.3f}")
    # search.best_estimator_ is refitted on the good clouds of the whole set.
    print(f"refitted detector: k={search.best_estimator_.k}, d={search.best_estimator_.d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
