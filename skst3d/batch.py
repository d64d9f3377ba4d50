"""Scoring many scans in parallel processes, with the same results as scoring them one by one.

:func:`score_samples_parallel` splits the clouds into batches and scores them with joblib:
worker processes on this machine (joblib's default ``loky`` backend) or, inside
``joblib.parallel_config(backend="dask")``, the workers of a ``dask.distributed`` cluster. Every
worker scores with the estimator's own ``n_jobs`` threads, so the scores are bit-identical to
serial scoring at that ``n_jobs`` (the estimators' default of one thread never oversubscribes a
machine whatever the number of workers).
"""

from __future__ import annotations

from numbers import Integral

__all__ = ["score_samples_parallel"]


def _score_batch(estimator, clouds):
    return estimator.score_samples(clouds)


def score_samples_parallel(estimator, X, *, n_jobs=None, batch_size=1, verbose=0):
    """``estimator.score_samples(X)``, computed batch by batch in parallel workers.

    Parameters
    ----------
    estimator : fitted estimator with ``score_samples``
        A fitted detector or pipeline of skst3d (it is pickled to each worker once).
    X : list of array-like of shape (n_i, 3)
        The clouds.
    n_jobs : int or None, default=None
        Worker processes, by joblib's convention (None: 1, unless in a
        :func:`joblib.parallel_config` context; -1: all cores).
    batch_size : int, default=1
        Clouds per task: one keeps memory per worker at one cloud's needs.
    verbose : int, default=0
        joblib's progress messages.

    Returns
    -------
    scores : list of ndarray of shape (n_i,)
        Exactly ``estimator.score_samples(X)``: higher = more normal, in the input order.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d import StudentTeacherDetector
    >>> from skst3d.batch import score_samples_parallel
    >>> rng = np.random.default_rng(0)
    >>> clouds = [rng.normal(size=(200, 3)) for _ in range(4)]
    >>> det = StudentTeacherDetector("random", k=8, d=8, n_blocks=1, n_epochs=1, random_state=0).fit(clouds)
    >>> parallel = score_samples_parallel(det, clouds, n_jobs=2)
    >>> all(np.array_equal(a, b) for a, b in zip(parallel, det.score_samples(clouds)))
    True
    """
    from joblib import Parallel, delayed

    from ._validation import check_point_clouds

    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not hasattr(estimator, "score_samples"):
        raise TypeError(f"{type(estimator).__name__} has no score_samples method")
    clouds = check_point_clouds(X)  # float64 clouds pass through without a copy
    batches = [clouds[start : start + batch_size] for start in range(0, len(clouds), batch_size)]
    results = Parallel(n_jobs=n_jobs, verbose=verbose)(delayed(_score_batch)(estimator, batch) for batch in batches)
    return [scores for batch in results for scores in batch]
