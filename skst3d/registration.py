"""Rigid registration of scans to a reference scan: trimmed point-to-point ICP.

3D-ST descriptors are translation invariant but not rotation invariant (the paper's ablation,
reproduced in ``benchmarks/``, shows rotation invariance costs detection quality). When good
parts are scanned in varying poses, the same physical spot then yields different descriptors
from scan to scan, and the student has to learn every pose. Inspection cells usually register
scans to a reference before any comparison; :class:`RigidRegistration` does that as a
scikit-learn transformer, so it composes with any detector in a
:class:`~sklearn.pipeline.Pipeline`. numpy and scipy only.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.spatial import cKDTree
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._validation import check_point_clouds

__all__ = ["RigidRegistration", "rigid_align", "best_rigid_transform"]

# Source points the final ICP refinement uses at most (a random subset of larger clouds). The
# point-to-point optimum is flat along the surface (the refinement often stops at its iteration
# cap): on the protocol's dev scans of 16,384 points, refining on 4,096 instead of all points
# moved the aligned points by a median 0.18 and 0.31 point spacings (at most 1.6) and cost 2.4x
# less; benchmarks/RESULTS.md (quality) has the default re-measured with it.
_MAX_REFINE_POINTS = 4096


def best_rigid_transform(source, target):
    """Rotation R and translation t minimising ``sum ||R @ source_i + t - target_i||^2`` (Kabsch).

    Parameters
    ----------
    source, target : ndarray of shape (n, 3)
        Corresponding points.

    Returns
    -------
    rotation : ndarray of shape (3, 3)
        A proper rotation (determinant +1, never a reflection).
    translation : ndarray of shape (3,)

    Examples
    --------
    >>> import numpy as np
    >>> p = np.random.default_rng(0).normal(size=(10, 3))
    >>> R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> rotation, translation = best_rigid_transform(p, p @ R.T + 1.0)
    >>> np.allclose(rotation, R), np.allclose(translation, 1.0)
    (True, True)
    """
    source_mean, target_mean = source.mean(0), target.mean(0)
    covariance = (source - source_mean).T @ (target - target_mean)
    u, _, vt = np.linalg.svd(covariance)
    # Flip the weakest axis when the best orthogonal map would be a reflection.
    sign = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    return rotation, target_mean - rotation @ source_mean


def _principal_frames(points):
    """The four right-handed frames of principal axes (the signs PCA leaves open)."""
    centred = points - points.mean(0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    vectors = vectors[:, ::-1]
    frames = []
    for s0 in (1.0, -1.0):
        for s1 in (1.0, -1.0):
            frame = vectors * np.array([s0, s1, 1.0])
            frame[:, 2] = np.cross(frame[:, 0], frame[:, 1])
            frames.append(frame)
    return frames


def _trimmed_icp(source, tree, target, rotation, translation, overlap, max_iterations, tolerance):
    """ICP from an initial guess; each step fits the ``overlap`` closest correspondences."""
    previous = np.inf
    for _ in range(max_iterations):
        distances, nearest = tree.query(source @ rotation.T + translation)
        keep = distances <= np.quantile(distances, overlap)
        rotation, translation = best_rigid_transform(source[keep], target[nearest[keep]])
        error = np.sqrt(np.mean(distances[keep] ** 2))
        if previous - error <= tolerance * max(error, 1e-12):
            break
        previous = error
    distances, _ = tree.query(source @ rotation.T + translation)
    kept = np.sort(distances)[: max(1, int(overlap * len(distances)))]
    return rotation, translation, float(np.sqrt(np.mean(kept**2)))


def rigid_align(source, reference, *, overlap=0.9, max_iterations=50, n_subsample=1024, tolerance=1e-6,
                tie=0.1, random_state=None, _tree=None):
    """Rigid transform that best maps ``source`` onto ``reference`` (trimmed ICP, global start).

    ICP only finds the nearest local optimum, so it is started from the identity and from the
    four alignments of the two clouds' principal axes, run briefly on ``n_subsample`` source
    points; of the starts whose trimmed error is within ``tie`` of the lowest, the one with the
    smallest rotation is refined on all points, or a random 4,096 of larger clouds (a nearly
    symmetric part then keeps its pose instead of flipping). Trimming
    (fitting only the ``overlap`` fraction of closest pairs) keeps defects, clutter and the
    parts one scan sees and the other does not from pulling the fit.

    Parameters
    ----------
    source, reference : array-like of shape (n, 3) and (m, 3)
    overlap : float in (0, 1]
        Fraction of the source points expected to have a counterpart in the reference.
    max_iterations : int
    n_subsample : int
        Source points used to choose between the starts.
    tolerance : float
        Stop when the trimmed RMS error improves by less than this relative amount.
    tie : float
        Relative margin within which two fits count as equally good.
    random_state : int, RandomState instance or None
        Draws the subsample.

    Returns
    -------
    rotation : ndarray of shape (3, 3)
    translation : ndarray of shape (3,)
    rmse : float
        Root mean square distance of the ``overlap`` closest aligned source points to the
        reference, in the clouds' units.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.datasets import make_synthetic_parts
    >>> cloud = make_synthetic_parts(n_train=1, n_test=0, part_types=["bracket"], random_state=0).train[0]
    >>> c, s = np.cos(0.4), np.sin(0.4)
    >>> turned = cloud @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T + 5.0
    >>> rotation, translation, rmse = rigid_align(turned, cloud, random_state=0)
    >>> bool(np.abs(turned @ rotation.T + translation - cloud).max() < 1e-3)
    True
    """
    source = np.asarray(source, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    tree = _tree if _tree is not None else cKDTree(reference)
    rng = check_random_state(random_state)
    subsample = source
    if source.shape[0] > n_subsample:
        subsample = source[rng.choice(source.shape[0], n_subsample, replace=False)]
    reference_frame = _principal_frames(reference)[0]
    starts = [np.eye(3)] + [reference_frame @ frame.T for frame in _principal_frames(source)]
    candidates = []
    for start in starts:
        translation = reference.mean(0) - start @ source.mean(0)
        candidates.append(_trimmed_icp(subsample, tree, reference, start, translation, overlap, 20, tolerance))
    # Nearly symmetric parts fit about as well turned by 180 degrees; scans of one part come in
    # similar poses, so among fits within `tie` of the best the smallest rotation wins.
    lowest = min(rmse for _, _, rmse in candidates)
    close = [c for c in candidates if c[2] <= (1.0 + tie) * lowest]
    best = min(close, key=lambda c: _rotation_angle(c[0]))
    refine = source
    if source.shape[0] > _MAX_REFINE_POINTS:
        refine = source[rng.choice(source.shape[0], _MAX_REFINE_POINTS, replace=False)]
    return _trimmed_icp(refine, tree, reference, best[0], best[1], overlap, max_iterations, tolerance)


def _rotation_angle(rotation):
    return float(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)))


class RigidRegistration(TransformerMixin, BaseEstimator):
    """Register every cloud rigidly to a reference training cloud (trimmed ICP).

    ``fit`` keeps one training cloud as the reference; ``transform`` moves each cloud onto it
    with :func:`rigid_align`. Points keep their order and number, so per-point scores of a
    detector after it still line up with the input points. Use it in front of a detector
    when good parts are scanned in varying poses::

        make_pipeline(RigidRegistration(), StudentTeacherDetector())

    Parameters
    ----------
    reference : int, default=0
        Index of the training cloud used as the reference.
    overlap : float, default=0.9
        Fraction of each cloud expected to have a counterpart on the reference.
    max_iterations : int, default=50
    n_subsample : int, default=1024
        Points used to choose the best of the five ICP starts.
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    reference_ : ndarray of shape (m, 3)
        The reference cloud (float64 copy).
    n_features_in_ : int
        Always 3.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d.registration import RigidRegistration
    >>> from skst3d.datasets import make_synthetic_parts
    >>> clouds = make_synthetic_parts(n_train=3, n_test=0, part_types=["bracket"], random_state=0).train
    >>> aligned = RigidRegistration(random_state=0).fit_transform(clouds)
    >>> [a.shape == c.shape for a, c in zip(aligned, clouds)]
    [True, True, True]
    """

    _parameter_constraints = {
        "reference": [Interval(Integral, 0, None, closed="left")],
        "overlap": [Interval(Real, 0, 1, closed="right")],
        "max_iterations": [Interval(Integral, 1, None, closed="left")],
        "n_subsample": [Interval(Integral, 3, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, reference=0, overlap=0.9, max_iterations=50, n_subsample=1024, random_state=None):
        self.reference = reference
        self.overlap = overlap
        self.max_iterations = max_iterations
        self.n_subsample = n_subsample
        self.random_state = random_state

    def fit(self, X, y=None):
        """Keep the reference cloud ``X[reference]``.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)
        y : ignored

        Returns
        -------
        self : RigidRegistration
        """
        self._validate_params()
        clouds = check_point_clouds(X, min_points=4)
        if self.reference >= len(clouds):
            raise ValueError(f"reference={self.reference} but X holds only {len(clouds)} clouds")
        self.reference_ = np.array(clouds[self.reference], dtype=np.float64)
        self.n_features_in_ = 3
        return self

    def transforms(self, X):
        """The rigid transform of every cloud onto the reference.

        Returns
        -------
        rotations : ndarray of shape (n_clouds, 3, 3)
        translations : ndarray of shape (n_clouds, 3)
        rmse : ndarray of shape (n_clouds,)
            Trimmed RMS distance to the reference after alignment (see :func:`rigid_align`).
        """
        return self._transforms(check_point_clouds(X, min_points=4))

    def _transforms(self, clouds):
        check_is_fitted(self, "reference_")
        tree = cKDTree(self.reference_)
        seed = check_random_state(self.random_state).randint(0, 2**31 - 1)
        results = [
            rigid_align(cloud, self.reference_, overlap=self.overlap, max_iterations=self.max_iterations,
                        n_subsample=self.n_subsample, random_state=seed, _tree=tree)
            for cloud in clouds
        ]
        # check_point_clouds refuses an empty X, so there is at least one result
        rotations, translations, rmse = map(np.array, zip(*results))
        return rotations, translations, rmse

    def transform(self, X):
        """Clouds moved onto the reference, same points in the same order (float64).

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)

        Returns
        -------
        aligned : list of ndarray of shape (n_i, 3)
        """
        clouds = check_point_clouds(X, min_points=4)
        rotations, translations, _ = self._transforms(clouds)
        return [
            cloud @ rotation.T + translation
            for cloud, rotation, translation in zip(clouds, rotations, translations)
        ]
