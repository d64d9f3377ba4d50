"""What every point-wise outlier detector of skst3d derives from its ``score_samples``."""

from __future__ import annotations

import numpy as np
from sklearn.base import OutlierMixin


class PointOutlierMixin(OutlierMixin):
    """``decision_function``, ``predict`` and ``score_clouds`` from ``score_samples`` and ``offset_``.

    ``score_samples(X)`` returns one array of point scores per cloud (higher = more normal),
    and ``offset_`` is the threshold below which a point is flagged. Estimators call
    :meth:`_calibrate` at the end of ``fit`` with the point scores of held-out good clouds.
    """

    def _calibrate(self, held_out_scores):
        """Thresholds from the point scores (one array per cloud) of held-out good clouds.

        Returns ``offset_``: the ``contamination`` quantile of all their point scores.
        """
        return float(np.quantile(np.concatenate(held_out_scores), self.contamination))

    def decision_function(self, X):
        """``score_samples(X) - offset_`` per cloud: negative values are flagged anomalous."""
        return [s - self.offset_ for s in self.score_samples(X)]

    def predict(self, X):
        """Per point +1 (normal) or -1 (anomalous), one int array per cloud."""
        return [np.where(s >= 0, 1, -1) for s in self.decision_function(X)]

    def score_clouds(self, X):
        """Cloud-level normality for detection (as in I-AUROC): the lowest point score.

        Minus this is the maximum point anomaly of each cloud, the usual cloud-level anomaly
        score; higher means more normal.

        Returns
        -------
        scores : ndarray of shape (n_clouds,)
        """
        return np.array([s.min() for s in self.score_samples(X)])
