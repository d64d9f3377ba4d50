"""Self-supervised pretraining of the 3D-ST teacher (paper, section 3.1)."""

from __future__ import annotations

import json
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._graph import NeighborGraph, induced_subgraph
from ._training import (
    TorchStateMixin,
    inference_inputs,
    knn_of_clouds,
    resolve_device,
    scale_from_sums,
    seed_from,
    split_validation,
    torch_seed,
    train_best_epoch,
)
from ._validation import check_point_clouds
from ._version import __version__
from .nn import DescriptorNet, ReceptiveFieldDecoder

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")

# Centres per cloud used by score_samples: enough for a stable mean, fixed so scores repeat.
_N_SCORE_CENTERS = 64

_KNN_BACKENDS = {"auto", "keops", "kdtree", "torch"}

#: Residual blocks (2 kNN hops; see docs/user_guide.rst) of teachers that detectors create
#: themselves when no teacher is bundled for their d. Measured on 4,096-point parts, one block
#: beat two (benchmarks/RESULTS.md): a smaller receptive field keeps descriptors local.
BUNDLED_N_BLOCKS = 1


def bundled_n_blocks(d, k=32):
    """Residual blocks of the teacher bundled for ``(d, k)``; :data:`BUNDLED_N_BLOCKS` if none is.

    A ``"random"`` teacher takes this architecture, so that it differs from the bundled
    teacher only in its weights (the paper's pretrained-against-random ablation).
    """
    path = os.path.join(WEIGHTS_DIR, f"teacher_d{d}_k{k}.pt.json")
    if not os.path.exists(path):
        return BUNDLED_N_BLOCKS
    with open(path) as fh:
        return int(json.load(fh)["n_blocks"])


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
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the validation split and the sampled points; CPU runs repeat
        exactly for a fixed integer.
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
        warm = self.warm_start and hasattr(self, "network_")
        if warm and (
            self.network_.d != self.d
            or self.network_.n_blocks != self.n_blocks
            or self.network_.absolute_coordinates != self.absolute_coordinates
        ):
            raise ValueError("warm_start=True needs the same d, n_blocks and absolute_coordinates as the fitted teacher")

        points, knn, total, count = knn_of_clouds(clouds, self.k, device, self.knn_backend)
        scale = self.scale_ if warm else scale_from_sums(total, count)
        points = [p / scale for p in points]
        train_idx, val_idx = split_validation(len(clouds), self.validation_fraction, rng)

        if warm:
            network, decoder = self.network_.to(device), self.decoder_.to(device)
        else:
            with torch_seed(seed_from(rng)):
                network = DescriptorNet(self.d, self.n_blocks, absolute_coordinates=self.absolute_coordinates).to(device)
                decoder = ReceptiveFieldDecoder(self.d, self.n_decoded_points).to(device)
        optimizer = torch.optim.Adam(
            list(network.parameters()) + list(decoder.parameters()),
            lr=self.learning_rate,
            weight_decay=self.weight_decay,
        )
        val_seed = seed_from(rng)
        max_rf = self.max_receptive_field

        def run_epoch(epoch):
            total_loss = 0.0
            for i in rng.permutation(train_idx):
                centers = _draw_centers(points[i].shape[0], self.samples_per_step, rng)
                loss = _reconstruction_loss(network, decoder, points[i], knn[i], centers, max_rf, rng).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach())
            return total_loss / max(len(train_idx), 1)

        def validate():
            if len(val_idx) == 0:
                return None
            val_rng = np.random.RandomState(val_seed)
            losses = [
                _reconstruction_loss(
                    network, decoder, points[i], knn[i],
                    _draw_centers(points[i].shape[0], self.samples_per_step, val_rng), max_rf, val_rng,
                ).mean()
                for i in val_idx
            ]
            return float(torch.stack(losses).mean())

        curves = train_best_epoch(
            {"network": network, "decoder": decoder}, optimizer, self.n_epochs,
            run_epoch, validate, self.verbose, "pretraining",
        )
        losses, val_losses, best_epoch, best_loss = curves
        network.eval()
        decoder.eval()
        # Fitted attributes are set only now, so an interrupted fit leaves no half-fitted state.
        offset = len(self.loss_curve_) if warm else 0
        self.loss_curve_ = (list(self.loss_curve_) if warm else []) + losses
        self.validation_loss_curve_ = (list(self.validation_loss_curve_) if warm else []) + val_losses
        self.best_epoch_ = offset + best_epoch
        self.best_loss_ = best_loss
        self.scale_ = float(scale)
        self.network_ = network
        self.decoder_ = decoder
        self.n_features_in_ = 3
        return self

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
        clouds, device = inference_inputs(self, X)
        network = self.network_.to(device)
        scale = self.scale_ if scale is None else float(scale)
        points, knn, _, _ = knn_of_clouds(clouds, self.k, device, self.knn_backend)
        out = []
        with torch.no_grad():
            for p, idx in zip(points, knn):
                out.append(network(NeighborGraph.from_knn(p / scale, idx)).cpu().numpy())
        return out

    def score_samples(self, X):
        """Reconstruction quality per cloud: minus the mean Chamfer loss (3), higher is better.

        The loss is averaged over 64 points per cloud (fewer if the cloud is smaller) drawn
        from a fixed seed derived from ``random_state``, so repeated calls agree.

        Returns
        -------
        scores : ndarray of shape (n_clouds,)
        """
        clouds, device = inference_inputs(self, X)
        network, decoder = self.network_.to(device), self.decoder_.to(device)
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        points, knn, _, _ = knn_of_clouds(clouds, self.k, device, self.knn_backend)
        scores = []
        with torch.no_grad():
            for p, idx in zip(points, knn):
                rng = np.random.RandomState(seed)
                centers = _draw_centers(p.shape[0], _N_SCORE_CENTERS, rng)
                loss = _reconstruction_loss(network, decoder, p / self.scale_, idx, centers, self.max_receptive_field, rng)
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

        clouds, device = inference_inputs(self, X)
        if len(centers) != len(clouds):
            raise ValueError(f"got {len(centers)} arrays of centers for {len(clouds)} clouds")
        network, decoder = self.network_.to(device), self.decoder_.to(device)
        points, knn, _, _ = knn_of_clouds(clouds, self.k, device, self.knn_backend)
        results = []
        with torch.no_grad():
            for i, (p, idx, c) in enumerate(zip(points, knn, centers)):
                c = torch.as_tensor(np.asarray(c, dtype=np.int64), device=device)
                if c.numel() and (c.min() < 0 or c.max() >= p.shape[0]):
                    raise ValueError(f"centers[{i}] holds indices outside [0, {p.shape[0]}) of cloud {i}")
                scaled = p / self.scale_
                flat, offsets = receptive_fields(idx, c, network.n_hops)
                graph, where = _union_graph(scaled, idx, c, flat)
                decoded = decoder(network(graph)[where]) * self.scale_
                fields = [p[flat[a:b]] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
                means = torch.stack([f.mean(0) for f in fields]) if fields else p.new_zeros((0, 3))
                results.append(
                    Bunch(
                        decoded=decoded.cpu().numpy(),
                        fields=[(f - m).cpu().numpy() for f, m in zip(fields, means)],
                        means=means.cpu().numpy(),
                    )
                )
        return results

    # -- bundled weights -------------------------------------------------------------------

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
        tmp = str(path) + ".tmp"
        torch.save(
            {
                "network": {k: v.cpu() for k, v in self.network_.state_dict().items()},
                "decoder": {k: v.cpu() for k, v in self.decoder_.state_dict().items()},
                "loss_curve": list(self.loss_curve_),
                "validation_loss_curve": list(self.validation_loss_curve_),
                "meta": meta,
            },
            tmp,
        )
        os.replace(tmp, path)
        with open(str(path) + ".json", "w") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)
        return self

    @classmethod
    def load(cls, path, **params):
        """A fitted TeacherPretrainer from a file written by :meth:`save`."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = blob["meta"]
        absolute = bool(meta.get("absolute_coordinates", False))
        teacher = cls(
            d=meta["d"], k=meta["k"], n_blocks=meta["n_blocks"], n_decoded_points=meta["n_decoded_points"],
            absolute_coordinates=absolute,
        )
        teacher.set_params(**params)
        network = DescriptorNet(meta["d"], meta["n_blocks"], absolute_coordinates=absolute)
        network.load_state_dict(blob["network"])
        decoder = ReceptiveFieldDecoder(meta["d"], meta["n_decoded_points"])
        decoder.load_state_dict(blob["decoder"])
        teacher.network_, teacher.decoder_ = network.eval(), decoder.eval()
        teacher.scale_ = float(meta["scale"])
        teacher.loss_curve_ = list(blob["loss_curve"])
        teacher.validation_loss_curve_ = list(blob["validation_loss_curve"])
        teacher.best_epoch_ = int(meta["best_epoch"])
        teacher.best_loss_ = float(meta["best_loss"])
        teacher.n_features_in_ = 3
        teacher.metadata_ = meta
        return teacher

    @classmethod
    def available_pretrained(cls):
        """(d, k) pairs of the teachers bundled with skst3d."""
        found = []
        names = os.listdir(WEIGHTS_DIR) if os.path.isdir(WEIGHTS_DIR) else []
        for name in sorted(names):
            if name.startswith("teacher_d") and name.endswith(".pt"):
                d, k = name[len("teacher_d") : -3].split("_k")
                found.append((int(d), int(k)))
        return found

    @classmethod
    def from_pretrained(cls, d=64, k=32, **params):
        """The teacher bundled with skst3d for descriptor dimension ``d``, fitted.

        Raises
        ------
        FileNotFoundError
            If no teacher is bundled for ``(d, k)``; :meth:`available_pretrained` lists them.
        """
        path = os.path.join(WEIGHTS_DIR, f"teacher_d{d}_k{k}.pt")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"no bundled teacher for d={d}, k={k}; bundled: {cls.available_pretrained()}. "
                "Pretrain one with TeacherPretrainer(d=...).fit(make_pretraining_scenes(...))"
            )
        return cls.load(path, **params)


def _draw_centers(n_points: int, n_centers: int, rng) -> torch.Tensor:
    return torch.from_numpy(rng.choice(n_points, size=min(n_centers, n_points), replace=False).astype(np.int64))


def _union_graph(points, knn, centers, fields):
    """Graph of the union of the centres' receptive fields (flat indices) and the centres' rows."""
    nodes = torch.unique(fields)
    sub_knn, where = induced_subgraph(knn, nodes)
    return NeighborGraph.from_knn(points[nodes], sub_knn), where[centers.to(where.device)]


def _reconstruction_loss(network, decoder, points, knn, centers, max_points, rng):
    """Chamfer loss (3) per centre: decoded field against the mean-centred receptive field."""
    from .geometry import chamfer_distance, receptive_fields

    centers = centers.to(points.device)
    flat, offsets = receptive_fields(knn, centers, network.n_hops)
    graph, rows = _union_graph(points, knn, centers, flat)
    predicted = decoder(network(graph)[rows])
    if max_points is not None:
        flat, offsets = receptive_fields(knn, centers, network.n_hops, max_points=max_points, random_state=rng)
    targets = points[flat]
    counts = offsets[1:] - offsets[:-1]
    segment = torch.repeat_interleave(torch.arange(len(counts), device=points.device), counts.to(points.device))
    means = torch.zeros((len(counts), 3), device=points.device, dtype=points.dtype).index_add_(0, segment, targets)
    means = means / counts.to(points.device, points.dtype)[:, None]
    return chamfer_distance(predicted, targets - means[segment], offsets.to(points.device))
