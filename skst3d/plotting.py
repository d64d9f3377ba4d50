"""Pictures of point-wise anomaly scores next to the ground truth.

Needs matplotlib (``pip install skst3d[plot]``), imported when a function is called.

The functions draw on :class:`matplotlib.figure.Figure` objects rendered with the Agg
canvas, never through :mod:`matplotlib.pyplot`: they do not change the backend of the
calling program, work on machines without a display, and leave no figure open. To draw into
a pyplot figure, pass its axes as ``ax``.

Two views are offered. ``view="top"`` (the default) is a 2-D scatter of x and y, coloured by
value, points drawn in increasing order of value so that anomalies lie on top: it reads best
for range scans seen from above (synthetic parts, MVTec 3D-AD). ``view="3d"`` is a 3-D
scatter for clouds that are not a height field.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_anomaly_scores", "plot_cloud_pairs"]

_VIEWS = ("top", "3d")
_NORMAL_COLOUR = "#c8c8c8"
_DEFECT_COLOUR = "#d62728"


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


def _default_point_size(n):
    return float(np.clip(10000.0 / max(n, 1), 0.3, 8.0))


def _score_limits(scores, vmin, vmax):
    """Colour limits: 1st to 99th percentile of the pooled scores unless given."""
    pooled = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return 0.0, 1.0
    lo = float(np.percentile(pooled, 1.0)) if vmin is None else float(vmin)
    hi = float(np.percentile(pooled, 99.0)) if vmax is None else float(vmax)
    if not hi > lo:
        hi = lo + 1e-12 if vmax is None else hi
    return lo, hi


def _scatter(ax, cloud, colours, order, view, size, **kwargs):
    c = colours[order] if np.ndim(colours) and len(colours) == len(cloud) else colours
    p = cloud[order]
    if view == "3d":
        artist = ax.scatter(p[:, 0], p[:, 1], p[:, 2], c=c, s=size, linewidths=0, depthshade=False, **kwargs)
        ax.set_box_aspect(np.ptp(cloud, axis=0) + 1e-9)
        ax.set_axis_off()
    else:
        artist = ax.scatter(p[:, 0], p[:, 1], c=c, s=size, linewidths=0, **kwargs)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    return artist


def _draw_scores(ax, cloud, scores, view, cmap, size, vmin, vmax, colorbar, title):
    order = np.argsort(scores, kind="stable")
    artist = _scatter(ax, cloud, np.asarray(scores, dtype=np.float64), order, view, size, cmap=cmap, vmin=vmin, vmax=vmax)
    if colorbar:
        ax.figure.colorbar(artist, ax=ax, shrink=0.8, label="anomaly score")
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
    view : {"top", "3d"}, default="top"
        ``"top"``: x-y scatter seen from above, best for range scans; ``"3d"``: 3-D scatter.
    cmap : str or Colormap, default="inferno"
        Colour map of the scores.
    point_size : float, optional
        Marker area; by default it shrinks with the number of points.
    vmin, vmax : float, optional
        Colour limits; by default the 1st and 99th percentiles of ``scores``.
    colorbar : bool, default=True
        Draw a colour bar next to the score panel.
    title : str, optional
        Title of the score panel (the truth panel repeats it).

    Returns
    -------
    axes : list of matplotlib Axes
        ``[score_axes]``, or ``[score_axes, truth_axes]`` when ``labels`` is given.

    See Also
    --------
    plot_cloud_pairs : several clouds with their ground truth, written to a file.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.plotting import plot_anomaly_scores
    >>> rng = np.random.default_rng(0)
    >>> cloud = rng.uniform(size=(500, 3))
    >>> scores = cloud[:, 0]
    >>> labels = (cloud[:, 0] > 0.9).astype(int)
    >>> axes = plot_anomaly_scores(cloud, scores, labels, title="demo")  # doctest: +SKIP
    >>> len(axes)  # doctest: +SKIP
    2
    """
    if view not in _VIEWS:
        raise ValueError(f"view must be one of {_VIEWS}, got {view!r}")
    cloud = _check_cloud(cloud)
    scores = _check_values(scores, len(cloud), "scores").astype(np.float64)
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
    lo, hi = _score_limits([scores], vmin, vmax)
    _draw_scores(axes[0], cloud, scores, view, cmap, size, lo, hi, colorbar, title)
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
):
    """One row per cloud: anomaly scores (left) next to the ground truth (right).

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
        One title per cloud (row).
    path : str or path-like, optional
        If given, the figure is written there (format from the extension, e.g. ``.png``).
    view : {"top", "3d"}, default="top"
        See :func:`plot_anomaly_scores`.
    cmap : str or Colormap, default="inferno"
    point_size : float, optional
    vmin, vmax : float, optional
        Shared colour limits; by default the 1st and 99th percentiles of all scores.
    dpi : int, default=110
        Resolution of the written file.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Rendered with the Agg canvas; not registered with pyplot.

    See Also
    --------
    plot_anomaly_scores : one cloud.

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
    if view not in _VIEWS:
        raise ValueError(f"view must be one of {_VIEWS}, got {view!r}")
    clouds = [_check_cloud(c, f"clouds[{i}]") for i, c in enumerate(clouds)]
    n = len(clouds)
    if n == 0:
        raise ValueError("clouds is empty")
    if len(anomaly_scores) != n or len(labels) != n:
        raise ValueError(f"{n} clouds but {len(anomaly_scores)} score arrays and {len(labels)} label arrays")
    if titles is None:
        titles = [f"cloud {i}" for i in range(n)]
    elif len(titles) != n:
        raise ValueError(f"{n} clouds but {len(titles)} titles")
    scores = [_check_values(s, len(c), f"anomaly_scores[{i}]").astype(np.float64) for i, (c, s) in enumerate(zip(clouds, anomaly_scores))]
    truths = [_check_values(t, len(c), f"labels[{i}]") for i, (c, t) in enumerate(zip(clouds, labels))]
    lo, hi = _score_limits(scores, vmin, vmax)
    fig = _new_figure((8.4, 3.0 * n))
    last = None
    for row, (cloud, score, truth, title) in enumerate(zip(clouds, scores, truths, titles)):
        size = _default_point_size(len(cloud)) if point_size is None else float(point_size)
        ax_s = _add_axes(fig, n, 2, 2 * row + 1, view)
        ax_t = _add_axes(fig, n, 2, 2 * row + 2, view)
        last = _draw_scores(ax_s, cloud, score, view, cmap, size, lo, hi, False, f"{title}\nanomaly score")
        _draw_truth(ax_t, cloud, truth, view, size, title)
    fig.colorbar(last, ax=list(fig.axes), location="right", shrink=min(0.9, 0.3 + 0.15 * n), label="anomaly score (shared scale)")
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
