"""3D Student-Teacher anomaly detection (paper, section 3.2) as a scikit-learn outlier detector."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_memory

from . import weights
from ._graph import prepare_clouds
from ._model import StudentTeacherModel
from ._outlier import PointOutlierMixin
from ._scoring import FusionScales, LocalErrorReference, finish_anomalies
from ._training import (
    TorchStateMixin,
    fit_students,
    inference_inputs,
    limited_threads,
    progress_bar,
    resolve_device,
    seed_from,
    split_validation,
    torch_seed,
)
from ._validation import anomaly_free_clouds, check_point_clouds
from .nn import fused_geometric_terms
from .pretrain import _KNN_BACKENDS, TeacherPretrainer

# An unfitted TeacherPretrainer given as teacher is pretrained on these built-in scenes.
_BUILTIN_SCENES = dict(n_scenes=40, n_points=4096)
# The FPFH companion of fusion="fpfh" keeps at most this many points of the largest training scan.
_FUSION_MAX_POINTS = 1 << 14
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
        ``None``: the teacher bundled with skst3d for ``d`` (an error if none is bundled for
        that ``d``: see :func:`skst3d.weights.available`); ``"random"``: an untrained teacher
        (the paper's ablation baseline, :meth:`TeacherPretrainer.random`); a fitted
        :class:`TeacherPretrainer`: used as is (its ``d`` must equal ``d``), never modified, and
        kept fitted by :func:`sklearn.base.clone` (so grid searches and cross-validation do not
        pretrain it again); an unfitted one: cloned, given this detector's ``d`` and ``k`` and
        pretrained on the built-in scenes (cached through ``memory``).
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
    score_normalization : {"none", "location", "descriptor"}, default="location"
        Turns a point's regression error into a local z-score: minus the mean, divided by the
        standard deviation, of the errors of the ``n_normalization_neighbors`` training
        points most like it. Normal scan borders, edges and thin features are harder to
        regress than flat faces; normalising stops them from outscoring small defects.
        ``"location"``: the training points nearest in space, for parts in a common pose
        (``registration``, the default, or fixtured scans); the statistics around every
        training point are computed once and a scored point takes those of its nearest
        training point (a 1-NN query per point instead of a 48-NN one; mean AU-PRO@0.3
        moved by at most 0.0014 on the protocol's dev and test splits, section
        "normalization" of ``benchmarks/RESULTS.md``); ``"descriptor"``: those nearest in
        the teacher's descriptor space, which needs no common pose (for
        ``registration=False`` on parts scanned in varying poses); ``"none"``: the paper's raw
        error (equation 6). The reference is the training clouds without the validation
        ones, whose normalised scores set ``offset_``. The default was chosen on the dev
        split of ``benchmarks/protocol.py`` (``benchmarks/RESULTS.md``).
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
    fusion : None, "fpfh" or estimator, default="fpfh"
        A classical detector whose point anomalies are fused with 3D-ST's (beyond the paper):
        ``"fpfh"`` is :class:`~skst3d.baseline.FPFHMemoryBankDetector` on a random subset of
        ``n_points`` points of every scan if set; otherwise, if the training scans have more than
        16,384 points, on a random share of every scan that leaves 16,384 of the largest one (a
        scored scan of the training density keeps the density of the bank; a scan larger than
        the training scans gets more points, not a thinner sample); scores are carried back to
        every point. Any
        other unfitted detector with ``fit`` and ``score_samples`` (higher = more normal) is
        cloned. It is fitted on the same training clouds (registered, if ``registration``) as
        the students; each method's anomalies are divided by how far they reach on held-out
        good points (their median and 99th percentile) and the two are averaged. The two
        err on different points (3D-ST on sharp features it has not seen, FPFH on noise and
        smooth bumps), and the fusion beat both alone on the dev split (``benchmarks/RESULTS.md``).
        None: 3D-ST alone, as in the paper.
    registration : bool or RigidRegistration, default=True
        Register every cloud rigidly onto a reference training cloud (trimmed ICP, see
        :class:`~skst3d.registration.RigidRegistration`) before anything else, in fit and in
        scoring, so that parts scanned in any pose are compared in one frame (3D-ST's
        descriptors are not rotation invariant). ``True`` uses ``RigidRegistration()``; an
        unfitted RigidRegistration is cloned with its parameters. Points keep their order, so
        scores still line up with the input points. ``False`` for scans that are already in
        one frame (fixtured) or of parts that are not rigid copies of one another.
    n_points : int, float or None, default=None
        If set, clouds with more points are reduced to ``n_points`` by farthest point sampling
        (the paper uses 64,000); a float in (0, 1) keeps that fraction of each cloud's points,
        which also evens out irregular sampling. Scores of the sampled points are carried to
        every input point by nearest sampled neighbour, so outputs always match the input.
    contamination : float, default=1e-3
        Fraction of held-out anomaly-free points that :meth:`predict` flags; sets ``offset_``.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available.
    knn_backend : {"auto", "keops", "kdtree", "torch"}, default="auto"
        See :func:`skst3d.geometry.knn_graph`.
    memory : str, joblib.Memory or None, default=None
        Caches the pretraining of an unfitted ``teacher`` so that a grid search pretrains each
        teacher once. Like every joblib cache and pickle, load only a cache folder you trust.
    n_jobs : int or None, default=None
        Threads for torch, BLAS and k-d tree queries during fit and scoring, by scikit-learn's
        convention: ``None`` is 1 unless in a :func:`joblib.parallel_config` context, ``-1``
        all usable cores. The default never oversubscribes a shared or busy machine (more
        threads than free cores make torch 10-30 times slower); results repeat bit for bit
        at a fixed ``n_jobs``, and change in the last bits with another.
    random_state : int, RandomState instance or None, default=None
        Seeds the student's weights, the validation split and the training order.
    verbose : int, default=0
        Progress bars (training epochs with their losses; scored points) on stderr when > 0.

    Attributes
    ----------
    teacher_ : TeacherPretrainer
        The fitted teacher in use (the object passed as ``teacher`` when it was fitted).
    fusion_ : estimator or None
        The fitted companion detector of ``fusion``, None without it.
    fusion_scales_ : FusionScales or None
        Medians and tail scales of the two methods' anomalies on the held-out good clouds.
    registration_ : RigidRegistration or None
        The fitted registration (its reference cloud), None without ``registration``.
    model_ : torch.nn.Module
        The model that scores: a frozen copy of the teacher's network, the students and the
        standardisation μ, σ as buffers (``targets(graph)``, ``anomaly(graph)``).
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
    cloud_offset_ : float
        Threshold on :meth:`score_clouds`, set from the held-out good clouds like ``offset_``:
        :meth:`predict_clouds` calls a scan defective below it (see
        :func:`skst3d.defects.cloud_threshold`).
    held_out_deciles_ : ndarray of shape (9,)
        The 10th to 90th percentiles of the held-out good clouds' point scores: how good
        unseen scans score.
    held_out_quantiles_ : ndarray of shape (2,)
        Their 1st percentile and median, which set ``cloud_offset_``
        (:func:`skst3d.defects.threshold_from_percentiles` for another margin).
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
    >>> raw = det.set_params(score_normalization="none", smoothing=0, fusion=None).fit(clouds)  # the paper's
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
        "registration": ["boolean", HasMethods(["fit", "transform"])],
        "fusion": [None, StrOptions({"fpfh"}), HasMethods(["fit", "score_samples"])],
        "n_points": [Interval(Integral, 2, None, closed="left"), Interval(Real, 0, 1, closed="neither"), None],
        "contamination": [Interval(Real, 0, 0.5, closed="both")],
        "device": [str, torch.device],
        "knn_backend": [StrOptions(_KNN_BACKENDS)],
        "memory": [None, str, HasMethods(["cache"])],
        "n_jobs": [Integral, None],
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
        score_normalization="location",
        n_normalization_neighbors=48,
        learning_rate=1e-2,
        learning_rate_schedule="cosine",
        weight_decay=1e-5,
        validation_fraction=0.1,
        rotation_augmentation=0.0,
        fusion="fpfh",
        registration=True,
        n_points=None,
        contamination=1e-3,
        device="auto",
        knn_backend="auto",
        memory=None,
        n_jobs=None,
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
        self.fusion = fusion
        self.registration = registration
        self.n_points = n_points
        self.contamination = contamination
        self.device = device
        self.knn_backend = knn_backend
        self.memory = memory
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Train the students on anomaly-free clouds.

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
        with limited_threads(self.n_jobs):
            clouds = anomaly_free_clouds(check_point_clouds(X, min_points=self.k + 1), y)
            rng = check_random_state(self.random_state)
            device = resolve_device(self.device)
            teacher = self._fitted_teacher(rng)
            registration, clouds = self._registered(clouds, rng)
            prepared, scale = prepare_clouds(
                clouds, self.k, device=device, backend=self.knn_backend, n_points=self.n_points, seed=seed_from(rng)
            )
            train_idx, val_idx = split_validation(len(clouds), self.validation_fraction, rng)
            model, targets = self._standardized_model(teacher, prepared, train_idx, seed_from(rng), device)
            losses, val_losses, best_epoch, _ = fit_students(model, prepared, targets, train_idx, val_idx, self, rng)
            reference = self._error_reference(model, prepared, targets, clouds, train_idx, scale, rng)
            companion = self._fitted_companion(clouds, train_idx, rng)
            held_out = self._held_out(train_idx, val_idx, len(clouds))
            members = self._member_anomalies(
                model, reference, companion, [prepared[i] for i in held_out], [clouds[i] for i in held_out]
            )
            fusion = None if companion is None else FusionScales(members)
            offset, cloud_offset = self._calibrate([-a for a in _fused(members, fusion)])

        # Fitted attributes are set only now: an interrupted fit leaves no half-fitted state.
        self.teacher_ = teacher
        self.registration_ = registration
        self.fusion_, self.fusion_scales_ = companion, fusion
        self.model_ = model
        self.scale_ = float(scale)
        self.offset_, self.cloud_offset_ = offset, cloud_offset
        self.error_reference_ = reference
        self.loss_curve_ = losses
        self.validation_loss_curve_ = val_losses
        self.best_epoch_ = best_epoch
        self.n_features_in_ = 3
        self._fitted_structure = self._structure()
        return self

    def _structure(self):
        """Parameters the fitted model depends on; changing one after fit needs a new fit."""
        return {"k": self.k, "d": self.d, "score_normalization": self.score_normalization,
                "registration": self.registration is not False, "fusion": self.fusion is not None}

    def _fitted_teacher(self, rng):
        teacher = self.teacher
        if isinstance(teacher, str):  # "random", the only string allowed by the constraints
            return TeacherPretrainer.random(d=self.d, k=self.k, n_blocks=self.n_blocks, random_state=seed_from(rng))
        if teacher is None:
            if (self.d, 32) not in weights.available():
                raise ValueError(
                    f"no teacher is bundled for d={self.d} (bundled: d in {[d for d, _ in weights.available()]}); "
                    "pass teacher='random', a fitted TeacherPretrainer, or an unfitted TeacherPretrainer to "
                    "pretrain one on the built-in scenes"
                )
            teacher = TeacherPretrainer.from_pretrained(d=self.d, device=self.device, knn_backend=self.knn_backend)
        elif not hasattr(teacher, "network_"):
            params = clone(teacher).set_params(d=self.d, k=self.k).get_params()
            if self.n_blocks is not None:
                params["n_blocks"] = self.n_blocks
            pretrain = check_memory(self.memory).cache(_fit_teacher_on_builtin_scenes)
            teacher = pretrain(type(teacher), params, **_BUILTIN_SCENES)
        if teacher.network_.d != self.d:
            raise ValueError(
                f"the fitted teacher has d={teacher.network_.d} but the detector has d={self.d}; "
                "set d to the teacher's or pass an unfitted TeacherPretrainer"
            )
        if self.n_blocks is not None and self.n_blocks != teacher.network_.n_blocks:
            raise ValueError(f"n_blocks={self.n_blocks} differs from the teacher's n_blocks={teacher.network_.n_blocks}")
        return teacher

    def _registered(self, clouds, rng):
        """(fitted registration or None, the clouds in its frame)."""
        if self.registration is False:
            return None, clouds
        from .registration import RigidRegistration

        template = RigidRegistration() if self.registration is True else self.registration
        registration = clone(template).set_params(random_state=seed_from(rng)).fit(clouds)
        return registration, registration.transform(clouds)

    def _standardized_model(self, teacher, prepared, train_idx, seed, device):
        """The model (teacher copy, new students) with μ, σ set; and every cloud's targets."""
        with torch_seed(seed):
            model = StudentTeacherModel.for_teacher(teacher.network_, self.n_students)
        model = model.to(device)
        with torch.no_grad():
            # Teacher descriptors are fixed during student training: computed once.
            descriptors = [model.teacher(cloud.graph()) for cloud in prepared]
            model.standardize(torch.cat([descriptors[i] for i in train_idx]))
            targets = [model.standardized(f) for f in descriptors]
        return model, targets

    def _error_reference(self, model, prepared, targets, clouds, train_idx, scale, rng):
        """The training points' errors for ``score_normalization`` (None when "none")."""
        if self.score_normalization == "none":
            return None
        keys, errors = [], []
        with torch.no_grad():
            for i in train_idx:
                errors.append(model.anomaly(prepared[i].graph(), targets[i]).cpu().numpy())
                keys.append(self._normalization_keys(prepared[i], targets[i], clouds[i]))
        keys, errors = np.concatenate(keys), np.concatenate(errors)
        if self.score_normalization == "descriptor" and keys.shape[0] > _DESCRIPTOR_REFERENCE_SIZE:
            keep = np.sort(rng.choice(keys.shape[0], _DESCRIPTOR_REFERENCE_SIZE, replace=False))
            keys, errors = keys[keep], errors[keep]
        origin = None
        if self.score_normalization == "location":  # positions relative to the training centroid
            origin = np.mean([clouds[i].mean(axis=0) for i in train_idx], axis=0)
        return LocalErrorReference(keys, errors, self.n_normalization_neighbors, origin)

    def _normalization_keys(self, cloud, targets, input_cloud):
        """Where a point lies for normalisation: its position, or its teacher descriptor."""
        if self.score_normalization == "location":
            return input_cloud if cloud.sample is None else input_cloud[cloud.sample]
        return targets.cpu().numpy()

    def _held_out(self, train_idx, val_idx, n_clouds):
        """The clouds that set the thresholds: the validation clouds, else (warned) the training ones."""
        if len(val_idx):
            return val_idx
        warnings.warn(
            f"no training cloud was held out ({n_clouds} cloud(s), validation_fraction="
            f"{self.validation_fraction}): offset_ is set from the training clouds' own scores, which "
            "are more normal than new clouds' are, so predict will flag more than the contamination "
            "share of good points. Fit on several clouds with validation_fraction > 0.",
            UserWarning,
            stacklevel=3,
        )
        return train_idx

    def _fitted_companion(self, clouds, train_idx, rng):
        """The ``fusion`` detector fitted on the training clouds (None without fusion)."""
        if self.fusion is None:
            return None
        from .baseline import FPFHMemoryBankDetector

        if self.fusion == "fpfh":
            n_points = self.n_points
            if n_points is None:
                # Large training scans: the same random share of every scan, so that scored scans of
                # the training scans' density keep the density the bank was built at (a fixed count
                # would thin a larger scan more, and FPFH over 32 neighbours depends on the spacing).
                largest = max(clouds[i].shape[0] for i in train_idx)
                n_points = _FUSION_MAX_POINTS / largest if largest > _FUSION_MAX_POINTS else None
            companion = FPFHMemoryBankDetector(n_points=n_points, sampling="random", n_jobs=self.n_jobs)
        else:
            companion = clone(self.fusion)
        if "random_state" in companion.get_params():
            companion.set_params(random_state=seed_from(rng))
        return companion.fit([clouds[i] for i in train_idx])

    # -- scoring ---------------------------------------------------------------------------

    def _anomalies(self, model, reference, prepared, clouds):
        """The one scoring path: raw error (6) -> normalise -> smooth -> every input point.

        Large clouds go through the networks in pieces (:meth:`PreparedCloud.pieces`), which
        gives the same errors in bounded memory.
        """
        out = []
        descriptor_keys = reference is not None and self.score_normalization == "descriptor"
        progress = progress_bar(sum(c.points.shape[0] for c in prepared), self.verbose, "scoring points")
        with torch.no_grad(), progress:
            for cloud, input_cloud in zip(prepared, clouds):
                n = cloud.points.shape[0]
                raw = torch.empty(n, device=cloud.points.device)
                keys = torch.empty((n, model.teacher.d), device=cloud.points.device) if descriptor_keys else None
                for rows, graph, where in cloud.pieces(model.teacher.n_hops):
                    geo_teacher, *geo_students = fused_geometric_terms([model.teacher, *model.students], graph)
                    targets = model.targets(graph, geo_teacher)
                    raw[rows] = model.anomaly(graph, targets, geo_students)[where]
                    if descriptor_keys:
                        keys[rows] = targets[where]
                    progress.update(len(rows))
                if reference is not None:
                    keys = self._normalization_keys(cloud, keys, input_cloud)
                out.append(
                    finish_anomalies(
                        raw.cpu().numpy(), keys, reference, cloud.knn_indices.cpu().numpy(), self.smoothing,
                        cloud.sample, input_cloud, self.n_normalization_neighbors,
                    )
                )
        return out

    def _member_anomalies(self, model, reference, companion, prepared, clouds):
        """Point anomalies of 3D-ST and, with ``fusion``, of the companion: one list per method."""
        members = [self._anomalies(model, reference, prepared, clouds)]
        if companion is None:
            return members
        if isinstance(self.fusion, str):
            # The built-in FPFH companion uses the detector's n_jobs, and the kNN graph of the
            # clouds 3D-ST kept whole instead of querying the same neighbours again.
            companion.set_params(n_jobs=self.n_jobs)
            neighbours = [None if c.sample is not None else c.knn_indices.cpu().numpy() for c in prepared]
            scores = companion._score_samples(clouds, neighbours)
        else:
            scores = companion.score_samples(clouds)
        members.append([-np.asarray(s, dtype=np.float64) for s in scores])
        return members

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
        self._check_structure_unchanged()
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        with limited_threads(self.n_jobs):
            if getattr(self, "registration_", None) is not None:
                clouds = self.registration_.transform(clouds)
            prepared, _ = prepare_clouds(
                clouds, self.k, device=device, backend=self.knn_backend, scale=self.scale_, n_points=self.n_points,
                seed=seed,
            )
            model = self.model_.to(device).eval()
            companion = getattr(self, "fusion_", None)
            members = self._member_anomalies(model, self.error_reference_, companion, prepared, clouds)
            return [-a for a in _fused(members, getattr(self, "fusion_scales_", None))]

    def _check_structure_unchanged(self):
        current = self._structure()
        fitted = getattr(self, "_fitted_structure", current)
        changed = {k: (v, current[k]) for k, v in fitted.items() if current.get(k) != v}
        if changed:
            what = ", ".join(f"{k}={new!r} (fitted with {old!r})" for k, (old, new) in changed.items())
            raise ValueError(f"{what}: the fitted model depends on these parameters; call fit again after changing them")

    # -- fitted parts, named as before the model object --------------------------------------

    @property
    def students_(self):
        """All trained students (list of DescriptorNet)."""
        return list(self.model_.students)

    @property
    def student_(self):
        """The first trained student."""
        return self.model_.students[0]

    @property
    def feature_mean_(self):
        """μ: mean of the teacher's descriptors over the training points, ndarray (d,)."""
        return self.model_.feature_mean.cpu().numpy()

    @property
    def feature_std_(self):
        """σ: their standard deviation, ndarray (d,)."""
        return self.model_.feature_std.cpu().numpy()

    def __sklearn_clone__(self):
        # An unfitted copy, except that a fitted teacher stays the fitted object it is: clone
        # would otherwise unfit it and every grid-search fold would pretrain it again. The
        # detector never modifies its teacher (the model holds a copy of the network).
        params = self.get_params(deep=False)
        teacher = params.pop("teacher")
        cloned = {name: clone(value, safe=False) for name, value in params.items()}
        keep = isinstance(teacher, str) or teacher is None or hasattr(teacher, "network_")
        return type(self)(teacher=teacher if keep else clone(teacher), **cloned)


def _fused(members, fusion):
    """3D-ST's anomalies alone, or fused with the companion's (see :class:`FusionScales`)."""
    return members[0] if fusion is None else fusion.fuse(members)


def _fit_teacher_on_builtin_scenes(cls, params, n_scenes, n_points):
    """Pretrain a teacher on built-in procedural scenes (cached through ``memory``)."""
    from .datasets import make_pretraining_scenes

    scenes = make_pretraining_scenes(n_scenes, n_points=n_points, random_state=0)
    return cls(**params).fit(scenes)
