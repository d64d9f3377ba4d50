"""Multi-scale fusion: average the point scores of several detectors fitted on the same clouds."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted

from ._outlier import PointOutlierMixin


class ScoreFusion(PointOutlierMixin, _BaseComposition):
    """Point-wise outlier detector whose score is the mean of its members' scores.

    Each member is fitted on the same clouds; :meth:`score_samples` averages their
    :meth:`score_samples` point by point. Meant for detectors that look at different scales
    (for example :class:`~skst3d.StudentTeacherDetector` with ``k=16`` and ``k=32``: the
    smaller graph sees small defects that the larger one blurs). The members' scores must be
    on one scale: use detectors with ``score_normalization``, whose scores are local z-scores.

    Parameters
    ----------
    estimators : list of (str, estimator) tuples
        Named members; each needs ``fit`` and ``score_samples`` on lists of point clouds.
        Their parameters can be set as ``<name>__<parameter>`` (grid search).

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted members (clones of ``estimators``).
    named_estimators_ : dict
        The fitted members by name.
    offset_ : float
        Threshold on :meth:`score_samples`: the mean of the members' ``offset_``.
    cloud_offset_ : float
        Threshold on :meth:`score_clouds`: the mean of the members' ``cloud_offset_``.

    See Also
    --------
    skst3d.StudentTeacherDetector : the detector to fuse.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d import StudentTeacherDetector
    >>> from skst3d.fusion import ScoreFusion
    >>> rng = np.random.default_rng(0)
    >>> clouds = [rng.normal(size=(200, 3)) for _ in range(4)]
    >>> small = dict(d=8, n_blocks=1, n_epochs=2, score_normalization="location", random_state=0)
    >>> fused = ScoreFusion([("k8", StudentTeacherDetector("random", k=8, **small)),
    ...                      ("k16", StudentTeacherDetector("random", k=16, **small))]).fit(clouds)
    >>> each = [m.score_samples(clouds[:1])[0] for m in fused.estimators_]
    >>> bool(np.allclose(fused.score_samples(clouds[:1])[0], (each[0] + each[1]) / 2))
    True
    """

    _parameter_constraints = {"estimators": [list]}

    def __init__(self, estimators):
        self.estimators = estimators

    def get_params(self, deep=True):
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params):
        self._set_params("estimators", **params)
        return self

    def fit(self, X, y=None):
        """Fit a clone of every member on ``X`` (and ``y``, which members may use to drop clouds).

        Returns
        -------
        self : ScoreFusion
        """
        self._validate_params()
        if not self.estimators:
            raise ValueError("ScoreFusion needs at least one (name, estimator) pair in estimators")
        names, members = zip(*self.estimators)
        self._validate_names(names)
        for name, member in self.estimators:
            if not hasattr(member, "score_samples"):
                raise TypeError(f"member {name!r} ({type(member).__name__}) has no score_samples method")
        fitted = [clone(member).fit(X, y) for member in members]
        # set only after every member fitted: a failure leaves no half-fitted state
        self.estimators_ = fitted
        self.named_estimators_ = dict(zip(names, fitted))
        self.offset_ = float(np.mean([_last_step(member).offset_ for member in fitted]))
        self.cloud_offset_ = float(np.mean([_last_step(member).cloud_offset_ for member in fitted]))
        return self

    def score_samples(self, X):
        """Mean of the members' point scores, one array per cloud (higher = more normal)."""
        check_is_fitted(self)
        per_member = [member.score_samples(X) for member in self.estimators_]
        return [np.mean(scores, axis=0) for scores in zip(*per_member)]


def _last_step(member):
    """The member itself, or a pipeline's last step (which holds the thresholds)."""
    return member[-1] if hasattr(member, "steps") else member
