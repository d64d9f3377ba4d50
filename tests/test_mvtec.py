"""Tests for MVTec 3D-AD loading and score-to-image conversion (harmonic / nearest fill)."""

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scipy import sparse
from scipy.sparse.linalg import spsolve

from _fake_mvtec import fake_xyz, write_fake_mvtec
from skst3d.datasets import _harmonic, load_mvtec3d, scores_to_image
from skst3d.datasets._harmonic import harmonic_fill


# --------------------------------------------------------------------------- harmonic fill
def test_harmonic_fill_1d_is_linear_between_known_values():
    image = np.zeros((1, 9))
    known = np.zeros((1, 9), bool)
    known[0, [0, 4, 8]] = True
    image[0, [0, 4, 8]] = [1.0, 5.0, -3.0]
    expected = np.interp(np.arange(9), [0, 4, 8], [1.0, 5.0, -3.0])
    np.testing.assert_allclose(harmonic_fill(image, known)[0], expected, atol=1e-12)


@settings(deadline=None, max_examples=20)
@given(
    h=st.integers(3, 12), w=st.integers(3, 12),
    a=st.floats(-5, 5), b=st.floats(-5, 5), c=st.floats(-5, 5),
)
def test_harmonic_fill_reproduces_linear_boundary_data(h, w, a, b, c):
    y, x = np.mgrid[0:h, 0:w]
    linear = a * x + b * y + c
    known = np.zeros((h, w), bool)
    known[0], known[-1], known[:, 0], known[:, -1] = True, True, True, True
    image = np.where(known, linear, 123.0)  # garbage at unknown pixels must be ignored
    np.testing.assert_allclose(harmonic_fill(image, known), linear, atol=1e-9)


def _neighbour_mean(image):
    """Mean of the in-image 4-neighbours of every pixel (independent of the solver)."""
    h, w = image.shape
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    total[1:] += image[:-1]
    count[1:] += 1
    total[:-1] += image[1:]
    count[:-1] += 1
    total[:, 1:] += image[:, :-1]
    count[:, 1:] += 1
    total[:, :-1] += image[:, 1:]
    count[:, :-1] += 1
    return total / count


@settings(deadline=None, max_examples=25)
@given(
    known=arrays(bool, st.tuples(st.integers(1, 10), st.integers(1, 10))),
    seed=st.integers(0, 1000),
)
def test_harmonic_fill_mean_value_property_and_maximum_principle(known, seed):
    values = np.random.default_rng(seed).normal(size=known.shape)
    filled = harmonic_fill(values, known)
    np.testing.assert_array_equal(filled[known], values[known])
    if not known.any():
        np.testing.assert_array_equal(filled, 0.0)
        return
    unknown = ~known
    if known.size > 1:
        np.testing.assert_allclose(filled[unknown], _neighbour_mean(filled)[unknown], atol=1e-9)
    assert filled.min() >= values[known].min() - 1e-9
    assert filled.max() <= values[known].max() + 1e-9


def test_harmonic_fill_matches_a_dense_solve():
    rng = np.random.default_rng(3)
    h, w = 6, 7
    known = rng.random((h, w)) < 0.3
    values = rng.normal(size=(h, w))
    # dense linear system written independently: x_u - mean(neighbours) = 0
    ids = {p: i for i, p in enumerate(zip(*np.nonzero(~known)))}
    A = np.zeros((len(ids), len(ids)))
    rhs = np.zeros(len(ids))
    for (y, x), i in ids.items():
        nbrs = [(y + dy, x + dx) for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)) if 0 <= y + dy < h and 0 <= x + dx < w]
        A[i, i] = len(nbrs)
        for q in nbrs:
            if q in ids:
                A[i, ids[q]] -= 1
            else:
                rhs[i] += values[q]
    solution = np.linalg.solve(A, rhs)
    filled = harmonic_fill(values, known)
    np.testing.assert_allclose([filled[p] for p in ids], solution, atol=1e-10)


def _reference_fill(values, known):
    """Direct sparse solve of the same equations, assembled independently with Kronecker sums."""
    h, w = known.shape

    def path_laplacian(n):  # 1-D graph Laplacian of a path: natural boundary at both ends
        off = -np.ones(n - 1)
        return sparse.diags([off, np.r_[1.0, 2.0 * np.ones(n - 2), 1.0] if n > 1 else [0.0], off], [-1, 0, 1])

    lap = (sparse.kron(sparse.eye(h), path_laplacian(w)) + sparse.kron(path_laplacian(h), sparse.eye(w))).tocsr()
    u, k = np.flatnonzero(~known), np.flatnonzero(known)
    out = np.where(known, values, 0.0).ravel()
    out[u] = spsolve(lap[u][:, u].tocsc(), -lap[u][:, k] @ values.ravel()[k])
    return out.reshape(h, w)


def _object_with_holes(h, w, seed):
    """Blob of known pixels with holes, a slit and missing pixels, on an unknown background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(y - h / 2, x - w / 2) / min(h, w)
    theta = np.arctan2(y - h / 2, x - w / 2)
    known = r < 0.3 * (1 + 0.15 * np.sin(3 * theta))
    known &= rng.random((h, w)) > 0.1
    known[(y - h // 2) ** 2 + (x - w // 3) ** 2 < 16] = False
    known[h // 4: 3 * h // 4, w // 2] = False
    values = np.sin(x / 9.0) + np.cos(y / 7.0) + 0.1 * rng.normal(size=(h, w))
    return values, known


@pytest.mark.parametrize("shape", [(120, 120), (97, 131)])
def test_harmonic_fill_multigrid_matches_direct_solve(shape):
    values, known = _object_with_holes(*shape, seed=sum(shape))
    assert (~known).sum() > _harmonic._DIRECT_MAX  # the multigrid-preconditioned CG path
    expected = _reference_fill(values, known)
    filled = harmonic_fill(values, known)
    np.testing.assert_array_equal(filled[known], values[known])
    np.testing.assert_allclose(filled, expected, rtol=0, atol=1e-6 * np.ptp(values[known]))
    # offset invariance: the solver centres the data, large offsets must not cost accuracy
    np.testing.assert_allclose(harmonic_fill(values + 1e4, known), expected + 1e4, rtol=0, atol=1e-5)


def test_harmonic_fill_multigrid_reproduces_linear_data():
    h, w = 90, 110
    y, x = np.mgrid[0:h, 0:w]
    linear = 0.3 * x - 0.7 * y + 2.0
    known = np.random.default_rng(1).random((h, w)) < 0.02
    known[0], known[-1], known[:, 0], known[:, -1] = True, True, True, True
    filled = harmonic_fill(np.where(known, linear, -50.0), known)
    np.testing.assert_allclose(filled, linear, rtol=0, atol=1e-7)


@settings(deadline=None, max_examples=25)
@given(
    known=arrays(bool, st.tuples(st.integers(1, 14), st.integers(1, 14))),
    seed=st.integers(0, 1000),
)
def test_harmonic_fill_multigrid_on_any_pattern(known, seed):
    # force the iterative path (tiny coarsest grid) on arbitrary known patterns, including
    # ones where coarsening stalls, and compare with the independent direct solve
    values = np.random.default_rng(seed).normal(size=known.shape)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_harmonic, "_DIRECT_MAX", 1)
        filled = harmonic_fill(values, known)
    if not known.any():
        np.testing.assert_array_equal(filled, 0.0)
        return
    np.testing.assert_allclose(filled, _reference_fill(values, known), rtol=0, atol=1e-8)
    if known.size > 1:
        np.testing.assert_allclose(filled[~known], _neighbour_mean(filled)[~known], atol=1e-8)


# --------------------------------------------------------------------------- scores_to_image
def test_scores_to_image_modes():
    shape = (5, 6)
    index = np.array([0, 7, 7, 20, 29])
    scores = np.array([1.0, 2.0, 4.0, -1.0, 0.5])
    raw = scores_to_image(scores, index, shape, fill=None)
    assert raw.shape == shape
    assert raw.flat[0] == 1.0 and raw.flat[7] == 3.0  # duplicates are averaged
    assert np.isnan(raw).sum() == 30 - 4
    near = scores_to_image(scores, index, shape, fill="nearest")
    known = ~np.isnan(raw)
    ky, kx = np.nonzero(known)
    for y in range(shape[0]):
        for x in range(shape[1]):
            d = (ky - y) ** 2 + (kx - x) ** 2
            candidates = raw[ky[d == d.min()], kx[d == d.min()]]
            assert near[y, x] in candidates
    harm = scores_to_image(scores, index, shape)
    np.testing.assert_array_equal(harm[known], raw[known])
    assert np.isfinite(harm).all()
    np.testing.assert_array_equal(scores_to_image([], [], shape), np.zeros(shape))
    with pytest.raises(ValueError, match="fill"):
        scores_to_image(scores, index, shape, fill="cubic")
    with pytest.raises(ValueError, match="out of range"):
        scores_to_image(scores, index + 10, shape)


# --------------------------------------------------------------------------- fake MVTec tree
H, W = 40, 48


@pytest.fixture
def mvtec_root(tmp_path):
    # box object (obj) on a tilted plane, 5 % invalid pixels; defects are a fixed 4x5 gt box
    truth = {}
    write_fake_mvtec(tmp_path, shape=(H, W), n_per_type=2, defect_types=("crack", "hole"), truth=truth,
                     defect=(18, 22, 20, 25), half_size=(8, 10), noise=0.002, invalid_fraction=0.05)
    return tmp_path, {key[1:]: sample for key, sample in truth.items()}


def test_mvtec_fake_tree_roundtrip(mvtec_root):
    root, truth = mvtec_root
    data = load_mvtec3d(root, "widget", split="test", remove_background=False)
    assert data.defect_types == ["crack", "crack", "good", "good", "hole", "hole"]
    assert data.category == "widget" and data.split == "test"
    for k, defect in enumerate(data.defect_types):
        xyz, obj, mask = truth[("test", defect, k % 2)]
        valid = np.any(xyz != 0, axis=-1)
        assert data.image_shapes[k] == (H, W)
        np.testing.assert_array_equal(data.pixel_index[k], np.flatnonzero(valid))
        np.testing.assert_array_equal(data.clouds[k], xyz.reshape(-1, 3)[data.pixel_index[k]])
        assert data.clouds[k].dtype == np.float32 and data.pixel_index[k].dtype == np.int64
        np.testing.assert_array_equal(data.masks[k], mask > 0)
        np.testing.assert_array_equal(data.point_labels[k], (mask > 0).ravel()[data.pixel_index[k]])
        # scores placed back on the grid land on the right pixels
        image = scores_to_image(data.clouds[k][:, 2], data.pixel_index[k], data.image_shapes[k], fill=None)
        np.testing.assert_array_equal(image[valid], xyz[..., 2][valid])
        assert data.paths[k].endswith(f"{k % 2:03d}.tiff")


def test_mvtec_background_removal(mvtec_root):
    root, truth = mvtec_root
    data = load_mvtec3d(root, "widget", split="test", defect_types=["good"], background_threshold=0.005)
    assert data.defect_types == ["good", "good"]
    for k in range(2):
        xyz, obj, _ = truth[("test", "good", k)]
        valid = np.any(xyz != 0, axis=-1)
        np.testing.assert_array_equal(data.pixel_index[k], np.flatnonzero((valid & obj).ravel()))
        assert not data.masks[k].any()


def test_mvtec_train_split_and_options(mvtec_root):
    root, _ = mvtec_root
    data = load_mvtec3d(root, "widget", split="train", max_samples=1)
    assert data.defect_types == ["good"] and len(data.clouds) == 1
    assert data.masks[0].shape == (H, W) and not data.masks[0].any()
    assert len(data.clouds[0]) < H * W * 0.3
    with pytest.raises(FileNotFoundError):
        load_mvtec3d(root, "widget", split="validation")
    with pytest.raises(ValueError, match="split"):
        load_mvtec3d(root, "widget", split="val")
    with pytest.raises(ValueError, match="not found"):
        load_mvtec3d(root, "widget", defect_types=["scratch"])


# --------------------------------------------------------------------------- loader errors
def _small_tree(tmp_path, **kwargs):
    options = {"shape": (24, 28), "n_per_type": 2, "defect_types": ("crack",), "defect": (10, 13, 12, 16),
               "half_size": (6, 7)}
    return write_fake_mvtec(tmp_path, **{**options, **kwargs})


def _truncate(path, n_bytes):
    data = path.read_bytes()
    path.write_bytes(data[:n_bytes] if n_bytes >= 0 else data[: len(data) // 2])


@pytest.mark.parametrize("n_bytes", [0, 4, 100, -1])  # empty, header only, broken IFD, half the data
def test_mvtec_truncated_tiff_names_the_file(tmp_path, n_bytes):
    root = _small_tree(tmp_path)
    bad = root / "widget" / "test" / "crack" / "xyz" / "001.tiff"
    _truncate(bad, n_bytes)
    with pytest.raises(ValueError, match="cannot read the TIFF") as info:
        load_mvtec3d(root, "widget")
    assert str(bad) in str(info.value)
    assert info.value.__cause__ is not None  # raised from the reader's exception


@pytest.mark.parametrize("n_bytes", [0, 10, 60, -1])
def test_mvtec_truncated_png_names_the_file(tmp_path, n_bytes):
    root = _small_tree(tmp_path)
    bad = root / "widget" / "test" / "crack" / "gt" / "000.png"
    _truncate(bad, n_bytes)
    with pytest.raises(ValueError, match="cannot read the PNG") as info:
        load_mvtec3d(root, "widget")
    assert str(bad) in str(info.value)
    assert info.value.__cause__ is not None


def test_mvtec_xyz_with_wrong_shape_or_dtype_names_the_file(tmp_path):
    import tifffile

    root = _small_tree(tmp_path)
    bad = root / "widget" / "train" / "good" / "xyz" / "000.tiff"
    tifffile.imwrite(bad, np.zeros((24, 28), np.float32))
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) xyz image") as info:
        load_mvtec3d(root, "widget", split="train")
    assert str(bad) in str(info.value)
    tifffile.imwrite(bad, np.ones((24, 28, 3), np.complex64), photometric="minisblack")
    with pytest.raises(ValueError, match="complex64") as info:
        load_mvtec3d(root, "widget", split="train")
    assert str(bad) in str(info.value)


def test_mvtec_empty_or_misplaced_folders_raise(tmp_path):
    root = _small_tree(tmp_path)
    test = root / "widget" / "test"
    # an xyz folder without TIFFs
    for f in (test / "crack" / "xyz").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="no .tiff file") as info:
        load_mvtec3d(root, "widget")
    assert str(test / "crack" / "xyz") in str(info.value)
    # defect folders without xyz/: nothing to read, say what was found and what is expected
    shutil.rmtree(test / "crack" / "xyz")
    shutil.rmtree(test / "good" / "xyz")
    with pytest.raises(ValueError, match=r"no defect-type folder .*crack.*good.*xyz/NNN\.tiff") as info:
        load_mvtec3d(root, "widget")
    assert str(test) in str(info.value)
    # an empty split folder
    shutil.rmtree(test)
    test.mkdir()
    with pytest.raises(ValueError, match=r"is empty.*<good or defect type>/xyz/NNN\.tiff") as info:
        load_mvtec3d(root, "widget")
    assert str(test) in str(info.value)
    # missing category / split / root: FileNotFoundError naming the missing folder and what exists
    with pytest.raises(FileNotFoundError, match=r"no category folder 'gadget'.*\['widget'\]"):
        load_mvtec3d(root, "gadget")
    with pytest.raises(FileNotFoundError, match=r"no split folder 'validation'.*\['test', 'train'\]"):
        load_mvtec3d(root, "widget", split="validation")
    with pytest.raises(FileNotFoundError, match="root folder .* does not exist"):
        load_mvtec3d(tmp_path / "absent", "widget")


def test_mvtec_defect_type_without_xyz_is_named(tmp_path):
    root = _small_tree(tmp_path)
    shutil.rmtree(root / "widget" / "test" / "crack" / "xyz")
    with pytest.raises(ValueError, match=r"\['crack'\] not found .*\['good'\]"):
        load_mvtec3d(root, "widget", defect_types=["crack"])


def test_mvtec_scan_without_points_raises(tmp_path):
    import tifffile

    root = _small_tree(tmp_path)
    bad = root / "widget" / "test" / "good" / "xyz" / "001.tiff"
    tifffile.imwrite(bad, np.zeros((24, 28, 3), np.float32), photometric="minisblack")
    with pytest.raises(ValueError, match=r"no valid point .*\(0, 0, 0\)") as info:
        load_mvtec3d(root, "widget", remove_background=False)
    assert str(bad) in str(info.value)
    # a scan of the background plane alone: everything is removed as background
    xyz, _, _ = fake_xyz(np.random.default_rng(0), (24, 28), half_size=(0, 0))
    tifffile.imwrite(bad, xyz, photometric="minisblack")
    with pytest.raises(ValueError, match="background removal left no point") as info:
        load_mvtec3d(root, "widget")
    assert str(bad) in str(info.value)
    assert len(load_mvtec3d(root, "widget", remove_background=False).clouds) == 4


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_samples": -1}, ValueError, r"max_samples must be None or a positive int.*-1"),
        ({"max_samples": 0}, ValueError, r"max_samples .* got 0"),
        ({"max_samples": 1.5}, TypeError, r"max_samples .* got 1\.5 of type float"),
        ({"max_samples": True}, TypeError, r"max_samples .* got True"),
        ({"max_samples": "2"}, TypeError, r"max_samples .* got '2'"),
        ({"border": -1}, ValueError, r"border must be a positive int.*-1"),
        ({"border": 0}, ValueError, r"border .* got 0"),
        ({"border": 2.5}, TypeError, r"border .* got 2\.5"),
        ({"background_threshold": -0.1}, ValueError, r"background_threshold must be .*> 0.*-0\.1"),
        ({"background_threshold": 0}, ValueError, r"background_threshold .* got 0"),
        ({"background_threshold": float("nan")}, ValueError, r"background_threshold .* got nan"),
        ({"background_threshold": float("inf")}, ValueError, r"background_threshold .* got inf"),
        ({"background_threshold": "0.1"}, TypeError, r"background_threshold .* got '0\.1'"),
        ({"remove_background": "no"}, TypeError, r"remove_background must be a bool.*'no'"),
        ({"defect_types": "crack"}, TypeError, r"defect_types must be .*list.*'crack'"),
        ({"defect_types": []}, ValueError, r"defect_types is empty"),
        ({"defect_types": ["good", 3]}, TypeError, r"defect_types\[1\] must be a str.*3"),
        ({"category": None}, TypeError, r"category must be a str.*None"),
        ({"category": ""}, ValueError, r"category must be the name of one folder.*''"),
        ({"category": "widget/test"}, ValueError, r"category must be the name of one folder.*'widget/test'"),
        ({"split": "val"}, ValueError, r"split must be one of"),
        ({"root": None}, TypeError, r"root must be a str or path-like.*None"),
        ({"random_state": "abc"}, ValueError, r"random_state.*'abc'"),
    ],
)
def test_mvtec_argument_validation(tmp_path, kwargs, error, match):
    root = _small_tree(tmp_path)
    args = {"root": root, "category": "widget", **kwargs}
    with pytest.raises(error, match=match):
        load_mvtec3d(**args)


def test_mvtec_max_samples_reads_the_first_files(tmp_path):
    root = _small_tree(tmp_path, n_per_type={"train": 3, "test": 3})
    data = load_mvtec3d(root, "widget", max_samples=2)
    assert [p[-8:] for p in data.paths] == ["000.tiff", "001.tiff"] * 2
    assert len(load_mvtec3d(root, "widget", max_samples=np.int64(5)).clouds) == 6
