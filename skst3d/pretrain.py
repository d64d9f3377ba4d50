"""Self-supervised pretraining of the 3D-ST teacher (paper, section 3.1)."""

from __future__ import annotations

import copy
import json
import math
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import weights
from ._graph import NeighborGraph, induced_subgraph, prepare_clouds
from ._training import (
    TorchStateMixin,
    inference_inputs,
    limited_threads,
    resolve_device,
    seed_from,
    split_validation,
    torch_seed,
    train_best_epoch,
)
from ._validation import check_point_clouds
from ._version import __version__
from .nn import DescriptorNet, ReceptiveFieldDecoder

# Kept for code that imported it from here; the registry is skst3d.weights.
WEIGHTS_DIR = weights.WEIGHTS_DIR

# Centres per cloud used by score_samples: enough for a stable mean, fixed so scores repeat.
_N_SCORE_CENTERS = 64

_KNN_BACKENDS = {"auto", "keops", "kdtree", "torch"}

# Teacher files: metadata bounds checked before any network is allocated.
_META_BOUNDS = {"d": (4, 4096), "k": (1, 4096), "n_blocks": (1, 64), "n_decoded_points": (1, 1 << 20)}


def bundled_n_blocks(d, k=32):
    """Residual blocks of the teacher bundled for ``(d, k)`` (see :func:`skst3d.weights.n_blocks`)."""
    return weights.n_blocks(d, k)


class TeacherPretrainer(TorchStateMixin, BaseEstimator):
    """Self-supervised pretraining of the 3D-ST teacher network.

    A :class:`~skst3d.nn.DescriptorNet` computes one descriptor per point; at every step
    ``samples_per_step`` random points of a cloud are drawn, their receptive fields (the
    ``2 * n_blocks``-hop kNN neighbourhoods of equation 2) are centred on their mean, and a
    decoder MLP reconstructs each field from its descriptor under the Chamfer loss of
    equation (3) (see :func:`skst3d.geometry.chamfer_distance` for the convention). Clouds
    are first divided by ``scale_``, the mean kNN distance of equation (4).

    Each step runs the network only on the union of the sampled receptive fields, which
    gives exactly the descriptors of the full cloud at the sampled points (a point's
    descriptor depends only on its receptive field) at a fraction of the cost.

    Parameters
    ----------
    d : int, default=64
        Descriptor dimension (a multiple of 4).
    k : int, default=32
        Neighbours in the kNN graph.
    n_blocks : int, default=4
        Residual blocks; each holds two LFA blocks, so a receptive field spans
        ``2 * n_blocks`` hops.
    n_epochs : int, default=250
        Passes over the training clouds; one step per cloud and epoch.
    samples_per_step : int, default=16
        Receptive fields reconstructed per step (at least 2: the decoder standardises the
        descriptors over them).
    n_decoded_points : int, default=1024
        Points m produced by the decoder for each receptive field.
    learning_rate : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-6
        Adam weight decay.
    validation_fraction : float, default=0.05
        Fraction of the clouds held out; the epoch with the lowest validation loss is kept
        (the training loss decides when no cloud is held out).
    absolute_coordinates : bool, default=False
        Append the absolute coordinates of each point and neighbour to the geometric input of
        every LFA block, as RandLA-Net does. For the paper's ablation only: descriptors then
        depend on where a structure lies, not only on its shape, which the paper measured to
        hurt detection.
    max_receptive_field : int or None, default=None
        If set, each reconstruction target is a random subset of at most this many points
        of its receptive field (the network still sees the whole field).
    warm_start : bool, default=False
        Continue training the fitted networks instead of starting anew (keeps ``scale_``),
        so pretraining can grow across runs.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available.
    knn_backend : {"auto", "keops", "kdtree", "torch"}, default="auto"
        See :func:`skst3d.geometry.knn_graph`.
    n_jobs : int or None, default=None
        Threads for torch, BLAS and k-d tree queries (scikit-learn's convention: ``None`` is 1
        unless in a :func:`joblib.parallel_config` context, ``-1`` all usable cores).
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the validation split and the sampled points. CPU runs repeat bit
        for bit for a fixed integer and a fixed ``n_jobs``; another thread count changes the
        last bits of every step, which training amplifies (about 1e-3 relative in the
        descriptors after a few epochs), as in any network training.
    verbose : int, default=0
        Progress bar with the losses per epoch when > 0.

    Attributes
    ----------
    scale_ : float
        Mean kNN distance s of the pretraining clouds (equation 4), in input units.
    network_ : DescriptorNet
        The pretrained teacher.
    decoder_ : ReceptiveFieldDecoder
        The decoder D.
    loss_curve_ : list of float
        Mean training Chamfer loss per epoch.
    validation_loss_curve_ : list of float
        Validation Chamfer loss per epoch (NaN without validation clouds).
    best_epoch_ : int
        Epoch whose weights were kept.
    best_loss_ : float
        Its validation loss (training loss without validation clouds).
    n_features_in_ : int
        Always 3 (x, y, z).

    See Also
    --------
    StudentTeacherDetector : uses a fitted teacher to detect anomalies.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d import TeacherPretrainer
    >>> rng = np.random.default_rng(0)
    >>> clouds = [rng.normal(size=(300, 3)) for _ in range(3)]
    >>> teacher = TeacherPretrainer(d=8, k=8, n_blocks=1, n_epochs=2, n_decoded_points=32,
    ...                             random_state=0).fit(clouds)
    >>> [f.shape for f in teacher.transform(clouds[:1])]
    [(300, 8)]
    >>> float(teacher.score(clouds)) < 0
    True
    """

    _parameter_constraints = {
        "d": [Interval(Integral, 4, None, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "n_blocks": [Interval(Integral, 1, None, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "samples_per_step": [Interval(Integral, 2, None, closed="left")],
        "n_decoded_points": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "absolute_coordinates": ["boolean"],
        "max_receptive_field": [Interval(Integral, 1, None, closed="left"), None],
        "warm_start": ["boolean"],
        "device": [str, torch.device],
        "knn_backend": [StrOptions(_KNN_BACKENDS)],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        d=64,
        k=32,
        n_blocks=4,
        n_epochs=250,
        samples_per_step=16,
        n_decoded_points=1024,
        learning_rate=1e-3,
        weight_decay=1e-6,
        validation_fraction=0.05,
        absolute_coordinates=False,
        max_receptive_field=None,
        warm_start=False,
        device="auto",
        knn_backend="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.d = d
        self.k = k
        self.n_blocks = n_blocks
        self.n_epochs = n_epochs
        self.samples_per_step = samples_per_step
        self.n_decoded_points = n_decoded_points
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.absolute_coordinates = absolute_coordinates
        self.max_receptive_field = max_receptive_field
        self.warm_start = warm_start
        self.device = device
        self.knn_backend = knn_backend
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Pretrain the teacher on a list of point clouds.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)
            Pretraining clouds (e.g. :func:`skst3d.datasets.make_pretraining_scenes`).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : TeacherPretrainer
        """
        self._validate_params()
        if self.d % 4:
            raise ValueError(f"d must be a multiple of 4, got d={self.d}")
        clouds = check_point_clouds(X, min_points=self.k + 1)
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        warm = self._warm_start_checked()
        with limited_threads(self.n_jobs):
            prepared, scale = prepare_clouds(
                clouds, self.k, device=device, backend=self.knn_backend, scale=self.scale_ if warm else None
            )
            train_idx, val_idx = split_validation(len(clouds), self.validation_fraction, rng)
            network, decoder = self._starting_networks(warm, rng, device)
            curves = _pretrain(network, decoder, prepared, train_idx, val_idx, rng, self)
        self._set_fitted(network, decoder, scale, curves, warm)
        return self

    def _warm_start_checked(self):
        """Whether this fit continues the fitted networks (and that they fit the parameters)."""
        warm = self.warm_start and hasattr(self, "network_")
        if warm and (
            self.network_.d != self.d
            or self.network_.n_blocks != self.n_blocks
            or self.network_.absolute_coordinates != self.absolute_coordinates
        ):
            raise ValueError("warm_start=True needs the same d, n_blocks and absolute_coordinates as the fitted teacher")
        return warm

    def _starting_networks(self, warm, rng, device):
        """Copies of the fitted networks (warm start) or new ones: a failed fit leaves ``self`` as it was."""
        if warm:
            return copy.deepcopy(self.network_).to(device), copy.deepcopy(self.decoder_).to(device)
        with torch_seed(seed_from(rng)):
            network = DescriptorNet(self.d, self.n_blocks, absolute_coordinates=self.absolute_coordinates)
            decoder = ReceptiveFieldDecoder(self.d, self.n_decoded_points)
        return network.to(device), decoder.to(device)

    def _set_fitted(self, network, decoder, scale, curves, warm):
        # Fitted attributes are set only now, so an interrupted fit leaves no half-fitted state.
        losses, val_losses, best_epoch, best_loss = curves
        offset = len(self.loss_curve_) if warm else 0
        self.loss_curve_ = (list(self.loss_curve_) if warm else []) + losses
        self.validation_loss_curve_ = (list(self.validation_loss_curve_) if warm else []) + val_losses
        self.best_epoch_ = offset + best_epoch
        self.best_loss_ = best_loss
        self.scale_ = float(scale)
        self.network_ = network.eval()
        self.decoder_ = decoder.eval()
        self.n_features_in_ = 3

    def _prepared(self, X, scale=None):
        clouds, device = inference_inputs(self, X)
        with limited_threads(self.n_jobs):
            prepared, _ = prepare_clouds(
                clouds, self.k, device=device, backend=self.knn_backend, scale=self.scale_ if scale is None else scale
            )
        return clouds, prepared, device

    def transform(self, X, scale=None):
        """Descriptors of every point.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)
        scale : float, optional
            Divide the clouds by this instead of ``scale_`` (a detector applies the s of its
            own training set, as the paper does).

        Returns
        -------
        descriptors : list of ndarray of shape (n_i, d), float32
        """
        _, prepared, device = self._prepared(X, None if scale is None else float(scale))
        network = self.network_.to(device)
        with torch.no_grad(), limited_threads(self.n_jobs):
            return [network(cloud.graph()).cpu().numpy() for cloud in prepared]

    def score_samples(self, X):
        """Reconstruction quality per cloud: minus the mean Chamfer loss (3), higher is better.

        The loss is averaged over 64 points per cloud (fewer if the cloud is smaller) drawn
        from a fixed seed derived from ``random_state``, so repeated calls agree.

        Returns
        -------
        scores : ndarray of shape (n_clouds,)
        """
        _, prepared, device = self._prepared(X)
        network, decoder = self.network_.to(device), self.decoder_.to(device)
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        scores = []
        with torch.no_grad(), limited_threads(self.n_jobs):
            for cloud in prepared:
                rng = np.random.RandomState(seed)
                centers = _draw_centers(cloud.points.shape[0], _N_SCORE_CENTERS, rng)
                loss = reconstruction_loss(
                    network, decoder, cloud.points, cloud.knn_indices, centers, self.max_receptive_field, rng
                )
                scores.append(-float(loss.mean()))
        return np.asarray(scores)

    def score(self, X, y=None):
        """Mean of :meth:`score_samples`, for model selection by held-out reconstruction."""
        return float(np.mean(self.score_samples(X)))

    def reconstruct(self, X, centers):
        """Decoded and true receptive fields, in input units, for inspection and pictures.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)
        centers : list of array-like of int
            Indices of the centre points, one array per cloud.

        Returns
        -------
        results : list of Bunch
            Per cloud: ``decoded`` (n_centers, m, 3) and ``fields`` (list of (m_j, 3)),
            both centred on the field's mean, and ``means`` (n_centers, 3).
        """
        from .geometry import receptive_fields

        clouds, prepared, device = self._prepared(X)
        if len(centers) != len(clouds):
            raise ValueError(f"got {len(centers)} arrays of centers for {len(clouds)} clouds")
        network, decoder = self.network_.to(device), self.decoder_.to(device)
        results = []
        with torch.no_grad(), limited_threads(self.n_jobs):
            for i, (cloud, c) in enumerate(zip(prepared, centers)):
                points, knn = cloud.points, cloud.knn_indices
                c = torch.as_tensor(np.asarray(c, dtype=np.int64), device=device)
                if c.numel() and (c.min() < 0 or c.max() >= points.shape[0]):
                    raise ValueError(f"centers[{i}] holds indices outside [0, {points.shape[0]}) of cloud {i}")
                flat, offsets = receptive_fields(knn, c, network.n_hops)
                graph, where = _union_graph(points, knn, c, flat)
                decoded = decoder(network(graph)[where]) * self.scale_
                fields = [points[flat[a:b]].double() * self.scale_ for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
                means = torch.stack([f.mean(0) for f in fields]) if fields else torch.zeros((0, 3), dtype=torch.float64)
                results.append(
                    Bunch(
                        decoded=decoded.cpu().numpy(),
                        fields=[(f - m).cpu().numpy() for f, m in zip(fields, means)],
                        means=means.cpu().numpy() + cloud.origin,
                    )
                )
        return results

    # -- weights files ---------------------------------------------------------------------

    def save(self, path, **metadata):
        """Write the fitted teacher to ``path`` (.pt, torch state dicts) and ``path``.json."""
        check_is_fitted(self)
        meta = {
            "d": self.d, "k": self.k, "n_blocks": self.n_blocks, "n_decoded_points": self.n_decoded_points,
            "absolute_coordinates": bool(self.network_.absolute_coordinates),
            "scale": self.scale_, "scale_convention": "inputs divided by the mean kNN distance (equation 4)",
            "best_epoch": self.best_epoch_, "best_loss": self.best_loss_, "epochs": len(self.loss_curve_),
            "skst3d_version": __version__, **metadata,
        }
        blob = {
            "network": {k: v.cpu() for k, v in self.network_.state_dict().items()},
            "decoder": {k: v.cpu() for k, v in self.decoder_.state_dict().items()},
            "loss_curve": list(self.loss_curve_),
            "validation_loss_curve": list(self.validation_loss_curve_),
            "meta": meta,
        }
        _write_atomically(str(path), lambda tmp: torch.save(blob, tmp))
        _write_atomically(str(path) + ".json", lambda tmp: _dump_json(meta, tmp))
        return self

    @classmethod
    def load(cls, path, **params):
        """A fitted TeacherPretrainer from a file written by :meth:`save`.

        The file is read with ``torch.load(weights_only=True)`` (no code runs), and its
        metadata is checked before any network is allocated.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is not a complete teacher file (truncated, empty, another format), its
            metadata is missing or out of range, or its weights are not finite or do not fit the
            metadata; the message names the file.
        """
        blob, meta = _read_teacher_file(os.fspath(path))
        absolute = bool(meta.get("absolute_coordinates", False))
        teacher = cls(
            d=meta["d"], k=meta["k"], n_blocks=meta["n_blocks"], n_decoded_points=meta["n_decoded_points"],
            absolute_coordinates=absolute,
        )
        teacher.set_params(**params)
        network = DescriptorNet(meta["d"], meta["n_blocks"], absolute_coordinates=absolute)
        decoder = ReceptiveFieldDecoder(meta["d"], meta["n_decoded_points"])
        for name, module in (("network", network), ("decoder", decoder)):
            try:
                module.load_state_dict(blob[name])
            except (RuntimeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: the {name} weights do not fit the metadata ({exc})") from None
        teacher.network_, teacher.decoder_ = network.eval(), decoder.eval()
        teacher.scale_ = float(meta["scale"])
        teacher.loss_curve_ = [float(v) for v in blob.get("loss_curve", [])]
        teacher.validation_loss_curve_ = [float(v) for v in blob.get("validation_loss_curve", [])]
        teacher.best_epoch_ = int(meta.get("best_epoch", -1))
        teacher.best_loss_ = float(meta.get("best_loss", math.nan))
        teacher.n_features_in_ = 3
        teacher.metadata_ = meta
        return teacher

    @classmethod
    def available_pretrained(cls):
        """(d, k) pairs of the teachers bundled with skst3d."""
        return weights.available()

    @classmethod
    def from_pretrained(cls, d=64, k=32, **params):
        """The teacher bundled with skst3d for descriptor dimension ``d``, fitted.

        Raises
        ------
        FileNotFoundError
            If no teacher is bundled for ``(d, k)``; :meth:`available_pretrained` lists them.
        """
        path = weights.weights_path(d, k)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"no bundled teacher for d={d}, k={k}; bundled: {cls.available_pretrained()}. "
                "Pretrain one with TeacherPretrainer(d=...).fit(make_pretraining_scenes(...))"
            )
        return cls.load(path, **params)

    @classmethod
    def random(cls, d=64, k=32, n_blocks=None, random_state=None, **params):
        """A fitted teacher with random, untrained weights (the paper's ablation baseline).

        Parameters
        ----------
        d, k : int
            Descriptor dimension and neighbours.
        n_blocks : int, optional
            Residual blocks; by default those of the teacher bundled for ``d``
            (:func:`skst3d.weights.n_blocks`, whatever ``k``), so that it differs from it only
            in its weights.
        random_state : int, RandomState instance or None
            Seeds the weights.
        **params
            Other TeacherPretrainer parameters.

        Examples
        --------
        >>> from skst3d import TeacherPretrainer
        >>> teacher = TeacherPretrainer.random(d=16, random_state=0)
        >>> teacher.network_.d, teacher.metadata_["pretrained"]
        (16, False)
        """
        if n_blocks is None:  # the network does not depend on k: the teacher bundled for d
            n_blocks = weights.n_blocks(d)
        seed = random_state if isinstance(random_state, Integral) else seed_from(random_state)
        teacher = cls(d=d, k=k, n_blocks=n_blocks, random_state=seed, **params)
        with torch_seed(seed):
            teacher.network_ = DescriptorNet(d, n_blocks, absolute_coordinates=teacher.absolute_coordinates).eval()
            teacher.decoder_ = ReceptiveFieldDecoder(d, teacher.n_decoded_points).eval()
        teacher.scale_ = 1.0
        teacher.loss_curve_, teacher.validation_loss_curve_ = [], []
        teacher.best_epoch_, teacher.best_loss_ = -1, float("nan")
        teacher.n_features_in_ = 3
        teacher.metadata_ = {"pretrained": False}
        return teacher


# ----------------------------------------------------------------------------- training


def _pretrain(network, decoder, prepared, train_idx, val_idx, rng, params):
    """The epoch loop of pretraining: one step per training cloud, best validation epoch kept."""
    optimizer = torch.optim.Adam(
        list(network.parameters()) + list(decoder.parameters()),
        lr=params.learning_rate,
        weight_decay=params.weight_decay,
    )
    val_seed = seed_from(rng)

    def step_loss(cloud, n_centers, step_rng):
        centers = _draw_centers(cloud.points.shape[0], n_centers, step_rng)
        return reconstruction_loss(
            network, decoder, cloud.points, cloud.knn_indices, centers, params.max_receptive_field, step_rng
        ).mean()

    def run_epoch(epoch):
        total_loss = 0.0
        for i in rng.permutation(train_idx):
            loss = step_loss(prepared[i], params.samples_per_step, rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach())
        return total_loss / max(len(train_idx), 1)

    def validate():
        if len(val_idx) == 0:
            return None
        val_rng = np.random.RandomState(val_seed)  # the same centres every epoch
        return float(torch.stack([step_loss(prepared[i], params.samples_per_step, val_rng) for i in val_idx]).mean())

    return train_best_epoch(
        {"network": network, "decoder": decoder}, optimizer, params.n_epochs, run_epoch, validate,
        params.verbose, "pretraining",
    )


def _draw_centers(n_points: int, n_centers: int, rng) -> torch.Tensor:
    return torch.from_numpy(rng.choice(n_points, size=min(n_centers, n_points), replace=False).astype(np.int64))


def _union_graph(points, knn, centers, fields):
    """Graph of the union of the centres' receptive fields (flat indices) and the centres' rows."""
    nodes = torch.unique(fields)
    sub_knn, where = induced_subgraph(knn, nodes)
    return NeighborGraph.from_knn(points[nodes], sub_knn), where[centers.to(where.device)]


def reconstruction_loss(network, decoder, points, knn_indices, centers, max_points=None, random_state=None):
    """Chamfer loss (3) per centre: decoded receptive field against the true, mean-centred one.

    The network runs on the union of the centres' receptive fields only, which gives exactly
    the descriptors of the whole cloud at the centres (a point's descriptor depends only on its
    receptive field) at a fraction of the cost.

    Parameters
    ----------
    network : DescriptorNet
    decoder : ReceptiveFieldDecoder
    points : Tensor of shape (n, 3)
        The cloud, in units of s.
    knn_indices : Tensor of shape (n, k)
    centers : Tensor of shape (B,)
        Indices of the sampled points whose receptive fields are reconstructed.
    max_points : int, optional
        Reconstruction targets are random subsets of at most this many points of each field.
    random_state : int, RandomState instance or None
        Draws those subsets.

    Returns
    -------
    loss : Tensor of shape (B,)
        Differentiable in the weights of both networks.
    """
    from .geometry import chamfer_distance, receptive_fields

    centers = centers.to(points.device)
    flat, offsets = receptive_fields(knn_indices, centers, network.n_hops)
    graph, rows = _union_graph(points, knn_indices, centers, flat)
    predicted = decoder(network(graph)[rows])
    if max_points is not None:
        flat, offsets = receptive_fields(
            knn_indices, centers, network.n_hops, max_points=max_points, random_state=random_state
        )
    targets = points[flat]
    counts = offsets[1:] - offsets[:-1]
    segment = torch.repeat_interleave(torch.arange(len(counts), device=points.device), counts.to(points.device))
    means = torch.zeros((len(counts), 3), device=points.device, dtype=points.dtype).index_add_(0, segment, targets)
    means = means / counts.to(points.device, points.dtype)[:, None]
    return chamfer_distance(predicted, targets - means[segment], offsets.to(points.device))


# ----------------------------------------------------------------------------- files


def _write_atomically(path, write):
    """``write(tmp)`` then rename over ``path``: a failure leaves no half-written file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _dump_json(meta, path):
    with open(path, "w") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)


def _read_teacher_file(path):
    """(blob, metadata) of a teacher file, checked; errors name the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such teacher weights file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (RuntimeError, EOFError, UnpicklingError, ...)
        raise ValueError(
            f"{path}: not a readable teacher weights file ({type(exc).__name__}: {exc}); it may be truncated, "
            "empty or not written by TeacherPretrainer.save"
        ) from None
    missing = {"network", "decoder", "meta"} - set(blob) if isinstance(blob, dict) else {"network", "decoder", "meta"}
    if missing:
        raise ValueError(f"{path}: not a teacher weights file (missing {sorted(missing)})")
    meta = blob["meta"]
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the metadata is not a dictionary")
    for key, (low, high) in _META_BOUNDS.items():
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, Integral) or not low <= value <= high:
            raise ValueError(f"{path}: metadata {key}={value!r} is not an integer in [{low}, {high}]")
    if meta["d"] % 4:
        raise ValueError(f"{path}: metadata d={meta['d']} is not a multiple of 4")
    scale = meta.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, Real) or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{path}: metadata scale={scale!r} is not a positive finite number")
    for name in ("network", "decoder"):
        state = blob[name]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: the {name} weights are not a state dict")
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise ValueError(f"{path}: the {name} weight {key!r} holds NaN or infinite values")
    return blob, meta
