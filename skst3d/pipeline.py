"""A scikit-learn :class:`~sklearn.pipeline.Pipeline` that forwards skst3d's cloud-level methods.

scikit-learn's Pipeline forwards only the methods it knows (``score_samples``, ``predict``,
``decision_function``, ...). :class:`Pipeline` adds ``score_clouds``, ``predict_clouds`` and
``find_defects``: the clouds go through the transforms (such as
:class:`~skst3d.registration.RigidRegistration`), then to the final detector's method. Defect
regions are reported on the input points, in their frame and units, with the point scores
of the transformed clouds (transforms of point clouds keep the points and their order).
"""

from __future__ import annotations

from sklearn import pipeline as _sk_pipeline
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._validation import check_point_clouds

__all__ = ["Pipeline", "make_pipeline"]


def _final_estimator_has(attr):
    def check(self):
        getattr(self._final_estimator, attr)  # AttributeError hides the method
        return True

    return check


class Pipeline(_sk_pipeline.Pipeline):
    """A :class:`sklearn.pipeline.Pipeline` with ``score_clouds``, ``predict_clouds`` and ``find_defects``.

    Parameters, attributes and the other methods are those of
    :class:`sklearn.pipeline.Pipeline`. Build one with :func:`make_pipeline`.

    See Also
    --------
    make_pipeline : Build a pipeline from estimators, naming the steps.

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d import StudentTeacherDetector
    >>> from skst3d.pipeline import Pipeline
    >>> from skst3d.registration import RigidRegistration
    >>> rng = np.random.default_rng(0)
    >>> clouds = [rng.normal(size=(200, 3)) for _ in range(4)]
    >>> detector = StudentTeacherDetector("random", k=8, d=8, n_epochs=2, registration=False, random_state=0)
    >>> model = Pipeline([("register", RigidRegistration(random_state=0)), ("detect", detector)])
    >>> model.fit(clouds).predict_clouds(clouds[:2]).shape
    (2,)
    """

    def _transform_clouds(self, X):
        check_is_fitted(self)
        Xt = X
        for _, _, transformer in self._iter(with_final=False):
            Xt = transformer.transform(Xt)
        return Xt

    @available_if(_final_estimator_has("score_clouds"))
    def score_clouds(self, X):
        """Transform the clouds, then the final estimator's ``score_clouds``.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)

        Returns
        -------
        scores : ndarray of shape (n_clouds,)
            One normality score per cloud, higher = more normal.
        """
        return self.steps[-1][1].score_clouds(self._transform_clouds(X))

    @available_if(_final_estimator_has("predict_clouds"))
    def predict_clouds(self, X):
        """Transform the clouds, then the final estimator's ``predict_clouds``.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)

        Returns
        -------
        verdicts : ndarray of shape (n_clouds,)
            +1 (good) or -1 (defective) per cloud.
        """
        return self.steps[-1][1].predict_clouds(self._transform_clouds(X))

    @available_if(_final_estimator_has("find_defects"))
    def find_defects(self, X, *, threshold="auto", min_points=5, merge_distance=3.0, min_peak="cloud"):
        """Defect regions of every cloud, in the frame and units of ``X``.

        The final estimator scores the transformed clouds; its regions (see
        :meth:`skst3d.StudentTeacherDetector.find_defects`, whose parameters these are) are
        computed on the input points with those scores, so a registered scan's regions are
        reported where they are on the scan as given.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)
        threshold : "auto", float or None, default="auto"
        min_points : int, default=5
        merge_distance : float, default=3.0
        min_peak : "cloud", float or None, default="cloud"

        Returns
        -------
        regions : list of list of :class:`~skst3d.defects.DefectRegion`
        """
        clouds = check_point_clouds(X)
        final = self.steps[-1][1]
        scores = final._checked_scores(self._transform_clouds(clouds))
        for i, (cloud, score) in enumerate(zip(clouds, scores)):
            if len(score) != len(cloud):
                raise ValueError(
                    f"cloud {i}: the transforms changed its number of points ({len(cloud)} -> {len(score)}); "
                    "regions can only be reported on the input points when the transforms keep them"
                )
        return final._regions(clouds, scores, threshold, min_points, merge_distance, min_peak)


def make_pipeline(*steps, memory=None, verbose=False):
    """Build a :class:`Pipeline` from estimators, like :func:`sklearn.pipeline.make_pipeline`.

    Parameters
    ----------
    *steps : estimators
        Transforms, then the detector.
    memory : str, joblib.Memory or None, default=None
        See :class:`sklearn.pipeline.Pipeline`.
    verbose : bool, default=False
        Print the time of each step while fitting.

    Returns
    -------
    pipeline : Pipeline

    Examples
    --------
    >>> import numpy as np
    >>> from skst3d import StudentTeacherDetector
    >>> from skst3d.datasets import make_synthetic_parts
    >>> from skst3d.pipeline import make_pipeline
    >>> from skst3d.registration import RigidRegistration
    >>> data = make_synthetic_parts(n_train=4, n_test=2, part_types=["plate"], n_points=512, random_state=0)
    >>> detector = StudentTeacherDetector("random", k=8, d=8, n_epochs=2, registration=False, random_state=0)
    >>> model = make_pipeline(RigidRegistration(random_state=0), detector)  # a registration of your own
    >>> model = model.fit(data.train)
    >>> model.score_clouds(data.test).shape, model.predict_clouds(data.test).shape
    ((2,), (2,))
    >>> regions = model.find_defects(data.test)   # in the input frame and units
    >>> len(regions)
    2
    """
    built = _sk_pipeline.make_pipeline(*steps, memory=memory, verbose=verbose)
    return Pipeline(built.steps, memory=memory, verbose=verbose)
