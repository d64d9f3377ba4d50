"""The evaluation loop of the demo and the benchmarks: one detector per part type.

As MVTec 3D-AD trains one model per category, :func:`evaluate_part_types` fits one clone of
an estimator on the good training clouds of each part type, scores that part type's test
clouds and measures localisation (AU-PRO at two integration limits), detection (cloud
AUROC), the cloud verdicts against the fitted cloud threshold, and the time of fit and
scoring. :func:`format_results` renders the results as a text or markdown table.

Only skst3d's public API is used, so a benchmark script can run the same loop.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone

from .defects import cloud_scores
from .metrics import au_pro

__all__ = ["METRICS", "evaluate_case", "evaluate_part_types", "final_estimator", "format_results", "mean_results"]

#: Metrics of a result row (keys of :func:`evaluate_part_types`' rows) averaged by :func:`mean_results`.
METRICS = ("au_pro_0.3", "au_pro_0.05", "cloud_auroc", "verdict_accuracy")

_COLUMNS = (
    ("AU-PRO@0.3", "au_pro_0.3"),
    ("AU-PRO@0.05", "au_pro_0.05"),
    ("cloud AUROC", "cloud_auroc"),
    ("verdicts", "verdict_accuracy"),
    ("fit s", "fit_seconds"),
    ("score s", "score_seconds"),
)


def final_estimator(model):
    """The last step of a pipeline, or the estimator itself."""
    return model.steps[-1][1] if hasattr(model, "steps") else model


def evaluate_part_types(estimator, data, *, part_types=None, log=None, on_part=None):
    """Fit one detector per part type on its good clouds and measure it on its test clouds.

    Parameters
    ----------
    estimator : estimator or callable
        An unfitted detector or pipeline, cloned for every part type, or a function
        ``estimator(part_type)`` returning a new one.
    data : Bunch
        ``train``, ``train_part_types``, ``test``, ``test_labels`` (per-point labels, 0 =
        normal) and ``test_part_types``, as :func:`skst3d.datasets.make_synthetic_parts`
        returns them.
    part_types : sequence of str, optional
        The part types to evaluate, in this order; by default those of ``data.test_part_types``
        in order of appearance.
    log : callable, optional
        Called with one line of text per step (e.g. :func:`print`).
    on_part : callable, optional
        Called as ``on_part(part_type, model, clouds, anomaly, labels, indices)`` after a part
        type is scored: the fitted model, its test clouds, their point anomaly scores (higher
        = more anomalous), labels and indices into ``data.test`` (to draw pictures, say).

    Returns
    -------
    results : dict
        Part type -> row: ``n_train``, ``n_test``, ``n_defective``, ``au_pro_0.3``,
        ``au_pro_0.05`` (:func:`skst3d.metrics.au_pro`), ``cloud_auroc`` (ROC AUC of
        minus :func:`skst3d.defects.cloud_scores`, whether a cloud has any defect point),
        ``verdict_accuracy`` (share of test clouds whose cloud verdict, the cloud score
        against the model's ``cloud_offset_``, is right; NaN without one), ``best_epoch``
        (None if the model has none), ``fit_seconds`` and ``score_seconds``. A metric that is
        undefined (no defective or no good test cloud) is NaN.

    See Also
    --------
    format_results : the results as a table.

    Examples
    --------
    >>> from skst3d import StudentTeacherDetector
    >>> from skst3d.datasets import make_synthetic_parts
    >>> from skst3d.evaluation import evaluate_part_types, format_results
    >>> data = make_synthetic_parts(n_train=3, n_test=4, part_types=["plate"], n_points=384, random_state=0)
    >>> detector = StudentTeacherDetector("random", k=8, d=8, n_epochs=2, random_state=0)
    >>> results = evaluate_part_types(detector, data)
    >>> sorted(results["plate"])[:4]
    ['au_pro_0.05', 'au_pro_0.3', 'best_epoch', 'cloud_auroc']
    >>> print(format_results(results).splitlines()[0].split())  # doctest: +NORMALIZE_WHITESPACE
    ['part', 'type', 'AU-PRO@0.3', 'AU-PRO@0.05', 'cloud', 'AUROC', 'verdicts', 'fit', 's', 'score', 's']
    """
    train_types = np.asarray(data.train_part_types)
    test_types = np.asarray(data.test_part_types)
    if part_types is None:
        part_types = list(dict.fromkeys(test_types.tolist()))
    say = log if log is not None else (lambda line: None)
    results = {}
    for number, part in enumerate(part_types, 1):
        train = [data.train[i] for i in np.flatnonzero(train_types == part)]
        indices = np.flatnonzero(test_types == part)
        if not train or not len(indices):
            raise ValueError(f"part type {part!r} has {len(train)} training and {len(indices)} test clouds in data")
        test = [data.test[i] for i in indices]
        labels = [np.asarray(data.test_labels[i]) for i in indices]
        say(f"[{number}/{len(part_types)}] {part}: training on {len(train)} good clouds ...")
        model = estimator(part) if callable(estimator) and not hasattr(estimator, "fit") else clone(estimator)
        row, anomaly = evaluate_case(model, train, test, labels)
        results[part] = row
        say(
            f"[{number}/{len(part_types)}] {part}: fit {row['fit_seconds']:.1f} s, scored {len(test)} clouds "
            f"({row['n_defective']} defective) in {row['score_seconds']:.1f} s: AU-PRO@0.3 {row['au_pro_0.3']:.3f}, "
            f"AU-PRO@0.05 {row['au_pro_0.05']:.3f}, cloud AUROC {row['cloud_auroc']:.3f}, "
            f"verdicts {row['verdict_accuracy']:.3f}"
        )
        if on_part is not None:
            on_part(part, model, test, anomaly, labels, indices)
    return results


def evaluate_case(model, train, test, labels):
    """Fit ``model`` on the good clouds ``train``, score ``test``: (metrics row, anomaly scores).

    The row has the keys of :func:`evaluate_part_types`' rows; the anomaly scores (higher =
    more anomalous, one array per test cloud) are minus ``model.score_samples(test)``. The
    benchmarks run every method and case through this function.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.baseline import FPFHMemoryBankDetector
    >>> from skst3d.datasets import make_synthetic_parts
    >>> from skst3d.evaluation import evaluate_case
    >>> data = make_synthetic_parts(n_train=3, n_test=4, part_types=["plate"], n_points=384, random_state=0)
    >>> row, anomaly = evaluate_case(FPFHMemoryBankDetector(), data.train, data.test, data.test_labels)
    >>> len(anomaly), 0 <= row["au_pro_0.3"] <= 1
    (4, True)
    """
    labels = [np.asarray(lab) for lab in labels]
    defective = np.array([bool(np.any(lab)) for lab in labels])
    start = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores = model.score_samples(test)
    score_seconds = time.perf_counter() - start
    anomaly = [-np.asarray(s, dtype=np.float64) for s in scores]
    for cloud, values in zip(test, anomaly):
        if values.shape != (len(cloud),):
            raise ValueError(f"score_samples returned {values.shape} scores for a cloud of {len(cloud)} points")
    cloud = cloud_scores(scores)
    final = final_estimator(model)
    cloud_offset = getattr(final, "cloud_offset_", None)
    row = {
        "n_train": len(train),
        "n_test": len(test),
        "n_defective": int(defective.sum()),
        "au_pro_0.3": _undefined_is_nan(au_pro, labels, anomaly, integration_limit=0.3),
        "au_pro_0.05": _undefined_is_nan(au_pro, labels, anomaly, integration_limit=0.05),
        "cloud_auroc": _roc_auc(defective, -cloud),
        "verdict_accuracy": float("nan") if cloud_offset is None else float(np.mean((cloud < cloud_offset) == defective)),
        "best_epoch": None if getattr(final, "best_epoch_", None) is None else int(final.best_epoch_),
        "fit_seconds": round(fit_seconds, 2),
        "score_seconds": round(score_seconds, 2),
    }
    return row, anomaly


def mean_results(results):
    """Mean of every metric of :data:`METRICS` over the part types (NaN entries ignored)."""
    means = {}
    for metric in METRICS:
        values = np.array([row[metric] for row in results.values()], dtype=np.float64)
        means[metric] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return means


def format_results(results, style="text"):
    """The results of :func:`evaluate_part_types` as a table, one row per part type and a mean.

    Parameters
    ----------
    results : dict
        Part type -> row, as :func:`evaluate_part_types` returns it.
    style : {"text", "markdown"}, default="text"
        ``"text"``: aligned columns for a terminal; ``"markdown"``: a GitHub table.

    Returns
    -------
    table : str
        Metrics with 3 decimals, seconds with 1.

    Examples
    --------
    >>> from skst3d.evaluation import format_results
    >>> row = {"au_pro_0.3": 0.9, "au_pro_0.05": 0.7, "cloud_auroc": 1.0, "verdict_accuracy": 0.75,
    ...        "fit_seconds": 12.0, "score_seconds": 1.5}
    >>> print(format_results({"plate": row}, style="markdown"))
    | part type | AU-PRO@0.3 | AU-PRO@0.05 | cloud AUROC | verdicts | fit s | score s |
    |---|---|---|---|---|---|---|
    | plate | 0.900 | 0.700 | 1.000 | 0.750 | 12.0 | 1.5 |
    | mean | 0.900 | 0.700 | 1.000 | 0.750 | 12.0 | 1.5 |
    """
    if style not in ("text", "markdown"):
        raise ValueError(f"style must be 'text' or 'markdown', got {style!r}")
    if not results:
        raise ValueError("results is empty: no part type to show")
    header = ["part type"] + [title for title, _ in _COLUMNS]
    means = mean_results(results)
    for key in ("fit_seconds", "score_seconds"):
        means[key] = float(np.mean([row[key] for row in results.values()]))
    rows = [[part] + [_cell(row[key], key) for _, key in _COLUMNS] for part, row in results.items()]
    rows.append(["mean"] + [_cell(means[key], key) for _, key in _COLUMNS])
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(row) for row in rows])


def _cell(value, key):
    value = float(value)
    if np.isnan(value):
        return "nan"
    return f"{value:.1f}" if key.endswith("seconds") else f"{value:.3f}"


def _undefined_is_nan(metric, *args, **kwargs):
    try:
        return float(metric(*args, **kwargs))
    except ValueError:  # no defect region: AU-PRO is undefined
        return float("nan")


def _roc_auc(defective, anomaly):
    from sklearn.metrics import roc_auc_score

    if defective.all() or not defective.any():
        return float("nan")
    return float(roc_auc_score(defective, anomaly))
