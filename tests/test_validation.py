"""Tests for skst3d._validation: conversions and error messages that say what and where."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skst3d._validation import check_point_clouds, check_point_labels

# ----------------------------------------------------------------------------- check_point_clouds


def test_accepts_lists_tuples_tensors_and_nested_lists():
    a = np.arange(12, dtype=np.float64).reshape(4, 3)
    b = torch.arange(6, dtype=torch.float32).reshape(2, 3).requires_grad_()
    c = [[0, 0, 1], [1, 0, 0], [2, 2, 2]]
    for X in ([a, b, c], (a, b, c)):
        clouds = check_point_clouds(X)
        assert [x.shape for x in clouds] == [(4, 3), (2, 3), (3, 3)]
        for x in clouds:
            assert isinstance(x, np.ndarray) and x.dtype == np.float64 and x.flags.c_contiguous
        np.testing.assert_array_equal(clouds[0], a)
        np.testing.assert_array_equal(clouds[1], b.detach().numpy())


def test_single_3d_array_or_tensor_is_a_batch():
    X = np.random.default_rng(0).random((5, 7, 3))
    clouds = check_point_clouds(X)
    assert len(clouds) == 5 and all(c.shape == (7, 3) for c in clouds)
    clouds_t = check_point_clouds(torch.from_numpy(X))
    np.testing.assert_array_equal(np.stack(clouds), np.stack(clouds_t))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32])
def test_torch_dtypes_are_converted_to_float64_exactly(dtype):
    cloud = torch.tensor([[0.5, 1.0, -2.0], [3.0, 0.0, 1.0]]).to(dtype)
    (out,) = check_point_clouds([cloud])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, cloud.double().numpy())


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64, np.uint8])
def test_numpy_dtypes_are_converted_to_float64_exactly(dtype):
    cloud = np.array([[0.5, 1.0, 2.0], [3.0, 0.0, 1.0]]).astype(dtype)
    (out,) = check_point_clouds([cloud])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, cloud.astype(np.float64))


def test_non_contiguous_is_made_contiguous():
    base = np.random.default_rng(1).random((10, 6)).astype(np.float32)
    view = base[::2, ::2]
    assert not view.flags.c_contiguous
    (out,) = check_point_clouds([view])
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, view)
    (out_t,) = check_point_clouds([torch.from_numpy(base).t()[:3].t()])
    assert out_t.flags.c_contiguous


def test_float64_contiguous_input_is_not_copied():
    cloud = np.zeros((4, 3), dtype=np.float64)
    (out,) = check_point_clouds([cloud])
    assert out is cloud


def test_empty_list():
    with pytest.raises(ValueError, match="X is empty"):
        check_point_clouds([])


@pytest.mark.parametrize("single", [np.zeros((5, 3)), torch.zeros(5, 3)])
def test_single_cloud_says_wrap_it(single):
    with pytest.raises(ValueError, match=r"pass a list of clouds, e\.g\. \[cloud\]"):
        check_point_clouds(single)


def test_single_cloud_as_nested_list_says_wrap_it():
    with pytest.raises(ValueError, match=r"X\[0\].*looks like a single cloud"):
        check_point_clouds([[0, 0, 0], [1, 1, 1]])


@pytest.mark.parametrize(
    "bad, shape",
    [(np.zeros((4, 2)), r"\(4, 2\)"), (np.zeros(6), r"\(6,\)"), (np.zeros((2, 2, 3)), r"\(2, 2, 3\)")],
)
def test_wrong_shape_names_cloud_and_shape(bad, shape):
    message = rf"clouds\[1\] must have shape \(n_points, 3\), got shape {shape}"
    with pytest.raises(ValueError, match=message):
        check_point_clouds([np.zeros((3, 3)), bad], name="clouds")


def test_wrong_ndim_batch():
    with pytest.raises(ValueError, match=r"shape \(2, 3, 3, 3\)"):
        check_point_clouds(np.zeros((2, 3, 3, 3)))


def test_too_few_points_names_cloud_count_and_reason():
    X = [np.zeros((40, 3)), np.zeros((40, 3)), np.zeros((12, 3))]
    with pytest.raises(ValueError, match=r"X\[2\] has 12 points; at least 33 are needed \(k \+ 1"):
        check_point_clouds(X, min_points=33, reason="k + 1 = 33 points for k = 32 neighbours")
    with pytest.raises(ValueError, match=r"X\[1\] has 2 points; at least 3 .*need k \+ 1"):
        check_point_clouds([np.zeros((3, 3)), np.zeros((2, 3))], min_points=3)
    with pytest.raises(ValueError, match=r"X\[0\] has 0 points; at least 1"):
        check_point_clouds([np.zeros((0, 3))])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_inf_names_cloud_and_first_point(value):
    bad = np.zeros((10, 3))
    bad[7, 2] = value
    bad[9, 0] = value
    with pytest.raises(ValueError, match=r"X\[1\] contains NaN or infinite .*first at point 7"):
        check_point_clouds([np.zeros((3, 3)), bad])


def test_far_from_origin_float64_keeps_its_resolution():
    # millimetre scans at 5e6 (and 1e100, an overflow for float32) stay exact
    far = np.array([[5e5, 5.4e6, 0.0], [5e5 + 0.001, 5.4e6, 0.0], [1e100, 0.0, 0.0]])
    (out,) = check_point_clouds([far])
    np.testing.assert_array_equal(out, far)
    bad = far.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match=r"X\[0\].*point 1"):
        check_point_clouds([bad])
    bad[1, 1] = 1e300  # squared distances would overflow float64
    with pytest.raises(ValueError, match=r"X\[0\].*beyond 1e\+150.*point 1"):
        check_point_clouds([bad])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 3), dtype=np.complex64),
        torch.zeros(3, 3, dtype=torch.complex64),
        np.array([["a", "b", "c"]]),
        np.array([[object(), 1, 2]], dtype=object),
    ],
)
def test_non_numeric_dtypes_name_the_cloud(bad):
    with pytest.raises(TypeError, match=r"X\[1\]"):
        check_point_clouds([np.zeros((3, 3)), bad])


def test_not_a_collection():
    with pytest.raises(TypeError, match="list of"):
        check_point_clouds(None)
    with pytest.raises(TypeError, match="list of"):
        check_point_clouds("cloud.ply")
    with pytest.raises(TypeError, match="list of"):
        check_point_clouds(3)


def test_ragged_nested_list_is_reported():
    with pytest.raises(ValueError, match=r"X\[0\] could not be read"):
        check_point_clouds([[[0, 0, 0], [1, 1]]])


def test_numbers_instead_of_clouds():
    with pytest.raises(ValueError, match=r"X\[0\] is a number"):
        check_point_clouds([1.0, 2.0, 3.0])


@settings(deadline=None, max_examples=25)
@given(
    clouds=st.lists(
        hnp.arrays(
            dtype=st.sampled_from([np.float16, np.float32, np.float64]),
            shape=st.tuples(st.integers(1, 20), st.just(3)),
            elements=st.floats(-1e4, 1e4, width=16),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_valid_clouds_round_trip(clouds):
    out = check_point_clouds(clouds)
    assert len(out) == len(clouds)
    for a, b in zip(out, clouds):
        assert a.dtype == np.float64 and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b.astype(np.float64))


# ----------------------------------------------------------------------------- check_point_labels


def test_labels_accept_ints_bools_floats_and_tensors():
    clouds = [np.zeros((3, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((1, 3))]
    y = [[0, 2, 1], np.array([True, False]), torch.tensor([0.0, 3.0]), torch.tensor([True])]
    out = check_point_labels(y, clouds)
    assert all(a.dtype == np.int64 for a in out)
    assert [a.tolist() for a in out] == [[0, 2, 1], [1, 0], [0, 3], [1]]


def test_labels_wrong_number_of_arrays():
    with pytest.raises(ValueError, match="y has 1 label arrays but there are 2 point clouds"):
        check_point_labels([[0, 0]], [np.zeros((2, 3)), np.zeros((2, 3))])


def test_labels_single_array_says_wrap_it():
    with pytest.raises(ValueError, match=r"pass e\.g\. \[labels\]"):
        check_point_labels(np.zeros(4), [np.zeros((4, 3))])


def test_labels_length_mismatch_names_cloud_and_both_lengths():
    clouds = [np.zeros((3, 3)), np.zeros((5, 3))]
    with pytest.raises(ValueError, match=r"y\[1\] has 4 labels but cloud 1 has 5 points"):
        check_point_labels([[0, 0, 0], [0, 1, 0, 0]], clouds)


def test_labels_negative():
    with pytest.raises(ValueError, match=r"y\[0\] contains a negative label -1 at point 2"):
        check_point_labels([[0, 1, -1]], [np.zeros((3, 3))])


def test_labels_nan_and_fractions():
    with pytest.raises(ValueError, match=r"y_true\[0\] contains NaN.*point 1"):
        check_point_labels([[0.0, np.nan]], [np.zeros((2, 3))], name="y_true")
    with pytest.raises(ValueError, match=r"non-integer label 0.5 at point 0"):
        check_point_labels([[0.5, 1.0]], [np.zeros((2, 3))])


def test_labels_bad_dtype_and_shape():
    with pytest.raises(TypeError, match=r"y\[0\] has dtype"):
        check_point_labels([np.array(["a", "b"])], [np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"y\[0\] must be 1-D"):
        check_point_labels([np.zeros((2, 1))], [np.zeros((2, 3))])
    with pytest.raises(TypeError, match="list of per-point label arrays"):
        check_point_labels(None, [np.zeros((2, 3))])
