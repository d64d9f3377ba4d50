"""Plumbing shared by the estimators: devices, seeding, the epoch loops, progress, pickling."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import threading
import warnings

import numpy as np
import torch
from torch import nn

from ._version import __version__


def resolve_device(device) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything torch accepts otherwise."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was requested but CUDA is not available; use device='auto' or 'cpu'")
    return device


def seed_from(random_state) -> int:
    """An integer seed drawn from anything sklearn's ``check_random_state`` accepts."""
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))


# torch's module initialisers draw from its global generator; fits running in threads
# (joblib's threading backend, a Dask worker with several threads) must not interleave there.
_GLOBAL_RNG_LOCK = threading.Lock()


@contextlib.contextmanager
def torch_seed(seed: int):
    """Seed torch's global generators inside the block without disturbing the caller's state.

    Thread-safe: blocks of concurrent threads run one after the other.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def resolve_n_jobs(n_jobs) -> int:
    """Threads for torch, BLAS and k-d trees, by scikit-learn's ``n_jobs`` convention.

    ``None`` means 1 unless a :func:`joblib.parallel_config` context says otherwise (so that
    workers of a parallel grid search never oversubscribe the machine), ``-1`` all usable
    cores, ``-2`` all but one, a positive int that many. Never more than the usable cores,
    and never more than ``OMP_NUM_THREADS`` when set (joblib's and Dask's workers set it).
    """
    from joblib import effective_n_jobs

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_jobs is not None and n_jobs < 0:
        wanted = max(1, cpus + 1 + n_jobs)
    else:
        wanted = effective_n_jobs(n_jobs)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if cap.isdigit() and int(cap) > 0:
        cpus = min(cpus, int(cap))
    return max(1, min(int(wanted), cpus))


@contextlib.contextmanager
def limited_threads(n_jobs):
    """Run the block with torch, BLAS/OpenMP and skst3d's k-d trees on ``resolve_n_jobs`` threads."""
    from threadpoolctl import threadpool_limits

    n = resolve_n_jobs(n_jobs)
    previous = torch.get_num_threads()
    with threadpool_limits(limits=n):
        torch.set_num_threads(n)
        try:
            yield n
        finally:
            torch.set_num_threads(previous)


def kdtree_workers() -> int:
    """Workers for scipy's k-d tree queries: the thread budget set by :func:`limited_threads`."""
    return torch.get_num_threads()


def progress_bar(total: int, verbose: int, label: str):
    """A tqdm bar on stderr when ``verbose > 0``, else one that does nothing."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, disable=not verbose, file=sys.stderr, leave=verbose > 1, dynamic_ncols=True)


def train_best_epoch(modules: dict, optimizer, n_epochs: int, run_epoch, validate, verbose: int, label: str):
    """Run ``n_epochs`` epochs and restore the weights of the best one.

    ``run_epoch(epoch)`` trains one epoch and returns its mean loss; ``validate()`` returns the
    validation loss or None when there is no validation set (then the training loss decides).
    Returns (loss_curve, validation_curve, best_epoch, best_loss). The modules are left with
    the best epoch's weights.
    """
    progress = progress_bar(n_epochs, verbose, label)
    losses, val_losses = [], []
    best_loss, best_epoch, best_state = math.inf, -1, None
    for epoch in range(n_epochs):
        for module in modules.values():
            module.train()
        loss = float(run_epoch(epoch))
        for module in modules.values():
            module.eval()
        with torch.no_grad():
            val = validate()
        losses.append(loss)
        val_losses.append(float(val) if val is not None else math.nan)
        decisive = loss if val is None else float(val)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{label}: the training loss became {loss} at epoch {epoch}; lower learning_rate")
        if decisive < best_loss:
            best_loss, best_epoch = decisive, epoch
            best_state = {name: copy.deepcopy(m.state_dict()) for name, m in modules.items()}
        progress.set_postfix(loss=f"{loss:.4g}", val="-" if val is None else f"{float(val):.4g}", best=f"{best_loss:.4g}")
        progress.update(1)
    progress.close()
    if best_state is not None:
        for name, module in modules.items():
            module.load_state_dict(best_state[name])
    return losses, val_losses, best_epoch, best_loss


def split_validation(n_items: int, fraction: float, rng: np.random.RandomState):
    """Indices (train, validation): at least one validation item when fraction > 0 and n >= 2."""
    order = rng.permutation(n_items)
    n_val = 0 if fraction <= 0 or n_items < 2 else min(n_items - 1, max(1, int(round(fraction * n_items))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class InconsistentVersionWarning(UserWarning):
    """A pickled skst3d estimator is loaded by another skst3d version."""


class TorchStateMixin:
    """Pickle torch modules as CPU copies and record the skst3d version.

    A detector fitted on CUDA then loads on a CPU-only machine; the modules move to the
    requested device on first use.
    """

    def __getstate__(self):
        state = super().__getstate__()
        for key, value in list(state.items()):
            if isinstance(value, nn.Module) and any(p.device.type != "cpu" for p in value.parameters()):
                state[key] = copy.deepcopy(value).to("cpu")
        state["_skst3d_version"] = __version__
        return state

    def __setstate__(self, state):
        version = state.pop("_skst3d_version", None)
        if version != __version__:
            warnings.warn(
                f"Trying to unpickle {type(self).__name__} from skst3d version {version} when using version "
                f"{__version__}. This might lead to breaking code or invalid results. Use at your own risk.",
                InconsistentVersionWarning,
                stacklevel=2,
            )
        super().__setstate__(state)


def inference_inputs(estimator, X):
    """What every inference method starts with: fitted check, validated clouds, the device."""
    from sklearn.utils.validation import check_is_fitted

    from ._validation import check_point_clouds

    check_is_fitted(estimator)
    return check_point_clouds(X, min_points=estimator.k + 1), resolve_device(estimator.device)


def fit_students(model, prepared, targets, train_idx, val_idx, params, rng):
    """Train ``model``'s students by equation (5); returns :func:`train_best_epoch`'s curves.

    One Adam step per training cloud and epoch, over all students at once (their losses add
    up, their gradients never mix). With ``params.rotation_augmentation``, each step turns the
    cloud by a fresh random rotation and recomputes the teacher's targets for it (standardised
    with the statistics of the unrotated training clouds); validation clouds are never turned.
    """
    from .geometry import random_rotation

    optimizer = torch.optim.Adam(model.students.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    schedule = None
    if params.learning_rate_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.n_epochs)
    n_students = len(model.students)

    def run_epoch(epoch):
        total_loss = 0.0
        for i in rng.permutation(train_idx):
            graph, target = prepared[i].graph(), targets[i]
            if params.rotation_augmentation > 0:
                graph = graph.rotated(torch.as_tensor(random_rotation(params.rotation_augmentation, rng)))
                with torch.no_grad():
                    target = model.targets(graph)
            loss = model.regression_loss(graph, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach())
        if schedule is not None:
            schedule.step()
        return total_loss / (len(train_idx) * n_students)

    def validate():
        if len(val_idx) == 0:
            return None
        losses = [float(model.regression_loss(prepared[i].graph(), targets[i])) for i in val_idx]
        return float(np.mean(losses)) / n_students

    modules = {f"student{j}": student for j, student in enumerate(model.students)}
    return train_best_epoch(modules, optimizer, params.n_epochs, run_epoch, validate, params.verbose, "student")
