"""What every point-wise outlier detector of skst3d derives from its ``score_samples``."""

from __future__ import annotations

import numpy as np
from sklearn.base import OutlierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from . import defects


class PointOutlierMixin(OutlierMixin):
    """Point and cloud decisions and defect regions from ``score_samples``, ``offset_`` and ``cloud_offset_``.

    ``score_samples(X)`` returns one array of point scores per cloud (higher = more normal),
    ``offset_`` is the threshold below which a point is flagged and ``cloud_offset_`` the one
    below which a cloud's :meth:`score_clouds` calls it defective. Estimators call
    :meth:`_calibrate` at the end of ``fit`` with the point scores of held-out good clouds; it
    returns both thresholds and sets ``held_out_deciles_``, the 10th to 90th percentiles of those
    scores (how good unseen scans score: :func:`skst3d.defects.cloud_threshold` with another
    ``margin`` needs only its first and last entries).

    Estimators with a ``scale_`` (the training clouds' point spacing) and a ``k`` warn, in
    every method here, about scored clouds whose spacing differs from it by more than
    :data:`skst3d.defects.SPACING_FACTOR` (:class:`~skst3d.defects.PointSpacingWarning`).
    """

    def _calibrate(self, held_out_scores):
        """Thresholds from the point scores (one array per cloud) of held-out good clouds.

        Returns
        -------
        offset : float
            ``offset_``: the ``contamination`` quantile of all their point scores.
        cloud_offset : float
            ``cloud_offset_``: :func:`skst3d.defects.cloud_threshold` of their point scores,
            with ``min_anomaly=`` :data:`~skst3d.defects.Z_SCORE_LEVEL` when the scores are local
            z-scores (``score_normalization`` other than ``"none"``, no ``fusion``); fused scores,
            in units of the members' tails, get ``margin=``
            :data:`~skst3d.defects.FUSED_CLOUD_MARGIN` and no floor.
        """
        pooled = np.concatenate(held_out_scores)
        self.held_out_deciles_ = np.quantile(pooled, np.linspace(0.1, 0.9, 9))
        offset = float(np.quantile(pooled, self.contamination))
        if getattr(self, "fusion", None) is not None:
            return offset, defects.cloud_threshold(held_out_scores, margin=defects.FUSED_CLOUD_MARGIN)
        z_scores = getattr(self, "score_normalization", "none") != "none"
        min_anomaly = defects.Z_SCORE_LEVEL if z_scores else None
        return offset, defects.cloud_threshold(held_out_scores, min_anomaly=min_anomaly)

    def _checked_scores(self, X):
        """``score_samples(X)``, then a warning about clouds of another point spacing."""
        scores = self.score_samples(X)  # validates X and the fitted state first
        scale, k = getattr(self, "scale_", None), getattr(self, "k", None)
        if scale is not None and k is not None and scale > 0:
            from ._validation import check_point_clouds

            with np.errstate(all="ignore"):
                defects.check_point_spacing(
                    check_point_clouds(X), scale, k, n_points=getattr(self, "n_points", None), stacklevel=4
                )
        return scores

    def decision_function(self, X):
        """``score_samples(X) - offset_`` per cloud: negative values are flagged anomalous.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)

        Returns
        -------
        decision : list of ndarray of shape (n_i,)
        """
        return [s - self.offset_ for s in self._checked_scores(X)]

    def predict(self, X):
        """Per point +1 (normal) or -1 (anomalous), one int array per cloud.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)

        Returns
        -------
        labels : list of ndarray of shape (n_i,)
        """
        return [np.where(s >= 0, 1, -1) for s in self.decision_function(X)]

    def score_clouds(self, X):
        """Cloud-level normality for detection (as in I-AUROC): the lowest point score.

        Minus this is the maximum point anomaly of each cloud, the usual cloud-level anomaly
        score; higher means more normal (see :func:`skst3d.defects.cloud_scores`).

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)

        Returns
        -------
        scores : ndarray of shape (n_clouds,)
        """
        return defects.cloud_scores(self._checked_scores(X))

    def predict_clouds(self, X):
        """Per cloud +1 (good) or -1 (defective): :meth:`score_clouds` against ``cloud_offset_``.

        A cloud is defective when its cloud score is below ``cloud_offset_``, the threshold
        fitted on held-out good clouds (:func:`skst3d.defects.cloud_threshold`).

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)

        Returns
        -------
        verdicts : ndarray of shape (n_clouds,), int
        """
        cloud_offset = self._cloud_offset()
        return np.where(self.score_clouds(X) >= cloud_offset, 1, -1)

    def find_defects(self, X, *, threshold="auto", min_points=5, merge_distance=3.0, min_peak="cloud"):
        """Defect regions of every cloud: connected regions of its flagged points.

        See :func:`skst3d.defects.find_defects` for the regions and their rule.

        Parameters
        ----------
        X : list of array-like of shape (n_i, 3)
        threshold : "auto", float or None, default="auto"
            Anomaly score (higher = more anomalous, minus :meth:`score_samples`) above which a
            point is flagged. ``"auto"``: :func:`skst3d.defects.region_threshold`, midway
            between ``-offset_`` and ``-cloud_offset_`` (measured to locate defects better than
            either); None: ``-offset_``, the points :meth:`predict` flags
            (``decision_function < 0``).
        min_points : int, default=5
            Smallest region reported, in points.
        merge_distance : float, default=3.0
            Flagged points at most this many point spacings apart are one region.
        min_peak : "cloud", float or None, default="cloud"
            Regions whose peak anomaly is not above it are dropped. ``"cloud"``:
            ``-cloud_offset_``, so that regions are reported on the clouds
            :meth:`predict_clouds` calls defective, and only the regions that make them so;
            None keeps every region.

        Returns
        -------
        regions : list of list of DefectRegion
            One list per cloud, sorted by decreasing peak score; centroids and extents in the
            units and frame of ``X``.
        """
        from ._validation import check_point_clouds

        clouds = check_point_clouds(X)
        return self._regions(clouds, self._checked_scores(clouds), threshold, min_points, merge_distance, min_peak)

    def _regions(self, clouds, point_scores, threshold, min_points, merge_distance, min_peak):
        """Regions of ``clouds`` (points in the frame to report) from their point scores."""
        from ._validation import check_point_clouds

        check_is_fitted(self)
        if isinstance(threshold, str):
            if threshold != "auto":
                raise ValueError(f"threshold must be 'auto', a number or None, got {threshold!r}")
            threshold = defects.region_threshold(-self.offset_, -self._cloud_offset())
        elif threshold is None:
            threshold = -self.offset_
        if isinstance(min_peak, str):
            if min_peak != "cloud":
                raise ValueError(f"min_peak must be 'cloud', a number or None, got {min_peak!r}")
            min_peak = -self._cloud_offset()
        clouds = check_point_clouds(clouds)
        return [
            defects.find_defects(cloud, -scores, threshold, min_points=min_points, merge_distance=merge_distance,
                                 min_peak=min_peak)
            for cloud, scores in zip(clouds, point_scores)
        ]

    def _cloud_offset(self):
        check_is_fitted(self)
        if not hasattr(self, "cloud_offset_"):
            raise NotFittedError(
                f"this {type(self).__name__} has no cloud threshold cloud_offset_: it was fitted by an skst3d "
                "version before cloud verdicts (fit it again), or it does not calibrate one yet"
            )
        return self.cloud_offset_
