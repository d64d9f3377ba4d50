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
    scores (how good unseen scans score), and ``held_out_quantiles_``, their 1st percentile and
    median (:func:`skst3d.defects.threshold_from_percentiles` with another ``margin``).

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
            with ``margin=`` :data:`~skst3d.defects.FUSED_CLOUD_MARGIN` for fused scores (in
            units of the members' tails) and :data:`~skst3d.defects.CLOUD_MARGIN` otherwise.
        """
        pooled = np.concatenate(held_out_scores)
        self.held_out_deciles_ = np.quantile(pooled, np.linspace(0.1, 0.9, 9))
        self.held_out_quantiles_ = np.quantile(pooled, defects.HELD_OUT_LEVELS)
        offset = float(np.quantile(pooled, self.contamination))
        fused = getattr(self, "fusion", None) is not None
        margin = defects.FUSED_CLOUD_MARGIN if fused else defects.CLOUD_MARGIN
        # defects.cloud_threshold of the held-out scores, from the quantiles just taken
        return offset, defects.threshold_from_percentiles(*self.held_out_quantiles_, margin)

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
        """Cloud-level normality: the mean score of each cloud's lowest-scoring 3 % of points.

        Minus this is the mean anomaly of the cloud's most anomalous
        :data:`~skst3d.defects.CLOUD_TAIL` share of points; higher means more normal (see
        :func:`skst3d.defects.cloud_scores`, whose ``tail=0`` gives the highest point anomaly
        of the literature's I-AUROC).

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
            ``-cloud_offset_``, and only on the clouds :meth:`predict_clouds` calls defective
            (a cloud called good has no region; a defective one, the regions that reach the
            cloud threshold); None keeps every region.

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
        judged_good = np.zeros(len(point_scores), dtype=bool)
        if isinstance(min_peak, str):
            if min_peak != "cloud":
                raise ValueError(f"min_peak must be 'cloud', a number or None, got {min_peak!r}")
            min_peak = -self._cloud_offset()
            judged_good = defects.cloud_scores(point_scores) >= self._cloud_offset()
        clouds = check_point_clouds(clouds)
        return [
            [] if good else defects.find_defects(cloud, -scores, threshold, min_points=min_points,
                                                 merge_distance=merge_distance, min_peak=min_peak)
            for cloud, scores, good in zip(clouds, point_scores, judged_good)
        ]

    def _cloud_offset(self):
        check_is_fitted(self)
        if not hasattr(self, "cloud_offset_"):
            raise NotFittedError(
                f"this {type(self).__name__} has no cloud threshold cloud_offset_: it was fitted by an skst3d "
                "version before cloud verdicts (fit it again), or it does not calibrate one yet"
            )
        if hasattr(self, "held_out_deciles_") and not hasattr(self, "held_out_quantiles_"):
            raise NotFittedError(
                f"this {type(self).__name__}'s cloud threshold cloud_offset_ was fitted by an skst3d version "
                "with another cloud score (the highest point anomaly): fit it again"
            )
        return self.cloud_offset_
