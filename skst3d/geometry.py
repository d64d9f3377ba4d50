"""Point-cloud geometry used by 3D-ST: kNN graphs, Chamfer distance, sampling, receptive fields.

All functions take and return torch tensors (CPU or CUDA, float32 or float64) unless
stated otherwise; results stay on the input's device.

Backends for nearest-neighbour work (the ``backend`` arguments):

``"kdtree"``
    :class:`scipy.spatial.cKDTree` on the CPU (CUDA inputs make a round trip). The fastest
    exact option on a CPU.
``"keops"``
    Symbolic KeOps reductions (``Kmin_argKmin`` / ``argmin``) on the input's device; the
    fastest option on a GPU. The first call of each formula compiles it (several seconds
    on a cold cache; see :mod:`skst3d._keops`).
``"torch"``
    Exact dense :func:`torch.cdist` in chunks of bounded memory. Always available.
``"auto"``
    KeOps for CUDA tensors (torch if KeOps cannot run there). On the CPU, the k-d tree
    for kNN graphs and torch for Chamfer distances: neither needs a C++ compiler or a
    first-use compilation (KeOps on the CPU is faster for Chamfer distances once
    compiled; ask for it with ``backend="keops"``).

:func:`torch.cdist` is always called with ``compute_mode="donot_use_mm_for_euclid_dist"``:
its default matrix-multiply formulation is not exact in float32 and returns different
neighbours for a fraction of the points.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state

from . import _keops

__all__ = [
    "knn_graph",
    "chamfer_distance",
    "farthest_point_sampling",
    "receptive_fields",
    "mean_knn_distance",
    "scale_from_knn_distances",
    "random_rotation",
    "keops_available",
    "keops_build_folder",
]

_EXACT = "donot_use_mm_for_euclid_dist"
# Elements of the largest dense distance block the torch backends materialise (64 MiB in float32).
_TORCH_BLOCK_ELEMENTS = 1 << 24
# Query points per block of a k-d tree kNN query.
_KDTREE_BLOCK = 1 << 16
# Points per block in the CPU farthest point sampling (see _fps_blocked).
_FPS_BLOCK = 256


# ----------------------------------------------------------------------------- helpers


def _as_points(points, name="points"):
    """Check an (n, 3) float32/float64 tensor (array-likes are converted)."""
    if not isinstance(points, torch.Tensor):
        points = torch.as_tensor(np.asarray(points))
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n_points, 3), got {tuple(points.shape)}.")
    if points.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{name} must be float32 or float64, got {points.dtype}; convert it with .float()."
        )
    return points


def _check_finite(points, name):
    finite = torch.isfinite(points).all(dim=1)
    if not bool(finite.all()):
        bad = int(torch.nonzero(~finite)[0, 0])
        raise ValueError(f"{name} contains NaN or infinite coordinates (first at point {bad}).")


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_random_state(random_state):
    # sklearn's check_random_state does not accept numpy Generators; we do.
    if isinstance(random_state, np.random.Generator):
        return random_state
    return check_random_state(random_state)


def keops_available(device="cpu"):
    """Whether KeOps can compile and run on ``device`` (a tiny probe, run once per device type).

    Never raises: a missing pykeops, compiler or CUDA toolkit gives False and a logged
    warning, and the ``"auto"`` backends then use scipy or torch.

    Examples
    --------
    >>> from skst3d.geometry import keops_available
    >>> keops_available("cpu")  # doctest: +SKIP
    True
    """
    return _keops.keops_available(device)


def keops_build_folder():
    """Folder where KeOps' compiled formulas are cached (``$KEOPS_CACHE_FOLDER`` moves it).

    Like any compiled code, load only a cache folder you trust.
    """
    return _keops.build_folder()


def _resolve_backend(backend, device, allowed):
    if backend not in allowed + ("auto",):
        options = ", ".join(repr(b) for b in allowed + ("auto",))
        raise ValueError(f"backend must be one of {options}; got {backend!r}.")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        return "keops" if _keops.keops_available(device) else "torch"
    return "kdtree" if "kdtree" in allowed else "torch"


# ----------------------------------------------------------------------------- kNN graph


def _knn_with_self(points, n_neighbors, backend):
    """(distances, indices) of the n_neighbors nearest points, self usually included."""
    if backend == "kdtree":
        from scipy.spatial import cKDTree

        coords = points.detach().cpu().numpy()
        tree = cKDTree(coords)
        dist = torch.empty((len(coords), n_neighbors), dtype=points.dtype)
        idx = torch.empty((len(coords), n_neighbors), dtype=torch.int64)
        # In blocks, so that scipy's float64 temporaries stay small for million-point clouds;
        # as many query threads as torch may use (see skst3d's n_jobs).
        for start in range(0, len(coords), _KDTREE_BLOCK):
            block = slice(start, start + _KDTREE_BLOCK)
            d, i = tree.query(coords[block], k=n_neighbors, workers=torch.get_num_threads())
            dist[block] = torch.from_numpy(d.reshape(-1, n_neighbors))
            idx[block] = torch.from_numpy(i.reshape(-1, n_neighbors))
        return dist.to(points.device), idx.to(points.device)
    if backend == "keops":
        dist2, idx = _keops_knn(points, n_neighbors)
        return dist2.clamp_min(0).sqrt(), idx
    # torch: exact cdist, row chunks of bounded memory
    n = points.shape[0]
    chunk = max(1, _TORCH_BLOCK_ELEMENTS // n)
    dists, idxs = [], []
    for start in range(0, n, chunk):
        block = torch.cdist(points[start : start + chunk], points, compute_mode=_EXACT)
        d, i = block.topk(n_neighbors, dim=1, largest=False, sorted=True)
        dists.append(d)
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


# Below this many points KeOps compares every pair; above, grid cells and their neighbours.
_GRID_MIN_POINTS = 8192
# Queries whose k-th neighbour distance sets the grid cell: 1.25 times its 99th percentile,
# so that few points (those at sparse spots) need the all-points search again.
_GRID_PROBES = 1024
_GRID_QUANTILE = 0.99
_GRID_MARGIN = 1.25
# More cells than this (a few far outliers stretch the grid) and the grid is not worth it.
_GRID_MAX_CELLS = 1 << 40


def _keops_knn(points, n_neighbors):
    """Exact kNN with KeOps; block-sparse over a grid for large clouds.

    Points are sorted by grid cell and each cell is compared with its 27 neighbouring cells.
    With a cell as wide as the k-th neighbour distance of most points, this is exact for every
    point whose k-th neighbour lies within one cell width (any point outside the neighbouring
    cells is farther than that); the few other points are searched again against all points.
    """
    n = points.shape[0]
    if n < _GRID_MIN_POINTS:
        return _keops.knn(points, points, n_neighbors)
    probes = torch.linspace(0, n - 1, min(n, _GRID_PROBES), device=points.device).long()
    probe_dist2, _ = _keops.knn(points[probes], points, n_neighbors)
    cell = _GRID_MARGIN * float(torch.quantile(probe_dist2[:, -1].double(), _GRID_QUANTILE).sqrt())
    grid = _grid_cells(points, cell) if cell > 0 else None
    if grid is None:
        return _keops.knn(points, points, n_neighbors)
    order, ranges = grid
    ordered = points[order]
    dist2, idx = _keops.knn(ordered, ordered, n_neighbors, ranges)
    # Exact where the k-th neighbour is within one cell (float32 cell indices: keep a margin).
    uncertain = ~(dist2[:, -1] <= (cell * (1 - 1e-4)) ** 2)
    if bool(uncertain.any()):
        redo = torch.nonzero(uncertain)[:, 0]
        dist2[redo], idx[redo] = _keops.knn(ordered[redo], ordered, n_neighbors)
    out_dist2 = torch.empty_like(dist2)
    out_idx = torch.empty_like(idx)
    out_dist2[order] = dist2
    out_idx[order] = order[idx]
    return out_dist2, out_idx


def _grid_cells(points, cell):
    """(order, KeOps ranges) sorting points by grid cell, each cell seeing its 27 neighbours.

    None when the grid would have too many cells to index.
    """
    device = points.device
    low = points.min(dim=0).values
    ijk = ((points - low) / cell).floor().long() + 1  # a ring of empty cells around
    dims = ijk.max(dim=0).values + 2
    if float(dims.double().prod()) > _GRID_MAX_CELLS:
        return None
    linear = (ijk[:, 0] * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2]
    linear, order = torch.sort(linear, stable=True)
    cells, counts = torch.unique_consecutive(linear, return_counts=True)
    starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    steps = torch.arange(-1, 2, device=device)
    offsets = ((steps[:, None, None] * dims[1] + steps[None, :, None]) * dims[2] + steps[None, None, :]).reshape(-1)
    wanted = cells[:, None] + offsets[None, :]  # sorted along each row, as offsets are
    where = torch.searchsorted(cells, wanted).clamp_max(len(cells) - 1)
    rows, cols = torch.nonzero(cells[where] == wanted, as_tuple=True)
    return order, _keops.grid_ranges(starts, (rows, where[rows, cols]))


def knn_graph(points, k, backend="auto"):
    """Exact k-nearest-neighbour graph of a point cloud, excluding each point itself.

    Parameters
    ----------
    points : torch.Tensor of shape (n_points, 3)
        Float32 or float64, on the CPU or a CUDA device.
    k : int
        Number of neighbours per point; ``n_points`` must be at least ``k + 1``.
    backend : {"auto", "kdtree", "keops", "torch"}, default="auto"
        How neighbours are found (see the module docstring). ``"auto"`` uses KeOps for
        CUDA tensors (torch when KeOps cannot run) and the k-d tree on the CPU. All
        backends are exact; they can only differ in the order of, or choice among,
        neighbours at exactly equal distances.

    Returns
    -------
    indices : torch.LongTensor of shape (n_points, k)
        ``indices[i]`` are the neighbours of point ``i``, nearest first.
    distances : torch.Tensor of shape (n_points, k)
        Euclidean (not squared) distances to those neighbours, ascending, in the dtype
        of ``points``.

    Notes
    -----
    The query point is removed *by index*, not by distance: ``k + 1`` neighbours are
    queried and the row's own index is dropped. With more than ``k`` copies of a point,
    the point itself may not be among the ``k + 1`` returned; then the farthest of them
    is dropped instead. Duplicated points therefore appear as neighbours at distance 0.

    Examples
    --------
    >>> import torch
    >>> from skst3d.geometry import knn_graph
    >>> points = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [3, 0, 0]])
    >>> indices, distances = knn_graph(points, k=1)  # points 2 and 3 are duplicates
    >>> indices.ravel()
    tensor([1, 0, 3, 2])
    >>> distances.ravel()
    tensor([1., 1., 0., 0.])
    """
    points = _as_points(points)
    k = _check_int(k, "k", 1)
    n = points.shape[0]
    if n < k + 1:
        raise ValueError(
            f"knn_graph needs at least k + 1 = {k + 1} points for k = {k} neighbours "
            f"(excluding the point itself); got n = {n} points."
        )
    backend = _resolve_backend(backend, points.device, ("kdtree", "keops", "torch"))
    _check_finite(points, "points")
    with torch.no_grad():
        dist, idx = _knn_with_self(points.detach(), k + 1, backend)
        arange = torch.arange(n, device=idx.device)
        if bool((idx[:, 0] == arange).all()):  # the usual case: views, no masks or copies of n (k + 1)
            return idx[:, 1:], dist[:, 1:]
        own = idx == arange[:, None]
        drop = own.clone()
        # Rows without their own index (more than k duplicates): drop the farthest instead.
        drop[:, -1] |= ~own.any(dim=1)
        keep = ~drop
        return idx[keep].view(n, k), dist[keep].view(n, k)


# ----------------------------------------------------------------------------- Chamfer


def _flatten_targets(targets, offsets, n_pairs, like):
    """Targets as one (sum m_i, 3) tensor plus (B + 1,) offsets, on ``like``'s device/dtype."""
    if isinstance(targets, torch.Tensor) and targets.ndim == 2:
        if offsets is None:
            raise ValueError("a flat targets tensor needs offsets of shape (B + 1,).")
        flat = targets
        offsets = torch.as_tensor(offsets)
        if offsets.dtype not in (torch.int32, torch.int64) or offsets.shape != (n_pairs + 1,):
            raise ValueError(
                f"offsets must be an integer tensor of shape (B + 1,) = ({n_pairs + 1},), got "
                f"{offsets.dtype} of shape {tuple(offsets.shape)}."
            )
        offsets = offsets.to(device=like.device, dtype=torch.int64)
    else:
        if offsets is not None:
            raise ValueError("offsets is only used with a flat (sum m_i, 3) targets tensor.")
        targets = list(targets)
        if len(targets) != n_pairs:
            raise ValueError(f"got {len(targets)} target sets for {n_pairs} predictions.")
        for b, t in enumerate(targets):
            if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[1] != 3:
                shape = tuple(t.shape) if hasattr(t, "shape") else type(t).__name__
                raise ValueError(f"targets[{b}] must be a tensor of shape (m_b, 3), got {shape}.")
        sizes = torch.tensor([len(t) for t in targets], dtype=torch.int64)
        offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)]).to(like.device)
        flat = torch.cat([t.to(like) for t in targets]) if n_pairs else like.new_zeros(0, 3)
    if flat.ndim != 2 or flat.shape[1] != 3:
        raise ValueError(f"targets must have shape (sum m_i, 3), got {tuple(flat.shape)}.")
    sizes = offsets.diff()
    if int(offsets[0]) != 0 or int(offsets[-1]) != len(flat) or bool((sizes < 0).any()):
        raise ValueError(
            f"offsets must start at 0, be non-decreasing and end at len(targets) = {len(flat)}; "
            f"got {offsets.tolist()}."
        )
    if bool((sizes == 0).any()):
        b = int(torch.nonzero(sizes == 0)[0, 0])
        raise ValueError(f"target set {b} is empty; the Chamfer distance needs points on both sides.")
    return flat.to(like), offsets


def _nearest_torch(pred, flat, offsets):
    """Nearest-neighbour indices in both directions with exact dense cdist.

    One pair at a time (measured faster than padded batches), in row chunks of bounded
    memory; the target -> prediction argmin is accumulated over the chunks.
    """
    n_pairs, m, _ = pred.shape
    bounds = offsets.tolist()
    to_target, to_pred = [], []
    for b in range(n_pairs):
        lo, hi = bounds[b], bounds[b + 1]
        target = flat[lo:hi]
        rows = max(1, _TORCH_BLOCK_ELEMENTS // len(target))
        best = None
        for start in range(0, m, rows):
            dist = torch.cdist(pred[b, start : start + rows], target, compute_mode=_EXACT)
            to_target.append(dist.argmin(dim=1) + lo)
            values, where = dist.min(dim=0)
            where = where + (start + b * m)
            if best is None:
                best, arg = values, where
            else:
                closer = values < best  # strict: ties keep the earlier (lower) index
                best = torch.where(closer, values, best)
                arg = torch.where(closer, where, arg)
        to_pred.append(arg)
    return torch.cat(to_target), torch.cat(to_pred)


def chamfer_distance(pred, targets, offsets=None, backend="auto"):
    """Chamfer distance between each predicted point set and its target set.

    Convention (the paper does not fix one): squared Euclidean distances, averaged over
    the points of each set, summed over both directions,

    .. math::

        CD(A, B) = \\frac{1}{|A|} \\sum_{a \\in A} \\min_{b \\in B} \\lVert a - b \\rVert^2
                 + \\frac{1}{|B|} \\sum_{b \\in B} \\min_{a \\in A} \\lVert a - b \\rVert^2 .

    Means (not sums) make the loss independent of the size of the receptive field,
    which varies from point to point; squared distances give smooth gradients that
    vanish at a perfect match, as in point-set generation work.

    Parameters
    ----------
    pred : torch.Tensor of shape (B, m, 3)
        Predicted point sets (for 3D-ST, decoder outputs). Gradients flow into it.
    targets : list of B torch.Tensor of shape (m_b, 3), or torch.Tensor of shape (sum m_b, 3)
        Target sets: a list, or all of them stacked with ``offsets`` (the format returned
        by :func:`receptive_fields` after indexing the cloud). Converted to the dtype and
        device of ``pred``; gradients also flow into them. Every set must be non-empty.
    offsets : torch.LongTensor of shape (B + 1,), optional
        With a stacked ``targets``: set ``b`` is ``targets[offsets[b]:offsets[b + 1]]``.
    backend : {"auto", "keops", "torch"}, default="auto"
        How nearest neighbours are found: KeOps ``argmin`` (default on CUDA when KeOps
        runs) or exact dense :func:`torch.cdist`, pair by pair in chunks of bounded
        memory (default on the CPU).

    Returns
    -------
    distances : torch.Tensor of shape (B,)
        One Chamfer distance per pair, differentiable.

    Notes
    -----
    Nearest neighbours are searched without gradient tracking; the distances to them
    are then recomputed with ordinary torch operations, which gives the exact gradient of
    the Chamfer distance wherever the nearest neighbours are unique (almost everywhere),
    and lets KeOps serve although it cannot differentiate through a min.

    Examples
    --------
    >>> import torch
    >>> from skst3d.geometry import chamfer_distance
    >>> pred = torch.tensor([[[0.0, 0, 0], [2.5, 0, 0]]], requires_grad=True)
    >>> target = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]])
    >>> cd = chamfer_distance(pred, [target])
    >>> cd  # (0 + 0.5**2) / 2 + (0 + 1**2 + 0.5**2) / 3
    tensor([0.5417], grad_fn=<AddBackward0>)
    >>> cd.sum().backward()
    >>> pred.grad
    tensor([[[-0.6667,  0.0000,  0.0000],
             [-0.8333,  0.0000,  0.0000]]])
    """
    if not isinstance(pred, torch.Tensor) or pred.ndim != 3 or pred.shape[2] != 3:
        shape = tuple(pred.shape) if hasattr(pred, "shape") else type(pred).__name__
        raise ValueError(f"pred must be a tensor of shape (B, m, 3), got {shape}.")
    if pred.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"pred must be float32 or float64, got {pred.dtype}.")
    n_pairs, m, _ = pred.shape
    if m == 0:
        raise ValueError("pred has no points (m = 0).")
    backend = _resolve_backend(backend, pred.device, ("keops", "torch"))
    flat, offsets = _flatten_targets(targets, offsets, n_pairs, pred)
    if n_pairs == 0:
        return pred.new_zeros(0)

    pred_flat = pred.reshape(n_pairs * m, 3)
    with torch.no_grad():
        if backend == "keops":
            pred_offsets = torch.arange(n_pairs + 1, device=pred.device) * m
            to_target = _keops.nearest_indices(pred_flat.detach(), flat.detach(), pred_offsets, offsets)
            to_pred = _keops.nearest_indices(flat.detach(), pred_flat.detach(), offsets, pred_offsets)
        else:
            to_target, to_pred = _nearest_torch(pred.detach(), flat.detach(), offsets)

    forward = (pred_flat - flat[to_target]).square().sum(dim=1).view(n_pairs, m).mean(dim=1)
    sizes = offsets.diff()
    batch = torch.repeat_interleave(torch.arange(n_pairs, device=pred.device), sizes)
    backward_sq = (flat - pred_flat[to_pred]).square().sum(dim=1)
    backward = pred.new_zeros(n_pairs).index_add(0, batch, backward_sq) / sizes.to(pred.dtype)
    return forward + backward


# ----------------------------------------------------------------------------- FPS


def _morton_order(coords):
    """Permutation sorting points along a Z-order curve (10 bits per axis)."""
    low = coords.min(axis=0)
    span = np.maximum(coords.max(axis=0) - low, np.finfo(coords.dtype).tiny)
    q = np.clip(((coords - low) / span * 1023).astype(np.int64), 0, 1023)
    code = np.zeros(len(coords), dtype=np.int64)
    for bit in range(10):
        for axis in range(3):
            code |= ((q[:, axis] >> bit) & 1) << (3 * bit + axis)
    return np.argsort(code, kind="stable")


def _fps_blocked(coords, n_samples, first, block=_FPS_BLOCK):
    """Exact farthest point sampling on the CPU, skipping blocks a new pick cannot change.

    Points are grouped into spatially compact blocks (consecutive along a Z-order curve)
    with bounding boxes. A new pick ``c`` can only lower the min-distance of points that
    are closer to it than their current min-distance, so a block whose box is at least
    its largest min-distance away from ``c`` is skipped. The box bound is computed with
    the same float operations, in the same order, as the point distances, so the skip is
    exact, not approximate. Within a block points are kept in index order, so that
    ``argmax`` breaks ties by the lowest index, as the plain algorithm does.
    """
    n = len(coords)
    dtype = coords.dtype
    n_blocks = -(-n // block)
    sentinel = np.iinfo(np.int64).max
    order = np.concatenate([_morton_order(coords), np.full(n_blocks * block - n, sentinel)])
    order = np.sort(order.reshape(n_blocks, block), axis=1)
    valid = order != sentinel
    original = np.where(valid, order, 0)
    X, Y, Z = (np.ascontiguousarray(coords[original, a]) for a in range(3))
    # Padding slots and already chosen points hold -1 so that argmax never returns them.
    mind = np.where(valid, np.inf, -1).astype(dtype)
    lo = [np.where(valid, C, np.inf).min(axis=1) for C in (X, Y, Z)]
    hi = [np.where(valid, C, -np.inf).max(axis=1) for C in (X, Y, Z)]
    block_max = mind.max(axis=1)
    rows, cols = np.nonzero(valid)
    block_of = np.empty(n, dtype=np.int64)
    slot_of = np.empty(n, dtype=np.int64)
    block_of[original[rows, cols]] = rows
    slot_of[original[rows, cols]] = cols

    out = np.empty(n_samples, dtype=np.int64)
    bound = np.empty(n_blocks, dtype=dtype)
    gap = np.empty(n_blocks, dtype=dtype)
    gap2 = np.empty(n_blocks, dtype=dtype)
    zero = dtype.type(0)
    i = first
    for s in range(n_samples):
        out[s] = i
        c = coords[i]
        bound.fill(0)
        for axis in range(3):
            # per-axis distance from c to the box: max(lo - c, c - hi, 0)
            np.subtract(lo[axis], c[axis], out=gap)
            np.subtract(c[axis], hi[axis], out=gap2)
            np.maximum(gap, gap2, out=gap)
            np.maximum(gap, zero, out=gap)
            np.multiply(gap, gap, out=gap)
            bound += gap
        touched = (bound < block_max).nonzero()[0]
        dx = X[touched] - c[0]
        dy = Y[touched] - c[1]
        dz = Z[touched] - c[2]
        d = dx * dx
        d += dy * dy
        d += dz * dz
        updated = np.minimum(mind[touched], d)
        mind[touched] = updated
        block_max[touched] = updated.max(axis=1)
        b = block_of[i]
        mind[b, slot_of[i]] = -1
        block_max[b] = mind[b].max()
        if s + 1 == n_samples:
            break
        best = block_max.max()
        candidates = (block_max == best).nonzero()[0]
        if len(candidates) == 1:
            cb = candidates[0]
            i = int(original[cb, mind[cb].argmax()])
        else:  # a tie between blocks: the lowest index wins
            i = min(int(original[cb, mind[cb].argmax()]) for cb in candidates)
    return out


def _fps_torch(points, n_samples, first):
    """Plain exact farthest point sampling with in-place torch ops (used on CUDA)."""
    n = points.shape[0]
    x, y, z = (points[:, a].contiguous() for a in range(3))
    mind = torch.full((n,), float("inf"), dtype=points.dtype, device=points.device)
    d = torch.empty_like(mind)
    tmp = torch.empty_like(mind)
    out = torch.empty(n_samples, dtype=torch.int64, device=points.device)
    i = torch.tensor([first], device=points.device)
    # The loop never moves data to the host, so on a GPU it queues kernels without syncing.
    for s in range(n_samples):
        out[s : s + 1] = i
        c = points.index_select(0, i)[0]
        torch.sub(x, c[0], out=d)
        d.mul_(d)
        torch.sub(y, c[1], out=tmp)
        d.add_(tmp.mul_(tmp))
        torch.sub(z, c[2], out=tmp)
        d.add_(tmp.mul_(tmp))
        torch.minimum(mind, d, out=mind)
        mind.index_fill_(0, i, -1)  # chosen points are never chosen again
        i = mind.argmax().view(1)  # first maximal index: ties go to the lowest index
    return out


def farthest_point_sampling(points, n_samples, random_state=None):
    """Exact farthest point sampling.

    The first point is drawn uniformly from ``random_state``; each next point is the one
    whose distance to the nearest already chosen point is largest (ties: lowest index).

    Parameters
    ----------
    points : torch.Tensor of shape (n_points, 3)
        Float32 or float64, CPU or CUDA.
    n_samples : int
        Number of points to choose. If ``n_samples >= n_points``, all ``n_points`` indices
        are returned, in farthest-point order (a permutation starting at the first pick).
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None
        Picks the first point; pass an int for reproducible results.

    Returns
    -------
    indices : torch.LongTensor of shape (min(n_samples, n_points),)
        Indices of the chosen points in the order they were chosen, on the device of
        ``points``.

    Notes
    -----
    On the CPU, points are grouped into spatially compact blocks and a new pick only
    updates the blocks it can change; the picks are identical to those of the plain
    algorithm, which updates every point at every pick. For 200,000 -> 64,000 points on
    two CPU cores this took 3-4 s, against about 15 s for the plain loop in numpy and
    30 s or more in torch (see ``benchmarks/RESULTS.md``). On CUDA the plain loop runs on
    the GPU, without host synchronisation. Squared distances are computed in the dtype of
    ``points`` (on a GPU, fused multiply-adds may round differently and so break
    near-ties differently). A point is never chosen twice, even among duplicates.

    Examples
    --------
    >>> import torch
    >>> from skst3d.geometry import farthest_point_sampling
    >>> points = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [10, 0, 0]])
    >>> farthest_point_sampling(points, 3, random_state=0)
    tensor([0, 3, 2])
    """
    points = _as_points(points)
    n_samples = _check_int(n_samples, "n_samples", 1)
    n = points.shape[0]
    if n == 0:
        raise ValueError("points is empty.")
    _check_finite(points, "points")
    rng = _check_random_state(random_state)
    first = int(rng.integers(n)) if isinstance(rng, np.random.Generator) else int(rng.randint(n))
    n_samples = min(n_samples, n)
    with torch.no_grad():
        if points.device.type == "cpu":
            idx = _fps_blocked(points.detach().numpy(), n_samples, first)
            return torch.from_numpy(idx)
        return _fps_torch(points.detach(), n_samples, first)


# ----------------------------------------------------------------------------- receptive fields


def receptive_fields(knn_indices, centers, n_hops, max_points=None, random_state=None):
    """Receptive fields R(p) of equation (2) of the 3D-ST paper, for a batch of centres.

    ``R(p)`` is the union of ``knn^l(p)`` for ``l = 0, ..., n_hops``, where ``knn^0(p) =
    {p}`` and ``knn^l(p)`` collects the neighbours of the points in ``knn^(l-1)(p)``: all
    points reachable from ``p`` in at most ``n_hops`` steps along the (directed) kNN
    graph, ``p`` included.

    Parameters
    ----------
    knn_indices : torch.LongTensor of shape (n_points, k)
        Neighbour lists, as returned by :func:`knn_graph`.
    centers : torch.LongTensor of shape (B,) or sequence of int
        Indices of the centre points.
    n_hops : int
        L, the number of hops (the number of local feature aggregation blocks).
    max_points : int, optional
        If given, a field with more points is replaced by a uniformly random subset of
        ``max_points`` of its points that always contains the centre (indices still
        sorted). Subsets are drawn from ``random_state``.
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None
        Only used with ``max_points``.

    Returns
    -------
    indices : torch.LongTensor of shape (sum of field sizes,)
        The fields one after the other, each sorted ascending.
    offsets : torch.LongTensor of shape (B + 1,)
        Field ``b`` is ``indices[offsets[b]:offsets[b + 1]]``.

    Notes
    -----
    The search is vectorised: a (B, n_points) boolean matrix of visited points grows
    hop by hop by gathering the neighbour rows of the current frontier, so memory is
    ``B * n_points`` bytes plus the frontier's neighbour lists.

    Examples
    --------
    >>> import torch
    >>> from skst3d.geometry import receptive_fields
    >>> knn = torch.tensor([[1], [2], [3], [0]])  # a directed ring 0 -> 1 -> 2 -> 3 -> 0
    >>> indices, offsets = receptive_fields(knn, [0, 2], n_hops=2)
    >>> indices, offsets
    (tensor([0, 1, 2, 0, 2, 3]), tensor([0, 3, 6]))
    """
    if not isinstance(knn_indices, torch.Tensor) or knn_indices.ndim != 2:
        raise ValueError("knn_indices must be a tensor of shape (n_points, k).")
    if knn_indices.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"knn_indices must be an integer tensor, got {knn_indices.dtype}.")
    knn = knn_indices.long()
    n, k = knn.shape
    device = knn.device
    centers = torch.as_tensor(centers, device=device)
    if centers.ndim != 1 or (centers.numel() and centers.dtype not in (torch.int32, torch.int64)):
        raise ValueError(
            f"centers must be a 1-D integer tensor, got {centers.dtype} of shape "
            f"{tuple(centers.shape)}."
        )
    centers = centers.long()
    n_hops = _check_int(n_hops, "n_hops", 0)
    if max_points is not None:
        max_points = _check_int(max_points, "max_points", 1)
    for what, values in (("knn_indices", knn), ("centers", centers)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= n):
            raise ValueError(
                f"{what} must lie in [0, {n}); got values in "
                f"[{int(values.min())}, {int(values.max())}]."
            )

    n_fields = len(centers)
    rows = torch.arange(n_fields, device=device)
    visited = torch.zeros(n_fields, n, dtype=torch.bool, device=device)
    visited[rows, centers] = True
    frontier_rows, frontier_points = rows, centers
    for _ in range(n_hops):
        if frontier_points.numel() == 0:
            break
        reached = torch.zeros_like(visited)
        reached[frontier_rows[:, None].expand(-1, k), knn[frontier_points]] = True
        reached &= ~visited
        visited |= reached
        frontier_rows, frontier_points = reached.nonzero(as_tuple=True)

    sizes = visited.sum(dim=1)
    indices = visited.nonzero(as_tuple=True)[1]  # row-major: by field, then ascending
    if max_points is not None and n_fields and int(sizes.max()) > max_points:
        indices, sizes = _subsample_fields(indices, sizes, centers, max_points, random_state)
    offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    return indices, offsets


def _subsample_fields(indices, sizes, centers, max_points, random_state):
    """Keep a random ``max_points`` subset of each larger field, centre always included."""
    device = indices.device
    idx = indices.cpu().numpy()
    size = sizes.cpu().numpy()
    field = np.repeat(np.arange(len(size)), size)
    rng = _check_random_state(random_state)
    keys = rng.random(len(idx))
    keys[idx == centers.cpu().numpy()[field]] = -1.0  # the centre sorts first, so it is kept
    order = np.lexsort((keys, field))
    starts = np.concatenate([[0], np.cumsum(size)[:-1]])
    rank = np.arange(len(idx)) - starts[field[order]]
    keep = np.sort(order[rank < max_points])  # back to field order, ascending indices
    new_sizes = np.minimum(size, max_points)
    return torch.from_numpy(idx[keep]).to(device), torch.from_numpy(new_sizes).to(device)


# ----------------------------------------------------------------------------- scale


def mean_knn_distance(clouds, k, backend="auto"):
    """Mean distance of every point to its k nearest neighbours (s of equation (4)).

    .. math::

        s = \\frac{1}{k \\, |P|} \\sum_{p \\in P} \\sum_{q \\in knn(p)} \\lVert p - q \\rVert_2

    where P collects the points of all clouds and each point's neighbours are searched
    within its own cloud (the point itself excluded).

    Parameters
    ----------
    clouds : list of torch.Tensor or array-like of shape (n_i, 3)
        The point clouds; each needs at least ``k + 1`` points.
    k : int
        Number of neighbours.
    backend : {"auto", "kdtree", "keops", "torch"}, default="auto"
        Passed to :func:`knn_graph`.

    Returns
    -------
    s : float

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.geometry import mean_knn_distance
    >>> line = np.array([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]])
    >>> mean_knn_distance([line], k=1)  # (1 + 1 + 2) / 3
    1.3333333333333333
    """
    k = _check_int(k, "k", 1)
    if isinstance(clouds, (np.ndarray, torch.Tensor)) and clouds.ndim == 2:
        raise ValueError("clouds must be a list of point clouds; pass e.g. [cloud].")
    clouds = list(clouds)
    if not clouds:
        raise ValueError("clouds is empty; at least one point cloud is needed.")
    distances = []
    for i, cloud in enumerate(clouds):
        points = _as_points(cloud, name=f"clouds[{i}]")
        if points.shape[0] < k + 1:
            raise ValueError(
                f"clouds[{i}] has {points.shape[0]} points; k + 1 = {k + 1} are needed for "
                f"k = {k} neighbours."
            )
        distances.append(knn_graph(points, k, backend=backend)[1])
    return scale_from_knn_distances(distances)


def scale_from_knn_distances(distances):
    """s of equation (4) from the kNN distances of every point: their mean.

    Parameters
    ----------
    distances : list of torch.Tensor of shape (n_i, k)
        Distances to each point's k nearest neighbours, as :func:`knn_graph` returns them.

    Returns
    -------
    s : float

    Raises
    ------
    ValueError
        If the mean is 0 (every point coincides with its neighbours) or not finite.

    Examples
    --------
    >>> import torch
    >>> from skst3d.geometry import scale_from_knn_distances
    >>> scale_from_knn_distances([torch.tensor([[1.0], [1.0]]), torch.tensor([[4.0]])])
    2.0
    """
    total = sum(float(d.sum(dtype=torch.float64)) for d in distances)
    count = sum(d.numel() for d in distances)
    scale = total / max(count, 1)
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(
            f"the mean kNN distance of the clouds is {scale}: every point coincides with its "
            "neighbours, so the data cannot be normalised (equation 4)"
        )
    return scale


# ----------------------------------------------------------------------------- rotations


def random_rotation(max_degrees=180.0, random_state=None):
    """A random 3x3 rotation matrix turning by at most ``max_degrees``.

    With ``max_degrees >= 180`` the rotation is uniform over SO(3) (Haar measure, from a
    normalised Gaussian quaternion). Below, the axis is uniform on the sphere and the angle
    uniform in ``[0, max_degrees]``.

    Parameters
    ----------
    max_degrees : float, default=180.0
        Largest rotation angle, in degrees (0 gives the identity).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    rotation : ndarray of shape (3, 3), float64
        Orthogonal with determinant +1.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.geometry import random_rotation
    >>> r = random_rotation(30.0, random_state=0)
    >>> bool(np.allclose(r @ r.T, np.eye(3))), round(float(np.linalg.det(r)), 6)
    (True, 1.0)
    >>> bool(np.degrees(np.arccos((np.trace(r) - 1) / 2)) <= 30.0)
    True
    """
    if not (isinstance(max_degrees, numbers.Real) and 0 <= max_degrees):
        raise ValueError(f"max_degrees must be a non-negative number, got {max_degrees!r}")
    rng = _check_random_state(random_state)
    if max_degrees >= 180:
        w, x, y, z = _unit(rng.normal(size=4))
    else:
        axis = _unit(rng.normal(size=3))
        half = np.radians(rng.uniform(0.0, max_degrees)) / 2
        w, (x, y, z) = np.cos(half), np.sin(half) * axis
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _unit(vector):
    return vector / np.linalg.norm(vector)
