"""Plumbing shared by the estimators: devices, seeding, the epoch loop, progress, pickling."""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import threading
import time
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


class Progress:
    """A one-line text progress bar on stderr (no dependency); silent when ``verbose == 0``."""

    def __init__(self, total: int, verbose: int, label: str):
        self.total, self.verbose, self.label = total, verbose, label
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def update(self, done: int, **metrics):
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(done, 1) * (self.total - done)
        width = 20
        filled = int(width * done / max(self.total, 1))
        values = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if v is not None and math.isfinite(v))
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}  {values}  {elapsed:.0f}s (eta {eta:.0f}s)"
        if self.tty and self.verbose < 2:
            end = "\n" if done >= self.total else ""
            print("\r" + line, end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


def train_best_epoch(modules: dict, optimizer, n_epochs: int, run_epoch, validate, verbose: int, label: str):
    """Run ``n_epochs`` epochs and restore the weights of the best one.

    ``run_epoch(epoch)`` trains one epoch and returns its mean loss; ``validate()`` returns the
    validation loss or None when there is no validation set (then the training loss decides).
    Returns (loss_curve, validation_curve, best_epoch, best_loss). The modules are left with
    the best epoch's weights.
    """
    progress = Progress(n_epochs, verbose, label)
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
        progress.update(epoch + 1, loss=loss, val=None if val is None else float(val), best=best_loss)
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


def knn_of_clouds(clouds, k: int, device: torch.device, backend: str):
    """Move clouds to ``device`` and compute each one's kNN graph once.

    Returns (points, indices, sum_of_distances, n_points): the tensors per cloud and the sums
    that give the scale of equation (4), s = sum of kNN distances / (k * number of points).
    """
    from .geometry import knn_graph

    points, indices = [], []
    total, count = 0.0, 0
    for cloud in clouds:
        tensor = torch.as_tensor(cloud, dtype=torch.float32, device=device)
        idx, dist = knn_graph(tensor, k, backend=backend)
        points.append(tensor)
        indices.append(idx)
        total += float(dist.sum(dtype=torch.float64))
        count += dist.numel()
    return points, indices, total, count


def inference_inputs(estimator, X):
    """What every inference method starts with: fitted check, validated clouds, the device."""
    from sklearn.utils.validation import check_is_fitted

    from ._validation import check_point_clouds

    check_is_fitted(estimator)
    return check_point_clouds(X, min_points=estimator.k + 1), resolve_device(estimator.device)


def scale_from_sums(total: float, count: int) -> float:
    scale = total / max(count, 1)
    if not scale > 0:
        raise ValueError(
            "the mean kNN distance of the training clouds is 0: every point coincides with its "
            "neighbours, so the data cannot be normalised (equation 4)"
        )
    return scale
