"""ScoreFusion: the mean of its members' scores, a composite that grid search and pickle handle."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from skst3d import StudentTeacherDetector
from skst3d.fusion import ScoreFusion
from skst3d.registration import RigidRegistration

from test_detector import SMALL, wavy_clouds

MEMBER = dict(SMALL, score_normalization="location", random_state=0)


def _members():
    return [("fine", StudentTeacherDetector("random", **dict(MEMBER, k=4))),
            ("coarse", StudentTeacherDetector("random", **dict(MEMBER, k=8)))]


def test_scores_are_the_mean_of_independently_fitted_members():
    train, test = wavy_clouds(4), wavy_clouds(2, seed=5, bump=True)
    fused = ScoreFusion(_members()).fit(train)
    # the same members fitted on their own, outside the fusion
    alone = [clone(member).fit(train).score_samples(test) for _, member in _members()]
    for i, scores in enumerate(fused.score_samples(test)):
        np.testing.assert_allclose(scores, (alone[0][i] + alone[1][i]) / 2, rtol=1e-6)
    offsets = [member.offset_ for member in fused.estimators_]
    assert fused.offset_ == pytest.approx(np.mean(offsets))
    flagged = fused.predict(test)
    np.testing.assert_array_equal(flagged[0], np.where(fused.score_samples(test)[0] >= fused.offset_, 1, -1))
    # the cloud score: mean of the lowest 3 % of point scores (sorted here)
    lowest = [np.sort(s)[: max(1, round(0.03 * len(s)))].mean() for s in fused.score_samples(test)]
    np.testing.assert_allclose(fused.score_clouds(test), lowest, rtol=1e-12)


def test_member_parameters_are_reachable_and_pickling_keeps_scores():
    fusion = ScoreFusion(_members())
    assert fusion.get_params()["coarse__k"] == 8
    fusion.set_params(coarse__k=6)
    assert fusion.estimators[1][1].k == 6
    cloned = clone(fusion)
    assert cloned.estimators[1][1] is not fusion.estimators[1][1] and cloned.get_params()["coarse__k"] == 6
    train = wavy_clouds(4)
    fitted = make_pipeline(RigidRegistration(random_state=0), fusion).fit(train)
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.score_samples(train[:1])[0], fitted.score_samples(train[:1])[0])
    assert set(fitted[-1].named_estimators_) == {"fine", "coarse"}


def test_bad_members_are_rejected_and_nothing_is_fitted():
    with pytest.raises(ValueError, match="at least one"):
        ScoreFusion([]).fit(wavy_clouds(2))
    fusion = ScoreFusion([("a", StudentTeacherDetector("random", **MEMBER)), ("a", StudentTeacherDetector("random", **MEMBER))])
    with pytest.raises(ValueError, match="unique"):
        fusion.fit(wavy_clouds(2))
    broken = ScoreFusion([("pca", clone(RigidRegistration()))])
    with pytest.raises(TypeError, match="'pca'.*score_samples"):
        broken.fit(wavy_clouds(2))
    assert not hasattr(broken, "estimators_")
