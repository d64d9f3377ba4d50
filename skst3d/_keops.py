"""Every KeOps formula used by skst3d, behind a lazy import.

This is the only module that imports :mod:`pykeops` or builds a ``LazyTensor``. Nothing
happens at ``import skst3d`` time: KeOps is imported (and its output silenced, and its
cache folder fixed) the first time a formula runs or :func:`keops_available` is called.

KeOps compiles one small C++ (or CUDA) library per distinct formula, which costs several
seconds on a cold cache. To keep that cost low, skst3d uses only two formulas, each
specialised once per dtype and device:

* ``knn``: the ``K`` smallest squared distances from each point to a point set
  (``Kmin_argKmin``), used by :func:`skst3d.geometry.knn_graph`; large clouds go through it
  block-sparse, each grid cell of points compared with its neighbouring cells only;
* ``nearest``: the index of the nearest point (``argmin`` of the squared distance), used
  in both directions of :func:`skst3d.geometry.chamfer_distance`. Batches of point sets
  of different sizes go through the same formula with block-diagonal ``ranges``.

The first run of each formula in a process is logged (logger ``"skst3d"``) with its duration
and the cache folder: at WARNING when it took over a second, i.e. KeOps compiled it, so that
first-use compile time is visible without any logging set up; at INFO otherwise.

Cache folder: ``$KEOPS_CACHE_FOLDER`` if set, else ``$XDG_CACHE_HOME/skst3d/keops``
(``~/.cache/skst3d/keops`` without ``XDG_CACHE_HOME``); compiled formulas go to the
subfolder ``pykeops-<version>/<system>_<host>_<kernel>_p<python>`` because binaries are
specific to the KeOps version, the machine and the Python version.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import torch

logger = logging.getLogger("skst3d")

_lock = threading.Lock()
_pykeops = None  # the imported module, once configured
_seen_formulas: set = set()
_available: dict = {}  # device type -> bool


def _pykeops_version():
    from importlib import metadata

    try:
        return metadata.version("pykeops")
    except metadata.PackageNotFoundError:
        return None


def cache_root():
    """Root folder of skst3d's KeOps cache (see the module docstring).

    Returns
    -------
    path : str
        ``$KEOPS_CACHE_FOLDER`` if set, else ``<XDG_CACHE_HOME or ~/.cache>/skst3d/keops``.

    Examples
    --------
    >>> from skst3d._keops import cache_root
    >>> cache_root()  # doctest: +SKIP
    '/home/me/.cache/skst3d/keops'
    """
    root = os.environ.get("KEOPS_CACHE_FOLDER")
    if root:
        return os.path.abspath(os.path.expanduser(root))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "skst3d", "keops")


def _versioned_root():
    return os.path.join(cache_root(), f"pykeops-{_pykeops_version()}")


def build_folder():
    """Exact folder where KeOps binaries are written and looked up.

    Returns
    -------
    path : str
        ``<cache_root()>/pykeops-<version>/<system>_<host>_<kernel>_p<python>``.

    Examples
    --------
    >>> from skst3d._keops import build_folder, cache_root
    >>> build_folder().startswith(cache_root())
    True
    """
    import platform

    uname = platform.uname()
    host = "_".join((uname.system, uname.node, uname.release)) + f"_p{platform.python_version()}"
    return os.path.join(_versioned_root(), host)


def _import_pykeops():
    """Import and configure pykeops once; raise ImportError if it is not installed."""
    global _pykeops
    if _pykeops is not None:
        return _pykeops
    with _lock:
        if _pykeops is not None:
            return _pykeops
        if "pykeops" not in sys.modules:
            # KeOps prints its CUDA status and compile messages with print(); keep them
            # quiet unless the user asked for them.
            os.environ.setdefault("KEOPS_VERBOSE", "0")
            os.environ.setdefault("PYKEOPS_VERBOSE", "0")
            # KeOps reads KEOPS_CACHE_FOLDER at import and creates folders there. Point it at
            # our root for the import only and restore the caller's value afterwards, so
            # child processes (loky, dask workers) see exactly what the user set.
            previous = os.environ.get("KEOPS_CACHE_FOLDER")
            os.environ["KEOPS_CACHE_FOLDER"] = _versioned_root()
            try:
                import pykeops
            finally:
                if previous is None:
                    del os.environ["KEOPS_CACHE_FOLDER"]
                else:
                    os.environ["KEOPS_CACHE_FOLDER"] = previous
        import pykeops

        # Explicit and exact, whatever KeOps' defaults are or whoever imported it first.
        pykeops.set_build_folder(build_folder())
        _pykeops = pykeops
        return pykeops


def _lazy_tensor_class():
    return _import_pykeops().torch.LazyTensor


_COMPILE_NOTICE_SECONDS = 1.0


def _run_logged(key, fn):
    """Run ``fn()``; log the duration the first time ``key`` runs in this process."""
    if key in _seen_formulas:
        return fn()
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    _seen_formulas.add(key)
    # A slow first run means KeOps compiled the formula: say so even with logging unconfigured
    # (WARNING reaches stderr by default); a warm-cache first run stays at INFO.
    level = logging.WARNING if elapsed > _COMPILE_NOTICE_SECONDS else logging.INFO
    logger.log(
        level,
        "KeOps formula %s first run in this process: %.2f s (includes compilation on a cold "
        "cache; cache folder %s)",
        "/".join(str(k) for k in key),
        elapsed,
        build_folder(),
    )
    return out


def _sqdist(x, y):
    """Symbolic (M, N) matrix of squared distances between rows of x and y."""
    LazyTensor = _lazy_tensor_class()
    x_i = LazyTensor(x[:, None, :])
    y_j = LazyTensor(y[None, :, :])
    return ((x_i - y_j) ** 2).sum(-1)


def knn(queries, points, k, ranges=None):
    """K smallest squared distances from every query to a point set, with indices.

    Parameters
    ----------
    queries : torch.Tensor of shape (m, 3)
    points : torch.Tensor of shape (n, 3)
        Same dtype (float32 or float64) and device (CPU or CUDA) as ``queries``.
    k : int
        Number of neighbours to return (a query that is also a point finds itself).
    ranges : tuple of 6 int32 tensors, optional
        KeOps block-sparse ``ranges`` (see :func:`grid_ranges`): each cluster of queries is
        only compared with the point clusters listed for it. Queries that are listed with
        fewer than ``k`` points get ``inf`` distances in the missing slots. Without ranges
        every query sees every point.

    Returns
    -------
    dist2 : torch.Tensor of shape (m, k)
        Squared distances, ascending.
    idx : torch.LongTensor of shape (m, k)

    Examples
    --------
    >>> import torch
    >>> from skst3d._keops import knn
    >>> x = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]])
    >>> dist2, idx = knn(x, x, 2)  # doctest: +SKIP
    >>> idx  # doctest: +SKIP
    tensor([[0, 1],
            [1, 0],
            [2, 1]])
    """
    queries = queries.contiguous()
    points = points.contiguous()
    if ranges is None:
        # KeOps compiles separate binaries with and without ranges; always passing ranges
        # (one block here) keeps it to one formula.
        ranges = _block_ranges(
            torch.tensor([0, len(queries)], device=queries.device),
            torch.tensor([0, len(points)], device=queries.device),
        )

    def run():
        D_ij = _sqdist(queries, points)
        return D_ij.Kmin_argKmin(K=int(k), dim=1, ranges=ranges)

    key = ("knn", f"K={int(k)}", str(points.dtype).replace("torch.", ""), points.device.type)
    dist2, idx = _run_logged(key, run)
    return dist2, idx.long()


def grid_ranges(cell_starts, neighbor_cells):
    """Block-sparse KeOps ``ranges`` in which cluster c of a sorted point set sees its neighbours.

    Parameters
    ----------
    cell_starts : torch.LongTensor of shape (C + 1,)
        Cluster c holds rows ``cell_starts[c]:cell_starts[c + 1]`` (points sorted by cluster).
    neighbor_cells : torch.BoolTensor of shape (C, C) or tuple (rows, cols)
        The (symmetric) cluster pairs to compare, as index pairs sorted by row.

    Returns
    -------
    ranges : tuple of 6 int32 tensors
        For reductions over j and, the relation being symmetric, over i alike.
    """
    rows, cols = neighbor_cells
    ranges_c = torch.stack([cell_starts[:-1], cell_starts[1:]], dim=1).int().contiguous()
    counts = torch.bincount(rows, minlength=len(ranges_c))
    slices = counts.cumsum(0).int().contiguous()
    redranges = ranges_c[cols].contiguous()
    return ranges_c, slices, redranges, ranges_c, slices, redranges


def _block_ranges(offsets_i, offsets_j):
    """KeOps ``ranges`` for a block-diagonal reduction: block b of i only sees block b of j."""
    ranges_i = torch.stack([offsets_i[:-1], offsets_i[1:]], dim=1).int().contiguous()
    ranges_j = torch.stack([offsets_j[:-1], offsets_j[1:]], dim=1).int().contiguous()
    # slices_i[b] = end (exclusive) of block b's list of j-ranges: one j-range per block.
    slices = torch.arange(1, len(ranges_i) + 1, dtype=torch.int32, device=ranges_i.device)
    return ranges_i, slices, ranges_j, ranges_j, slices, ranges_i


def nearest_indices(x, y, x_offsets=None, y_offsets=None):
    """Index of the nearest ``y_j`` (squared Euclidean distance) for every ``x_i``.

    Parameters
    ----------
    x : torch.Tensor of shape (M, 3)
    y : torch.Tensor of shape (N, 3)
        Same dtype and device as ``x``.
    x_offsets, y_offsets : torch.LongTensor of shape (B + 1,), optional
        Batch of B point-set pairs stored flat: rows ``x_offsets[b]:x_offsets[b + 1]`` of
        ``x`` are matched against rows ``y_offsets[b]:y_offsets[b + 1]`` of ``y`` only.
        Every y block must be non-empty. Both or neither must be given.

    Returns
    -------
    idx : torch.LongTensor of shape (M,)
        Row indices into ``y`` (global, not relative to the block).

    Examples
    --------
    >>> import torch
    >>> from skst3d._keops import nearest_indices
    >>> x = torch.tensor([[0.0, 0, 0], [5, 0, 0]])
    >>> y = torch.tensor([[4.0, 0, 0], [1, 0, 0], [9, 0, 0]])
    >>> nearest_indices(x, y)  # doctest: +SKIP
    tensor([1, 0])
    >>> # pair x[0:1] with y[0:1] only, and x[1:2] with y[1:3] only
    >>> nearest_indices(x, y, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 3]))  # doctest: +SKIP
    tensor([0, 1])
    """
    x = x.contiguous()
    y = y.contiguous()
    if (x_offsets is None) != (y_offsets is None):
        raise ValueError("give both x_offsets and y_offsets, or neither")
    if x_offsets is None:
        # A single block: KeOps compiles a separate binary for reductions with and
        # without ranges, so always passing ranges keeps it to one formula.
        x_offsets = torch.tensor([0, len(x)])
        y_offsets = torch.tensor([0, len(y)])
    ranges = _block_ranges(
        x_offsets.to(device=x.device, dtype=torch.int64),
        y_offsets.to(device=x.device, dtype=torch.int64),
    )

    def run():
        return _sqdist(x, y).argmin(dim=1, ranges=ranges)

    key = ("nearest", str(x.dtype).replace("torch.", ""), x.device.type)
    return _run_logged(key, run).view(-1).long()


def keops_available(device="cpu"):
    """Whether KeOps can import, compile and run on ``device``; never raises.

    The probe (a tiny nearest-neighbour query, the formula that Chamfer distances use
    anyway) runs once per device type and process; the answer is cached. A missing
    compiler, missing Python headers or a missing pykeops all give False, with the reason
    logged at WARNING level.

    Parameters
    ----------
    device : str or torch.device, default="cpu"

    Returns
    -------
    available : bool

    Examples
    --------
    >>> from skst3d._keops import keops_available
    >>> keops_available("cpu")  # doctest: +SKIP
    True
    """
    kind = torch.device(device).type
    if kind in _available:
        return _available[kind]
    try:
        x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], device=device)
        ok = nearest_indices(x, x).tolist() == [0, 1]
        reason = "the probe returned a wrong answer"
    except Exception as exc:  # any failure (import, compiler, driver) means "not usable"
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        logger.warning("KeOps is not usable on %s (%s); using the torch/scipy backends.", kind, reason)
    _available[kind] = ok
    return ok
