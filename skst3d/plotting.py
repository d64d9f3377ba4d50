"""Pictures of point-wise anomaly scores, predicted defects and the ground truth.

Needs matplotlib (``pip install skst3d[plot]``), imported when a function is called.

The functions draw on :class:`matplotlib.figure.Figure` objects rendered with the Agg
canvas, never through :mod:`matplotlib.pyplot`: they do not change the backend of the
calling program, work on machines without a display, and leave no figure open. To draw into
a pyplot figure, pass its axes as ``ax``.

Three views are offered. ``view="top"`` (the default) is a 2-D scatter of x and y, coloured by
value, points drawn in increasing order of value so that anomalies lie on top: it reads best
for range scans seen from above (synthetic parts, MVTec 3D-AD). ``view="side"`` is the same
scatter of x and z (seen along y, heights stretched to fill the panel), where dents and
bumps show. ``view="3d"`` is a 3-D scatter for clouds that are not a height field.

:func:`plot_scan` draws one scored scan as the command line ``skst3d score`` writes it: the
scores from the top and from the side with the thresholds marked on the colour bar, the
predicted defect regions, and the verdict in the title.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_anomaly_scores", "plot_cloud_pairs", "plot_scan"]

_VIEWS = ("top", "side", "3d")
_NORMAL_COLOUR = "#c8c8c8"
_DEFECT_COLOUR = "#d62728"
_FLAGGED_COLOUR = "#ff9f40"
_CLOUD_THRESHOLD_COLOUR = "#00b4d8"
_POINT_THRESHOLD_COLOUR = "#7bd389"


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skst3d.plotting needs matplotlib, an optional dependency: "
            "pip install 'skst3d[plot]' (or pip install matplotlib)"
        ) from exc
    return Figure, FigureCanvasAgg


def _new_figure(figsize):
    Figure, FigureCanvasAgg = _require_matplotlib()
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_view(view):
    if view not in _VIEWS:
        raise ValueError(f"view must be one of {_VIEWS}, got {view!r}")


def _check_cloud(cloud, name="cloud"):
    cloud = np.asarray(cloud, dtype=np.float64)
    if cloud.ndim != 2 or cloud.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {cloud.shape}")
    return cloud


def _check_values(values, n, name):
    values = np.asarray(values).ravel()
    if values.shape[0] != n:
        raise ValueError(f"{name} has {values.shape[0]} entries but the cloud has {n} points")
    return values


def _check_threshold(value, name):
    if value is None:
        return None
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _default_point_size(n):
    return float(np.clip(10000.0 / max(n, 1), 0.3, 8.0))


def _score_limits(scores, vmin, vmax, thresholds=()):
    """Colour limits: 1st to 99th percentile of the pooled scores unless given.

    Thresholds outside that range widen it (unless the limits are given), so that their marks
    on the colour bar are visible.
    """
    pooled = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return 0.0, 1.0
    lo = float(np.percentile(pooled, 1.0)) if vmin is None else float(vmin)
    hi = float(np.percentile(pooled, 99.0)) if vmax is None else float(vmax)
    marks = [t for t in thresholds if t is not None]
    if marks and vmin is None:
        lo = min(lo, *marks)
    if marks and vmax is None:
        hi = max(hi, *marks)
        if hi == max(marks):
            hi += 0.05 * max(hi - lo, 1e-12)  # the mark is not drawn on the bar's very edge
    if not hi > lo:
        hi = lo + 1e-12 if vmax is None else hi
    return lo, hi


def _projected(cloud, view):
    """The two plotted coordinates of a 2-D view."""
    return (cloud[:, 0], cloud[:, 2]) if view == "side" else (cloud[:, 0], cloud[:, 1])


def _scatter(ax, cloud, colours, order, view, size, **kwargs):
    c = colours[order] if np.ndim(colours) and len(colours) == len(cloud) else colours
    p = cloud[order]
    if view == "3d":
        artist = ax.scatter(p[:, 0], p[:, 1], p[:, 2], c=c, s=size, linewidths=0, depthshade=False, **kwargs)
        ax.set_box_aspect(np.ptp(cloud, axis=0) + 1e-9)
        ax.set_axis_off()
    else:
        u, v = _projected(p, view)
        artist = ax.scatter(u, v, c=c, s=size, linewidths=0, **kwargs)
        # the side view stretches heights to fill the panel: dents and bumps of a flat part show
        ax.set_aspect("equal" if view == "top" else "auto")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    return artist


def _mark_thresholds(colorbar, threshold, cloud_threshold):
    """Lines across the colour bar at the flagging threshold and the cloud threshold."""
    for value, colour, label in (
        (threshold, _POINT_THRESHOLD_COLOUR, "flagged above"),
        (cloud_threshold, _CLOUD_THRESHOLD_COLOUR, "cloud threshold"),
    ):
        if value is None:
            continue
        colorbar.ax.axhline(value, color=colour, linewidth=2.0)
        colorbar.ax.annotate(
            label, xy=(0.0, value), xycoords=("axes fraction", "data"), xytext=(-2, 0),
            textcoords="offset points", ha="right", va="center", fontsize=7, color=colour,
            annotation_clip=False,
        )


def _draw_scores(ax, cloud, scores, view, cmap, size, vmin, vmax, colorbar, title, threshold=None):
    order = np.argsort(scores, kind="stable")
    artist = _scatter(ax, cloud, np.asarray(scores, dtype=np.float64), order, view, size, cmap=cmap, vmin=vmin, vmax=vmax)
    if colorbar:
        bar = ax.figure.colorbar(artist, ax=ax, shrink=0.8, label="anomaly score")
        _mark_thresholds(bar, threshold, None)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return artist


def _draw_truth(ax, cloud, labels, view, size, title):
    defect = np.asarray(labels) != 0
    colours = np.where(defect, _DEFECT_COLOUR, _NORMAL_COLOUR)
    order = np.argsort(defect, kind="stable")
    _scatter(ax, cloud, colours, order, view, size)
    caption = f"ground truth ({int(defect.sum())} defect points)"
    ax.set_title(f"{title}\n{caption}" if title else caption, fontsize=9)


def _draw_predicted(ax, cloud, predicted, view, size, title, flagged=None, centroids=()):
    """Predicted defect points in red (numbered at their regions' centroids), flagged points in orange."""
    predicted = np.asarray(predicted) != 0
    rank = predicted.astype(np.int8) * 2
    if flagged is not None:
        rank = np.maximum(rank, (np.asarray(flagged) != 0).astype(np.int8))
    colours = np.array([_NORMAL_COLOUR, _FLAGGED_COLOUR, _DEFECT_COLOUR])[rank]
    order = np.argsort(rank, kind="stable")
    _scatter(ax, cloud, colours, order, view, size)
    for number, centroid in enumerate(centroids, 1):
        centroid = np.asarray(centroid, dtype=np.float64)
        where = (centroid[0], centroid[1], centroid[2]) if view == "3d" else _projected(centroid[None], view)
        ax.text(*[float(np.ravel(w)[0]) for w in where], f" {number}", fontsize=8, color="black",
                fontweight="bold", ha="left", va="bottom")
    n_regions = len(centroids) if len(centroids) else None
    caption = f"predicted defects ({int(predicted.sum())} points"
    caption += f", {n_regions} region{'s' if n_regions != 1 else ''})" if n_regions is not None else ")"
    ax.set_title(f"{title}\n{caption}" if title else caption, fontsize=9)


def _add_axes(fig, nrows, ncols, index, view):
    kwargs = {"projection": "3d"} if view == "3d" else {}
    return fig.add_subplot(nrows, ncols, index, **kwargs)


def plot_anomaly_scores(
    cloud,
    scores,
    labels=None,
    ax=None,
    *,
    view="top",
    cmap="inferno",
    point_size=None,
    vmin=None,
    vmax=None,
    colorbar=True,
    title=None,
    threshold=None,
):
    """Draw a cloud coloured by anomaly score, and optionally its ground truth beside it.

    Parameters
    ----------
    cloud : array-like of shape (n, 3)
        The points.
    scores : array-like of shape (n,)
        Anomaly scores, higher = more anomalous (e.g. ``-detector.score_samples([cloud])[0]``).
    labels : array-like of shape (n,), optional
        Ground truth per point (0 = normal, any other value = defect). When given, a second
        panel shows normal points in grey and defect points in red.
    ax : matplotlib Axes, or a sequence of two Axes when ``labels`` is given, optional
        Where to draw. By default a new :class:`~matplotlib.figure.Figure` (Agg canvas, not
        registered with pyplot) is made; save it with ``axes[0].figure.savefig(path)``.
        With ``view="3d"`` the axes must be 3-D (``projection="3d"``).
    view : {"top", "side", "3d"}, default="top"
        ``"top"``: x-y scatter seen from above, best for range scans; ``"side"``: x-z
        scatter seen along y, heights stretched; ``"3d"``: 3-D scatter.
    cmap : str or Colormap, default="inferno"
        Colour map of the scores.
    point_size : float, optional
        Marker area; by default it shrinks with the number of points.
    vmin, vmax : float, optional
        Colour limits; by default the 1st and 99th percentiles of ``scores``, widened to
        include ``threshold``.
    colorbar : bool, default=True
        Draw a colour bar next to the score panel.
    title : str, optional
        Title of the score panel (the truth panel repeats it).
    threshold : float, optional
        Anomaly score above which points are flagged (e.g. ``-detector.offset_``); marked on
        the colour bar.

    Returns
    -------
    axes : list of matplotlib Axes
        ``[score_axes]``, or ``[score_axes, truth_axes]`` when ``labels`` is given.

    See Also
    --------
    plot_cloud_pairs : several clouds with their ground truth, written to a file.
    plot_scan : one scored scan: top and side views, thresholds, predicted defects, verdict.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.plotting import plot_anomaly_scores
    >>> rng = np.random.default_rng(0)
    >>> cloud = rng.uniform(size=(500, 3))
    >>> scores = cloud[:, 0]
    >>> labels = (cloud[:, 0] > 0.9).astype(int)
    >>> axes = plot_anomaly_scores(cloud, scores, labels, title="demo", threshold=0.8)  # doctest: +SKIP
    >>> len(axes)  # doctest: +SKIP
    2
    """
    _check_view(view)
    cloud = _check_cloud(cloud)
    scores = _check_values(scores, len(cloud), "scores").astype(np.float64)
    threshold = _check_threshold(threshold, "threshold")
    if labels is not None:
        labels = _check_values(labels, len(cloud), "labels")
    n_panels = 1 if labels is None else 2
    if ax is None:
        fig = _new_figure((4.2 * n_panels, 3.2))
        axes = [_add_axes(fig, 1, n_panels, i + 1, view) for i in range(n_panels)]
    else:
        axes = list(ax) if np.iterable(ax) else [ax]
        if len(axes) != n_panels:
            raise ValueError(f"ax must hold {n_panels} Axes ({'with' if labels is not None else 'without'} labels), got {len(axes)}")
    size = _default_point_size(len(cloud)) if point_size is None else float(point_size)
    lo, hi = _score_limits([scores], vmin, vmax, (threshold,))
    _draw_scores(axes[0], cloud, scores, view, cmap, size, lo, hi, colorbar, title, threshold)
    if labels is not None:
        _draw_truth(axes[1], cloud, labels, view, size, title)
    return axes


def plot_cloud_pairs(
    clouds,
    anomaly_scores,
    labels,
    titles=None,
    path=None,
    *,
    view="top",
    cmap="inferno",
    point_size=None,
    vmin=None,
    vmax=None,
    dpi=110,
    threshold=None,
    predicted=None,
):
    """One row per cloud: anomaly scores (left), predicted defects if given, and the ground truth.

    All score panels share one colour scale, so that a good cloud looks calm next to a
    defective one.

    Parameters
    ----------
    clouds : list of array-like of shape (n_i, 3)
    anomaly_scores : list of array-like of shape (n_i,)
        Higher = more anomalous (minus :meth:`StudentTeacherDetector.score_samples`).
    labels : list of array-like of shape (n_i,)
        Ground truth, 0 = normal.
    titles : list of str, optional
        One title per cloud (row), e.g. with the cloud's verdict.
    path : str or path-like, optional
        If given, the figure is written there (format from the extension, e.g. ``.png``).
    view : {"top", "side", "3d"}, default="top"
        See :func:`plot_anomaly_scores`.
    cmap : str or Colormap, default="inferno"
    point_size : float, optional
    vmin, vmax : float, optional
        Shared colour limits; by default the 1st and 99th percentiles of all scores, widened
        to include ``threshold``.
    dpi : int, default=110
        Resolution of the written file.
    threshold : float, optional
        Anomaly score marked on the shared colour bar (the point or the cloud threshold).
    predicted : list of array-like of shape (n_i,), optional
        Predicted defect points per cloud (nonzero = defect, e.g. region numbers); drawn in a
        middle panel.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Rendered with the Agg canvas; not registered with pyplot.

    See Also
    --------
    plot_anomaly_scores : one cloud.
    plot_scan : one scored scan without ground truth.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.plotting import plot_cloud_pairs
    >>> rng = np.random.default_rng(0)
    >>> clouds = [rng.uniform(size=(300, 3)) for _ in range(2)]
    >>> labels = [(c[:, 0] > 0.9).astype(int) for c in clouds]
    >>> fig = plot_cloud_pairs(clouds, [c[:, 0] for c in clouds], labels,
    ...                        ["a", "b"])  # doctest: +SKIP
    >>> len(fig.axes) >= 4  # doctest: +SKIP
    True
    """
    _check_view(view)
    clouds = [_check_cloud(c, f"clouds[{i}]") for i, c in enumerate(clouds)]
    n = len(clouds)
    if n == 0:
        raise ValueError("clouds is empty")
    if len(anomaly_scores) != n or len(labels) != n:
        raise ValueError(f"{n} clouds but {len(anomaly_scores)} score arrays and {len(labels)} label arrays")
    if predicted is not None and len(predicted) != n:
        raise ValueError(f"{n} clouds but {len(predicted)} predicted arrays")
    if titles is None:
        titles = [f"cloud {i}" for i in range(n)]
    elif len(titles) != n:
        raise ValueError(f"{n} clouds but {len(titles)} titles")
    threshold = _check_threshold(threshold, "threshold")
    scores = [_check_values(s, len(c), f"anomaly_scores[{i}]").astype(np.float64) for i, (c, s) in enumerate(zip(clouds, anomaly_scores))]
    truths = [_check_values(t, len(c), f"labels[{i}]") for i, (c, t) in enumerate(zip(clouds, labels))]
    masks = None if predicted is None else [_check_values(p, len(c), f"predicted[{i}]") for i, (c, p) in enumerate(zip(clouds, predicted))]
    lo, hi = _score_limits(scores, vmin, vmax, (threshold,))
    n_cols = 2 if masks is None else 3
    fig = _new_figure((4.2 * n_cols, 3.0 * n))
    last, score_axes = None, []
    for row, (cloud, score, truth, title) in enumerate(zip(clouds, scores, truths, titles)):
        size = _default_point_size(len(cloud)) if point_size is None else float(point_size)
        axes = [_add_axes(fig, n, n_cols, n_cols * row + col + 1, view) for col in range(n_cols)]
        last = _draw_scores(axes[0], cloud, score, view, cmap, size, lo, hi, False, f"{title}\nanomaly score")
        score_axes.append(axes[0])
        if masks is not None:
            _draw_predicted(axes[1], cloud, masks[row], view, size, title)
        _draw_truth(axes[-1], cloud, truth, view, size, title)
    bar = fig.colorbar(last, ax=list(fig.axes), location="right", shrink=min(0.9, 0.3 + 0.15 * n), label="anomaly score (shared scale)")
    _mark_thresholds(bar, threshold, None)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def plot_scan(
    cloud,
    anomaly,
    *,
    threshold=None,
    cloud_threshold=None,
    regions=None,
    verdict=None,
    score=None,
    labels=None,
    title=None,
    path=None,
    cmap="inferno",
    point_size=None,
    vmin=None,
    vmax=None,
    dpi=110,
):
    """One scored scan: scores from the top and from the side, predicted defects, the verdict.

    The panels are the anomaly scores seen from above (x-y) and from the side (x-z, heights
    stretched), on one colour scale whose bar marks the threshold above which points are
    flagged and the cloud threshold (a scan whose score exceeds it is defective); then the
    predicted defects: the points of the reported regions in red, numbered at their centroids
    in the order given, other flagged points in orange; and, when ``labels`` are given, the
    ground truth. The title holds the verdict, the scan's score and the cloud threshold.

    Parameters
    ----------
    cloud : array-like of shape (n, 3)
    anomaly : array-like of shape (n,)
        Anomaly scores, higher = more anomalous.
    threshold : float, optional
        Points above it (anomaly scale) are flagged: the threshold the regions were found
        with (e.g. :func:`skst3d.defects.region_threshold`, or ``-detector.offset_``).
    cloud_threshold : float, optional
        Cloud threshold (anomaly scale, e.g. ``-detector.cloud_offset_``).
    regions : list, optional
        Predicted defect regions (:class:`skst3d.defects.DefectRegion`, or anything with
        ``indices`` and ``centroid``), e.g. from ``detector.find_defects``.
    verdict : str, optional
        E.g. ``"good"`` or ``"defective"``; shown in the title.
    score : float, optional
        The scan's cloud score on the anomaly scale (e.g. ``-detector.score_clouds(...)``).
    labels : array-like of shape (n,), optional
        Ground truth (0 = normal); adds a panel.
    title : str, optional
        E.g. the file name; the verdict is appended.
    path : str or path-like, optional
        If given, the figure is written there.
    cmap, point_size, vmin, vmax, dpi
        As in :func:`plot_cloud_pairs`.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Rendered with the Agg canvas; not registered with pyplot.

    See Also
    --------
    plot_anomaly_scores, plot_cloud_pairs

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.defects import find_defects
    >>> from skst3d.plotting import plot_scan
    >>> rng = np.random.default_rng(0)
    >>> cloud = rng.uniform(size=(500, 3))
    >>> anomaly = np.exp(-30 * ((cloud[:, :2] - 0.5) ** 2).sum(1)) * 10
    >>> regions = find_defects(cloud, anomaly, threshold=3.0)
    >>> fig = plot_scan(cloud, anomaly, threshold=3.0, cloud_threshold=6.0, regions=regions,
    ...                 verdict="defective", score=anomaly.max(), title="scan.ply")  # doctest: +SKIP
    >>> fig.axes[0].get_title()  # doctest: +SKIP
    'top view'
    """
    cloud = _check_cloud(cloud)
    anomaly = _check_values(anomaly, len(cloud), "anomaly").astype(np.float64)
    threshold = _check_threshold(threshold, "threshold")
    cloud_threshold = _check_threshold(cloud_threshold, "cloud_threshold")
    if labels is not None:
        labels = _check_values(labels, len(cloud), "labels")
    regions = [] if regions is None else list(regions)
    predicted = np.zeros(len(cloud), dtype=bool)
    for i, region in enumerate(regions):
        indices = np.asarray(region.indices)
        if indices.size and (indices.min() < 0 or indices.max() >= len(cloud)):
            raise ValueError(f"regions[{i}] has point indices outside the cloud of {len(cloud)} points")
        predicted[indices] = True
    flagged = None if threshold is None else anomaly > threshold
    size = _default_point_size(len(cloud)) if point_size is None else float(point_size)
    lo, hi = _score_limits([anomaly], vmin, vmax, (threshold, cloud_threshold))
    n_panels = 3 if labels is None else 4
    fig = _new_figure((4.0 * n_panels + 0.8, 3.6))
    axes = [_add_axes(fig, 1, n_panels, i + 1, "top" if i != 1 else "side") for i in range(n_panels)]
    _draw_scores(axes[0], cloud, anomaly, "top", cmap, size, lo, hi, False, "top view")
    artist = _draw_scores(axes[1], cloud, anomaly, "side", cmap, size, lo, hi, False, "side view (x-z)")
    _draw_predicted(axes[2], cloud, predicted, "top", size, None, flagged, [r.centroid for r in regions])
    if labels is not None:
        _draw_truth(axes[3], cloud, labels, "top", size, None)
    bar = fig.colorbar(artist, ax=axes[:2], location="right", shrink=0.85, label="anomaly score")
    _mark_thresholds(bar, threshold, cloud_threshold)
    heading = title or "scan"
    if verdict is not None:
        heading += f": {str(verdict).upper()}"
    details = []
    if score is not None:
        details.append(f"score {float(score):.3g}")
    if cloud_threshold is not None:
        details.append(f"cloud threshold {cloud_threshold:.3g}")
    if details:
        heading += f" ({', '.join(details)})"
    colour = _DEFECT_COLOUR if str(verdict).lower() == "defective" else "black"
    fig.suptitle(heading, fontsize=11, color=colour)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
