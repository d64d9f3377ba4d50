"""3D Student-Teacher anomaly detection (paper, section 3.2) as a scikit-learn outlier detector."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_memory

from ._graph import NeighborGraph
from ._normalization import LocalErrorReference, smooth_over_neighbors
from ._outlier import PointOutlierMixin
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
from ._validation import anomaly_free_clouds, check_point_clouds
from .geometry import random_rotation
from .nn import DescriptorNet, ReceptiveFieldDecoder, fused_geometric_terms
from .pretrain import _KNN_BACKENDS, TeacherPretrainer, bundled_n_blocks

# Above this many bytes of cached graphs, graphs are rebuilt each step instead of kept.
_GRAPH_CACHE_BYTES = 2 << 30
# Built-in pretraining when no teacher is bundled for the requested d.
_BUILTIN_SCENES = dict(n_scenes=40, n_points=4096)
_FALLBACK_TEACHER_EPOCHS = 20
# Training points kept for descriptor-space normalisation (a random subset beyond this).
_DESCRIPTOR_REFERENCE_SIZE = 16384


class StudentTeacherDetector(TorchStateMixin, PointOutlierMixin, BaseEstimator):
    """Point-wise anomaly detection in 3D point clouds with 3D Student-Teacher (3D-ST).

    A student network (same architecture as the teacher, random initialisation) learns to
    regress the teacher's standardised local descriptors on anomaly-free clouds (equation 5);
    a point's anomaly is the regression error ``‖f_S - (f_T - μ) / σ‖`` (equation 6).
    Following scikit-learn's outlier detectors, :meth:`score_samples` returns minus that error:
    higher means more normal.

    Parameters
    ----------
    teacher : None, "random" or TeacherPretrainer, default=None
        ``None``: the teacher bundled with skst3d for ``d`` (pretrained on the built-in
        scenes if none is bundled for that ``d``); ``"random"``: an untrained teacher (the
        paper's ablation baseline); a fitted :class:`TeacherPretrainer`: used as is (its ``d``
        must equal ``d``); an unfitted one: cloned, given this detector's ``d`` and ``k`` and
        fitted on the built-in scenes.
    k : int, default=32
        Neighbours in the kNN graph of the clouds (the teacher's network does not depend on k).
    d : int, default=64
        Descriptor dimension.
    n_blocks : int or None, default=None
        Residual blocks of the networks; ``None`` takes the teacher's, and for a teacher the
        detector creates ("random", or pretrained on built-in scenes when none is bundled for
        ``d``) the bundled teacher's for ``d`` (1 for d=64, 2 kNN hops).
    n_epochs : int, default=100
        Student training epochs (one step per training cloud and epoch).
    learning_rate : float, default=1e-2
        Adam learning rate at the first epoch. The paper's 1e-3 suits hundreds of training
        clouds; with a dozen, 100 epochs at 1e-3 leave the student far from the teacher
        (measured on the synthetic plate: AU-PRO@0.3 0.74, against 0.94 with the defaults).
    learning_rate_schedule : {"constant", "cosine"}, default="cosine"
        ``"cosine"`` decays the learning rate to zero over the ``n_epochs`` epochs along a
        half cosine; ``"constant"`` keeps it (the paper's recipe is ``learning_rate=1e-3,
        learning_rate_schedule="constant"``).
    weight_decay : float, default=1e-5
        Adam weight decay.
    validation_fraction : float, default=0.1
        Fraction of training clouds held out to choose the best epoch and set ``offset_``.
    n_students : int, default=1
        Students trained from different random initialisations. A point's anomaly is the
        root-mean-square regression error over the students, which equals the error of the
        ensemble mean plus the predictive variance (as in the 2D student-teacher method) and
        reduces to equation (6) for one student.
    smoothing : int, default=1
        Passes of neighbourhood averaging applied to the final point anomalies, after
        ``score_normalization`` (each pass replaces a point's anomaly by the mean over itself
        and its k neighbours), the 3D counterpart of the Gaussian blur 2D methods apply to
        anomaly maps. One pass raised mean AU-PRO@0.3 on the benchmark parts by 0.03-0.08
        (see the user guide); 0 keeps every point's own score, as the paper does.
    score_normalization : {"none", "location", "descriptor"}, default="descriptor"
        Turns a point's regression error into a local z-score: minus the mean, divided by the
        standard deviation, of the errors of the ``n_normalization_neighbors`` training
        points most like it. Normal scan borders, edges and thin features are harder to
        regress than flat faces; normalising stops them from outscoring small defects.
        ``"descriptor"``: the training points nearest in the teacher's descriptor space,
        which needs no common pose (on the benchmark parts it raised mean AU-PRO@0.05 over
        raw errors by 0.07 and 0.17, see the user guide); ``"location"``: those nearest in
        space, for parts in a common pose (fixtured, or registered with
        :class:`~skst3d.registration.RigidRegistration` in a pipeline), the most accurate
        set-up measured; ``"none"``: the paper's raw error (equation 6). The reference is the
        training clouds without the validation ones, whose normalised scores set
        ``offset_``.
    n_normalization_neighbors : int, default=48
        Training points per query for ``score_normalization`` (48 is about four per
        training cloud for a dozen clouds).
    rotation_augmentation : float, default=0.0
        Largest angle, in degrees, of a random rotation applied to a training cloud at every
        step (a fresh rotation each time; the teacher's targets are computed for the rotated
        cloud and standardised with the statistics of the unrotated training clouds). Meant
        for parts scanned in varying poses, to teach the student poses between the ones seen;
        on the benchmark scans, whose poses vary by up to 30 degrees, ``30`` did not help,
        while registering the scans first (:class:`~skst3d.registration.RigidRegistration`
        in a pipeline) did (see the user guide). 0 (no augmentation) is the paper's training; 180 (uniform
        rotations) is the paper's rotation-invariance ablation, which makes locally rotated
        geometry look normal. Validation clouds are never rotated.
    n_points : int or None, default=None
        If set, clouds with more points are reduced to ``n_points`` by farthest point sampling
        (the paper uses 64,000); scores of the sampled points are carried to every input point
        by nearest sampled neighbour, so outputs always match the input.
    contamination : float, default=1e-3
        Fraction of held-out anomaly-free points that :meth:`predict` flags; sets ``offset_``.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available.
    knn_backend : {"auto", "keops", "kdtree", "torch"}, default="auto"
        See :func:`skst3d.geometry.knn_graph`.
    memory : str, joblib.Memory or None, default=None
        Caches teacher pretraining (unfitted teacher or no bundled weights) so that a grid
        search pretrains each teacher once.
    random_state : int, RandomState instance or None, default=None
        Seeds the student's weights, the validation split and the training order.
    verbose : int, default=0
        Progress bar with the losses per epoch when > 0.

    Attributes
    ----------
    teacher_ : TeacherPretrainer
        The fitted teacher in use.
    student_ : DescriptorNet
        The trained student (weights of the best validation epoch); the first one when
        ``n_students > 1``.
    students_ : list of DescriptorNet
        All trained students.
    scale_ : float
        Mean kNN distance s of the training clouds (equation 4), in input units.
    feature_mean_, feature_std_ : ndarray of shape (d,)
        Mean and standard deviation of the teacher's descriptors over the training points.
    offset_ : float
        Threshold on :meth:`score_samples`; ``decision_function = score_samples - offset_``.
    error_reference_ : LocalErrorReference or None
        The training points' positions or descriptors (at most 16,384 descriptors, a random
        subset) and their errors, for ``score_normalization``; None when it is ``"none"``.
    loss_curve_, validation_loss_curve_ : list of float
        Mean squared regression error per epoch (equation 5), training and validation.
    best_epoch_ : int
        Epoch whose weights were kept.
    n_features_in_ : int
        Always 3 (x, y, z).

    See Also
    --------
    TeacherPretrainer : self-supervised teacher pretraining.
    skst3d.metrics.au_pro_scorer : AU-PRO for model selection.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d import StudentTeacherDetector
    >>> rng = np.random.default_rng(0)
    >>> clouds = [rng.normal(size=(200, 3)) for _ in range(4)]
    >>> det = StudentTeacherDetector("random", k=8, d=8, n_blocks=1, n_epochs=2,
    ...                              random_state=0).fit(clouds)
    >>> scores = det.score_samples(clouds[:1])  # minus local z-scores of the errors
    >>> scores[0].shape
    (200,)
    >>> sorted(set(np.concatenate(det.predict(clouds)).tolist()))
    [-1, 1]
    >>> raw = det.set_params(score_normalization="none", smoothing=0).fit(clouds)  # the paper's score
    >>> bool((raw.score_samples(clouds[:1])[0] <= 0).all())  # minus a distance
    True
    """

    _parameter_constraints = {
        "teacher": [None, StrOptions({"random"}), HasMethods(["fit", "transform"])],
        "k": [Interval(Integral, 1, None, closed="left")],
        "d": [Interval(Integral, 4, None, closed="left")],
        "n_blocks": [Interval(Integral, 1, None, closed="left"), None],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "n_students": [Interval(Integral, 1, None, closed="left")],
        "smoothing": [Interval(Integral, 0, None, closed="left")],
        "score_normalization": [StrOptions({"none", "location", "descriptor"})],
        "n_normalization_neighbors": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions({"constant", "cosine"})],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "rotation_augmentation": [Interval(Real, 0, 180, closed="both")],
        "n_points": [Interval(Integral, 2, None, closed="left"), None],
        "contamination": [Interval(Real, 0, 0.5, closed="both")],
        "device": [str, torch.device],
        "knn_backend": [StrOptions(_KNN_BACKENDS)],
        "memory": [None, str, HasMethods(["cache"])],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        teacher=None,
        *,
        k=32,
        d=64,
        n_blocks=None,
        n_epochs=100,
        n_students=1,
        smoothing=1,
        score_normalization="descriptor",
        n_normalization_neighbors=48,
        learning_rate=1e-2,
        learning_rate_schedule="cosine",
        weight_decay=1e-5,
        validation_fraction=0.1,
        rotation_augmentation=0.0,
        n_points=None,
        contamination=1e-3,
        device="auto",
        knn_backend="auto",
        memory=None,
        random_state=None,
        verbose=0,
    ):
        self.teacher = teacher
        self.k = k
        self.d = d
        self.n_blocks = n_blocks
        self.n_epochs = n_epochs
        self.n_students = n_students
        self.smoothing = smoothing
        self.score_normalization = score_normalization
        self.n_normalization_neighbors = n_normalization_neighbors
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.rotation_augmentation = rotation_augmentation
        self.n_points = n_points
        self.contamination = contamination
        self.device = device
        self.knn_backend = knn_backend
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Train the student on anomaly-free clouds.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)
            Training clouds.
        y : list of array-like of shape (n_i,), optional
            Per-point labels (0 or False = normal). Clouds with any anomalous point are left
            out of training, so a grid search over a labelled mixed set trains on good clouds.

        Returns
        -------
        self : StudentTeacherDetector
        """
        self._validate_params()
        if self.d % 4:
            raise ValueError(f"d must be a multiple of 4, got d={self.d}")
        clouds = check_point_clouds(X, min_points=self.k + 1)
        clouds = anomaly_free_clouds(clouds, y)
        rng = check_random_state(self.random_state)
        device = resolve_device(self.device)
        teacher = self._resolve_teacher(rng)
        teacher_net = teacher.network_.to(device).eval()
        n_blocks = teacher_net.n_blocks
        if self.n_blocks is not None and self.n_blocks != n_blocks:
            raise ValueError(f"n_blocks={self.n_blocks} differs from the teacher's n_blocks={n_blocks}")
        clouds = self._reduce(clouds, seed_from(rng))

        points, knn, total, count = knn_of_clouds(clouds, self.k, device, self.knn_backend)
        scale = scale_from_sums(total, count)
        points = [p / scale for p in points]
        keep_graphs = sum(p.shape[0] for p in points) * self.k * 40 < _GRAPH_CACHE_BYTES
        cache = {}

        def graph(i):
            if i in cache:
                return cache[i]
            g = NeighborGraph.from_knn(points[i], knn[i])
            if keep_graphs:
                cache[i] = g
            return g

        train_idx, val_idx = split_validation(len(clouds), self.validation_fraction, rng)
        with torch.no_grad():
            # Teacher descriptors are fixed during student training: computed once.
            teacher_features = [teacher_net(graph(i)) for i in range(len(clouds))]
        stacked = torch.cat([teacher_features[i] for i in train_idx])
        mean = stacked.mean(0)
        std = stacked.std(0).clamp_min(1e-6)
        del stacked
        targets = [(f - mean) / std for f in teacher_features]
        del teacher_features

        with torch_seed(seed_from(rng)):
            students = [
                DescriptorNet(teacher_net.d, n_blocks, absolute_coordinates=teacher_net.absolute_coordinates).to(device)
                for _ in range(self.n_students)
            ]
        # One Adam over all students: their losses add up but their gradients never mix.
        optimizer = torch.optim.Adam(
            [p for student in students for p in student.parameters()],
            lr=self.learning_rate,
            weight_decay=self.weight_decay,
        )

        def regression_error(i, augment=False):
            """Equation (5) per student, summed over the students."""
            g, target = graph(i), targets[i]
            if augment and self.rotation_augmentation > 0:
                rotation = random_rotation(self.rotation_augmentation, rng)
                g = g.rotated(torch.as_tensor(rotation))
                with torch.no_grad():
                    target = (teacher_net(g) - mean) / std
            geometric = fused_geometric_terms(students, g)
            return sum((student(g, geo) - target).pow(2).sum(1).mean() for student, geo in zip(students, geometric))

        schedule = None
        if self.learning_rate_schedule == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.n_epochs)

        def run_epoch(epoch):
            total_loss = 0.0
            for i in rng.permutation(train_idx):
                loss = regression_error(i, augment=True)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach())
            if schedule is not None:
                schedule.step()
            return total_loss / (len(train_idx) * len(students))

        def validate():
            if len(val_idx) == 0:
                return None
            return float(np.mean([float(regression_error(i)) for i in val_idx])) / len(students)

        modules = {f"student{j}": student for j, student in enumerate(students)}
        losses, val_losses, best_epoch, _ = train_best_epoch(
            modules, optimizer, self.n_epochs, run_epoch, validate, self.verbose, "student"
        )
        held_out = val_idx if len(val_idx) else train_idx
        # The training clouds' errors are needed only as the normalisation reference.
        needed = {*held_out, *(train_idx if self.score_normalization != "none" else ())}
        with torch.no_grad():
            errors = {i: _point_anomaly(students, graph(i), targets[i]).cpu().numpy() for i in sorted(needed)}
        reference = self._error_reference(clouds, targets, errors, train_idx, rng)
        held_out_anomaly = np.concatenate([
            smooth_over_neighbors(
                errors[i] if reference is None
                else reference.normalize(self._normalization_keys(clouds[i], targets[i]), errors[i]),
                knn[i].cpu().numpy(), self.smoothing)
            for i in held_out
        ])
        offset = float(np.quantile(-held_out_anomaly.astype(np.float64), self.contamination))

        # Fitted attributes are set only now: an interrupted fit leaves no half-fitted state.
        self.teacher_ = teacher
        self.students_ = students
        self.student_ = students[0]
        self.scale_ = float(scale)
        self.feature_mean_ = mean.cpu().numpy()
        self.feature_std_ = std.cpu().numpy()
        self.offset_ = offset
        self.error_reference_ = reference
        self.loss_curve_ = losses
        self.validation_loss_curve_ = val_losses
        self.best_epoch_ = best_epoch
        self.n_features_in_ = 3
        return self

    def _resolve_teacher(self, rng):
        teacher = self.teacher
        if isinstance(teacher, str):  # "random", the only string allowed by the constraints
            return _random_teacher(self.d, self.k, self.n_blocks or bundled_n_blocks(self.d), seed_from(rng))
        if teacher is None:
            try:
                return TeacherPretrainer.from_pretrained(d=self.d, device=self.device, knn_backend=self.knn_backend)
            except FileNotFoundError:
                teacher = TeacherPretrainer(
                    d=self.d, k=self.k, n_blocks=self.n_blocks or bundled_n_blocks(self.d), n_epochs=_FALLBACK_TEACHER_EPOCHS, random_state=0
                )
        if hasattr(teacher, "network_"):
            if teacher.network_.d != self.d:
                raise ValueError(
                    f"the fitted teacher has d={teacher.network_.d} but the detector has d={self.d}; "
                    "set d to the teacher's or pass an unfitted TeacherPretrainer"
                )
            return teacher
        params = clone(teacher).set_params(d=self.d, k=self.k).get_params()
        if self.n_blocks is not None:
            params["n_blocks"] = self.n_blocks
        fit_teacher = check_memory(self.memory).cache(_fit_teacher_on_builtin_scenes)
        return fit_teacher(type(teacher), params, **_BUILTIN_SCENES)

    def _normalization_keys(self, cloud, target):
        """Where a point lies for normalisation: its position, or its teacher descriptor."""
        if self.score_normalization == "location":
            return cloud
        return target.cpu().numpy()

    def _error_reference(self, clouds, targets, errors, train_idx, rng):
        """The training points' errors for ``score_normalization`` (None when "none")."""
        if self.score_normalization == "none":
            return None
        keys = np.concatenate([self._normalization_keys(clouds[i], targets[i]) for i in train_idx])
        values = np.concatenate([errors[i] for i in train_idx])
        if self.score_normalization == "descriptor" and keys.shape[0] > _DESCRIPTOR_REFERENCE_SIZE:
            keep = np.sort(rng.choice(keys.shape[0], _DESCRIPTOR_REFERENCE_SIZE, replace=False))
            keys, values = keys[keep], values[keep]
        return LocalErrorReference(keys, values, self.n_normalization_neighbors)

    def _reduce(self, clouds, seed):
        if self.n_points is None:
            return clouds
        from .geometry import farthest_point_sampling

        out = []
        for cloud in clouds:
            if cloud.shape[0] > self.n_points:
                idx = farthest_point_sampling(torch.from_numpy(cloud), self.n_points, random_state=seed)
                cloud = cloud[idx.numpy()]
            out.append(cloud)
        return out

    # -- scoring ---------------------------------------------------------------------------

    def score_samples(self, X):
        """Normality of every point: minus the regression error of equation (6).

        With ``score_normalization``, minus the error's local z-score instead.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)

        Returns
        -------
        scores : list of ndarray of shape (n_i,), float64
            Higher means more normal (scikit-learn's outlier convention); ``-scores[i]`` are
            anomaly scores for :mod:`skst3d.metrics`.
        """
        clouds, device = inference_inputs(self, X)
        teacher = self.teacher_.network_.to(device).eval()
        students = [student.to(device).eval() for student in self.students_]
        mean = torch.as_tensor(self.feature_mean_, device=device)
        std = torch.as_tensor(self.feature_std_, device=device)
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        reduced = self._reduce(clouds, seed)
        points, knn, _, _ = knn_of_clouds(reduced, self.k, device, self.knn_backend)
        scores = []
        with torch.no_grad():
            for cloud, sampled, p, idx in zip(clouds, reduced, points, knn):
                graph = NeighborGraph.from_knn(p / self.scale_, idx)
                # Teacher and students share the graph and one pass over its edges.
                geo_teacher, *geo_students = fused_geometric_terms([teacher, *students], graph)
                target = (teacher(graph, geo_teacher) - mean) / std
                anomaly = _point_anomaly(students, graph, target, geo_students)
                anomaly = anomaly.cpu().numpy().astype(np.float64)
                if self.error_reference_ is not None:
                    anomaly = self.error_reference_.normalize(self._normalization_keys(sampled, target), anomaly)
                anomaly = smooth_over_neighbors(anomaly, idx.cpu().numpy(), self.smoothing)
                if sampled.shape[0] != cloud.shape[0]:
                    from scipy.spatial import cKDTree

                    anomaly = anomaly[cKDTree(sampled).query(cloud, workers=-1)[1]]
                scores.append(-anomaly)
        return scores


def _point_anomaly(students, graph, target, geometric=None):
    """RMS over students of the regression error (6)."""
    geometric = geometric or [None] * len(students)
    squared = sum((student(graph, geo) - target).pow(2).sum(1) for student, geo in zip(students, geometric))
    return (squared / len(students)).sqrt()


def _random_teacher(d, k, n_blocks, seed):
    teacher = TeacherPretrainer(d=d, k=k, n_blocks=n_blocks, random_state=seed)
    with torch_seed(seed):
        teacher.network_ = DescriptorNet(d, n_blocks).eval()
        teacher.decoder_ = ReceptiveFieldDecoder(d, teacher.n_decoded_points).eval()
    teacher.scale_ = 1.0
    teacher.loss_curve_, teacher.validation_loss_curve_ = [], []
    teacher.best_epoch_, teacher.best_loss_ = -1, float("nan")
    teacher.n_features_in_ = 3
    teacher.metadata_ = {"pretrained": False}
    return teacher


def _fit_teacher_on_builtin_scenes(cls, params, n_scenes, n_points):
    """Pretrain a teacher on built-in procedural scenes (cached through ``memory``)."""
    from .datasets import make_pretraining_scenes

    scenes = make_pretraining_scenes(n_scenes, n_points=n_points, random_state=0)
    return cls(**params).fit(scenes)
