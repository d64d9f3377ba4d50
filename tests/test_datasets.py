"""Tests for skst3d.datasets: shapes, virtual scans, defects, synthetic parts, scenes, meshes."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import Delaunay, cKDTree

from skst3d.datasets import (
    DEFECT_KINDS,
    PART_TYPES,
    PROCEDURAL_SHAPES,
    add_defects,
    estimate_normals,
    list_meshes,
    load_mesh,
    make_part_mesh,
    make_pretraining_scenes,
    make_synthetic_parts,
    procedural_shape,
    sample_surface,
    scan_mesh,
)
from skst3d.datasets._shapes import _signed_volume


def _rotation(a, b, c):
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _plane(n=8000, extent=60.0, seed=0):
    xy = np.random.default_rng(seed).uniform(0, extent, size=(n, 2))
    return np.column_stack([xy, np.zeros(n)])


# --------------------------------------------------------------------------- procedural shapes
@pytest.mark.parametrize("name", PROCEDURAL_SHAPES)
def test_procedural_shapes_are_closed_and_outward(name):
    vertices, faces = procedural_shape(name, random_state=0)
    assert vertices.dtype == np.float64 and faces.dtype == np.int64
    assert faces.min() >= 0 and faces.max() < len(vertices)
    assert _signed_volume(vertices, faces) > 0
    # every edge of a closed mesh is shared by exactly two faces, in opposite directions
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = {tuple(e) for e in edges.tolist()}
    # compare by position (revolved shapes repeat coincident vertices at the poles/seams)
    pos = {tuple(np.round(vertices[e].ravel(), 9)) for e in edges}
    rev = {tuple(np.round(vertices[e[::-1]].ravel(), 9)) for e in edges}
    assert pos == rev, f"{name} is not closed with consistent winding"
    assert len(keys) > 0


def test_procedural_shape_unknown_name():
    with pytest.raises(ValueError, match="unknown procedural shape"):
        procedural_shape("dodecahedron")


def test_sample_surface_is_area_weighted_and_deterministic():
    mesh = procedural_shape("box", size=(1.0, 1.0, 4.0))
    a = sample_surface(mesh, 20000, random_state=1)
    b = sample_surface(mesh, 20000, random_state=1)
    np.testing.assert_array_equal(a, b)
    on_caps = np.isclose(np.abs(a[:, 2]), 2.0, atol=1e-5).mean()
    assert abs(on_caps - 2.0 / 18.0) < 0.01  # caps: 2 of 18 area units
    points, normals = sample_surface(mesh, 100, return_normals=True, random_state=0)
    assert points.dtype == np.float32 and normals.shape == (100, 3)


# --------------------------------------------------------------------------- virtual scanner
def _box_entry_height(points_xy, rotation, half):
    """Height where a vertical ray from above first enters a rotated box (slab method)."""
    # ray: p(t) = (x, y, H) - t * (0, 0, 1); in box frame: q = R^T p
    h0 = 1e3
    origin = np.column_stack([points_xy, np.full(len(points_xy), h0)]) @ rotation
    direction = -rotation[2]  # R^T @ (0, 0, -1)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        t1 = (-half - origin) / direction
        t2 = (half - origin) / direction
    t_near = np.minimum(t1, t2).max(axis=1)
    return h0 - t_near


@settings(deadline=None, max_examples=10)
@given(a=st.floats(0, 2 * np.pi), b=st.floats(0, 2 * np.pi), c=st.floats(0, 2 * np.pi))
def test_scan_of_rotated_box_is_its_upper_envelope(a, b, c):
    rotation = _rotation(a, b, c)
    half = np.array([1.0, 0.6, 0.3])
    vertices, faces = procedural_shape("box", size=tuple(2 * half))
    points, normals = scan_mesh(
        (vertices @ rotation.T, faces), n_points=800, return_normals=True, random_state=0
    )
    assert points.shape == (800, 3) and points.dtype == np.float32
    expected = _box_entry_height(points[:, :2].astype(np.float64), rotation, half)
    np.testing.assert_allclose(points[:, 2], expected, atol=1e-4)
    assert np.all(normals[:, 2] > 0)


def test_scan_closed_box_sees_only_the_top_face():
    mesh = procedural_shape("box", size=(2.0, 3.0, 1.0))
    points = scan_mesh(mesh, view=(0, 0, 1), n_points=4096, random_state=0)
    np.testing.assert_allclose(points[:, 2], 0.5, atol=1e-6)
    side = scan_mesh(mesh, view=(-1, 0, 0), n_points=1000, random_state=0)
    np.testing.assert_allclose(side[:, 0], -1.0, atol=1e-6)
    # an inverted winding is detected and flipped
    inverted = (mesh[0], mesh[1][:, ::-1])
    np.testing.assert_allclose(scan_mesh(inverted, n_points=500, random_state=0)[:, 2], 0.5, atol=1e-6)


def test_scan_hides_occluded_front_faces():
    # the plate top continues under the ribs: it must not show through them
    vertices, faces = make_part_mesh("plate")
    points = scan_mesh((vertices, faces), n_points=4096, random_state=0)
    heights = np.unique(np.round(points[:, 2], 6))
    np.testing.assert_allclose(heights, [5.0, 11.0])
    under_ribs = (np.abs(np.abs(points[:, 1]) - 15.0) < 1.5) & (np.abs(points[:, 0]) < 28.0)
    assert under_ribs.sum() > 50
    np.testing.assert_allclose(points[under_ribs, 2], 11.0)


def test_scan_noise_determinism_and_errors():
    mesh = procedural_shape("box", size=(2.0, 2.0, 2.0))
    a = scan_mesh(mesh, n_points=2000, noise=0.01, random_state=3)
    b = scan_mesh(mesh, n_points=2000, noise=0.01, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert abs(np.std(a[:, 2] - 1.0) - 0.01) < 0.001
    assert np.allclose(np.abs(a[:, :2]).max(axis=0), 1.0, atol=0.05)
    dense = scan_mesh(mesh, n_points=None, resolution=0.1, random_state=0)
    assert 300 < len(dense) <= 21 * 21
    with pytest.raises(ValueError, match="resolution"):
        scan_mesh(mesh, n_points=5000, resolution=0.1)
    with pytest.raises(TypeError):
        scan_mesh(42)


# --------------------------------------------------------------------------- defects
@settings(deadline=None, max_examples=15)
@given(kind=st.sampled_from(["dent", "bump"]), depth=st.floats(0.5, 3.0), seed=st.integers(0, 2**16))
def test_dent_and_bump_displace_along_the_normal_by_depth(kind, depth, seed):
    plane = _plane(seed=seed)
    cloud, labels = add_defects(plane, kinds=(kind,), depth=depth, size=6.0, random_state=seed)
    assert cloud.shape == plane.shape and labels.dtype == np.int64
    region = labels == 1
    assert region.sum() >= 8
    # unlabelled points are untouched, labelled ones moved only along z (the normal)
    np.testing.assert_array_equal(cloud[~region], plane[~region].astype(np.float32))
    np.testing.assert_allclose(cloud[region, :2], plane[region, :2], atol=1e-4)
    z = cloud[region, 2]
    sign = -1 if kind == "dent" else 1
    assert np.all(sign * z >= -1e-6)
    assert depth * 0.85 <= np.abs(z).max() <= depth * (1 + 1e-5)


def test_dent_and_bump_on_a_curved_surface_relative_to_the_clean_surface():
    radius = 30.0
    mesh = procedural_shape("sphere", radius=radius, segments=96)
    clean, normals = sample_surface(mesh, 20000, return_normals=True, random_state=0)
    for kind, sign in (("dent", -1), ("bump", 1)):
        cloud, labels = add_defects(clean, normals, kinds=(kind,), depth=2.0, random_state=1)
        offset = np.linalg.norm(cloud[labels == 1], axis=1) - radius  # signed distance to the clean sphere
        assert np.all(sign * offset > -0.15)
        assert 1.6 < np.abs(offset).max() < 2.2
        # against the clean cloud itself: the deepest point is about depth away from it
        dist, _ = cKDTree(clean).query(cloud[labels == 1])
        assert 1.5 < dist.max() < 2.2


def test_crack_is_thin_long_and_sunk():
    plane = _plane(n=20000)
    cloud, labels = add_defects(plane, kinds=("crack",), depth=1.0, n_points=4096, random_state=4)
    crack = cloud[labels == 1]
    assert len(crack) >= 5 and np.all(crack[:, 2] <= -0.59)
    extent = np.sqrt(np.linalg.eigvalsh(np.cov(crack[:, :2].T)))
    assert extent[1] > 4 * extent[0]


def test_hole_removes_points_and_labels_the_rim():
    plane = _plane()
    cloud, labels = add_defects(plane, kinds=("hole",), size=6.0, random_state=2)
    assert len(cloud) < len(plane)
    gone = cKDTree(cloud).query(plane)[0] > 1e-3
    removed = plane[gone]
    rim = cloud[labels == 1].astype(np.float64)
    assert len(removed) >= 4 and len(rim) >= 8
    centre = removed.mean(axis=0)
    hole_radius = np.linalg.norm(removed - centre, axis=1).max()
    rim_dist = np.linalg.norm(rim - centre, axis=1)
    assert rim_dist.min() > 0.8 * hole_radius
    # rim points are the nearest survivors: every one is next to the hole
    assert cKDTree(removed).query(rim)[0].max() < 6.0
    assert np.all(cloud[labels == 0, 2] == 0) and np.all(rim[:, 2] == 0)


def test_contamination_adds_a_blob_on_the_surface():
    plane = _plane()
    cloud, labels = add_defects(plane, kinds=("contamination",), depth=1.0, random_state=5)
    blob = cloud[labels == 1]
    assert len(blob) >= 8
    assert np.all(blob[:, 2] >= 0) and blob[:, 2].max() > 0.9
    # the surface points under the blob are gone (not visible from above)
    footprint = Delaunay(blob[:, :2])
    assert np.all(footprint.find_simplex(cloud[labels == 0, :2]) < 0)


@settings(deadline=None, max_examples=10)
@given(
    kinds=st.lists(st.sampled_from(DEFECT_KINDS), min_size=1, max_size=3, unique=True),
    n_defects=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_add_defects_region_ids_are_separate_and_non_empty(kinds, n_defects, seed):
    plane = _plane(n=12000, extent=100.0, seed=seed)
    cloud, labels = add_defects(plane, kinds=kinds, n_defects=n_defects, n_points=4096, random_state=seed)
    assert cloud.shape == (4096, 3) and cloud.dtype == np.float32 and labels.shape == (4096,)
    assert sorted(set(labels.tolist())) == list(range(n_defects + 1))
    for r in range(1, n_defects + 1):
        assert (labels == r).sum() >= 5
    again = add_defects(plane, kinds=kinds, n_defects=n_defects, n_points=4096, random_state=seed)
    np.testing.assert_array_equal(cloud, again[0])
    np.testing.assert_array_equal(labels, again[1])


def test_estimate_normals_orientation():
    plane = _plane(n=500)
    np.testing.assert_allclose(np.abs(estimate_normals(plane, orient_towards=(0, 0, -1))[:, 2]), 1, atol=1e-9)
    assert np.all(estimate_normals(plane, orient_towards=(0, 0, -1))[:, 2] < 0)
    sphere = sample_surface(procedural_shape("sphere"), 2000, random_state=0)
    normals = estimate_normals(sphere, orient_towards="centroid")
    assert np.all(np.einsum("ij,ij->i", normals, sphere) > 0)


def test_add_defects_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown defect kind"):
        add_defects(_plane(n=500), kinds=("scratch",), random_state=0)


# --------------------------------------------------------------------------- synthetic parts
@pytest.fixture(scope="module")
def parts():
    return make_synthetic_parts(n_train=2, n_test=6, random_state=0)


def test_synthetic_parts_layout(parts):
    assert parts.part_types == list(PART_TYPES) and len(PART_TYPES) >= 4
    assert len(parts.train) == 2 * len(PART_TYPES) == len(parts.train_part_types)
    n_test = 6 * len(PART_TYPES)
    for key in ("test", "test_labels", "test_part_types", "test_defect_kinds"):
        assert len(parts[key]) == n_test
    for cloud in parts.train + parts.test:
        assert cloud.shape == (4096, 3) and cloud.dtype == np.float32 and np.isfinite(cloud).all()
    for part in PART_TYPES:
        kinds = [k for k, p in zip(parts.test_defect_kinds, parts.test_part_types) if p == part]
        assert sum(bool(k) for k in kinds) == 3


def test_synthetic_parts_labels(parts):
    for cloud, labels, kinds in zip(parts.test, parts.test_labels, parts.test_defect_kinds):
        assert labels.shape == (len(cloud),) and labels.dtype == np.int64
        assert sorted(set(labels.tolist())) == list(range(len(kinds) + 1))
        assert all(k in DEFECT_KINDS for k in kinds) and len(kinds) <= 2
        for r in range(1, len(kinds) + 1):
            size = int((labels == r).sum())
            assert 5 <= size <= 0.08 * len(cloud), (kinds, size)


def test_synthetic_parts_units_and_scan_geometry(parts):
    for cloud, part in zip(parts.train, parts.train_part_types):
        extent = np.ptp(cloud, axis=0)
        assert 40 < extent[:2].max() < 130, (part, extent)
        spacing = cKDTree(cloud).query(cloud, k=2)[0][:, 1].mean()
        assert 0.4 < spacing < 2.0, (part, spacing)


def test_synthetic_parts_defects_stand_out(parts):
    # dents, bumps, cracks and contamination move points off the clean surface by far more than
    # the sensor noise (0.05) and by about a point spacing or more
    for cloud, labels, kinds in zip(parts.test, parts.test_labels, parts.test_defect_kinds):
        clean = cloud[labels == 0]
        tree = cKDTree(clean)
        spacing = np.median(tree.query(clean, k=2)[0][:, 1])
        for r, kind in enumerate(kinds, start=1):
            if kind == "hole":
                continue
            away = tree.query(cloud[labels == r])[0].max()
            assert away > max(10 * 0.05, 0.75 * spacing), (kind, away, spacing)


def test_synthetic_parts_deterministic_and_options():
    kw = dict(n_train=1, n_test=2, part_types=["rod", "flange"], n_points=1024, defect_fraction=1.0)
    a = make_synthetic_parts(random_state=7, **kw)
    b = make_synthetic_parts(random_state=7, **kw)
    c = make_synthetic_parts(random_state=8, **kw)
    for x, y in zip(a.train + a.test, b.train + b.test):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.train[0], c.train[0])
    assert a.test_defect_kinds == b.test_defect_kinds and all(a.test_defect_kinds)
    only = make_synthetic_parts(n_train=0, n_test=2, part_types=["panel"], defect_kinds=("bump",),
                                defect_fraction=1.0, n_defects=3, n_points=2048, random_state=0)
    assert only.test_defect_kinds == [["bump"] * 3] * 2
    with pytest.raises(ValueError, match="unknown part type"):
        make_synthetic_parts(part_types=["gearbox"])


@pytest.mark.parametrize("part", PART_TYPES)
def test_part_scan_is_the_visible_surface(part):
    vertices, faces = make_part_mesh(part)
    points, normals = scan_mesh((vertices, faces), n_points=2048, return_normals=True, random_state=0)
    assert np.all(normals[:, 2] > 0)
    # each point is the highest surface point above its (x, y): compare with an all-around
    # dense sampling (no culling, no z-buffer)
    dense = sample_surface((vertices, faces), 300000, random_state=1).astype(np.float64)
    tree = cKDTree(dense[:, :2])
    highest = np.array([dense[i, 2].max() for i in tree.query_ball_point(points[:, :2], 0.4)])
    nz = np.clip(normals[:, 2].astype(np.float64), 0.05, 1.0)
    tolerance = 0.4 * np.sqrt(1 - nz**2) / nz + 0.2  # the surface rises within the 0.4 query radius
    assert np.mean(np.abs(highest - points[:, 2]) < tolerance) > 0.97
    assert np.mean(highest - points[:, 2] > tolerance + 2.0) < 0.005


# --------------------------------------------------------------------------- pretraining scenes
def _min_over_mean_spacing(cloud):
    d = cKDTree(cloud).query(cloud, k=2)[0][:, 1]
    return d.min() / d.mean()


def _brute_force_fps(points, n, start=0):
    chosen = [start]
    dist = np.linalg.norm(points - points[start], axis=1)
    for _ in range(n - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.array(chosen)


def test_pretraining_scenes_shape_determinism_and_extent():
    scenes = make_pretraining_scenes(3, n_points=1024, random_state=0)
    again = make_pretraining_scenes(3, n_points=1024, random_state=0)
    assert len(scenes) == 3
    for s, t in zip(scenes, again):
        assert s.shape == (1024, 3) and s.dtype == np.float32
        np.testing.assert_array_equal(s, t)
        assert np.abs(s).max() <= 3 + np.sqrt(3) / 2 + 1e-5
    assert not np.array_equal(scenes[0], scenes[1])


def test_pretraining_scenes_are_farthest_point_samples():
    scene = make_pretraining_scenes(1, n_points=2048, random_state=1)[0]
    random = sample_surface(procedural_shape("sphere"), 2048, random_state=0)
    # FPS spreads points evenly: no near-duplicates, unlike random sampling
    assert _min_over_mean_spacing(scene) > 0.3
    assert _min_over_mean_spacing(random) < 0.1
    reference = random[_brute_force_fps(random, 256)]
    assert _min_over_mean_spacing(reference) > 0.3


def test_pretraining_scene_objects_are_normalised(tmp_path):
    pytest.importorskip("trimesh")
    vertices, faces = procedural_shape("box", size=(10.0, 5.0, 2.5))
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(map(str, v)) for v in vertices] + ["3 " + " ".join(map(str, f)) for f in faces]
    (tmp_path / "brick.off").write_text("\n".join(lines) + "\n")
    for seed in range(3):
        scene = make_pretraining_scenes(1, n_points=512, n_objects=1, mesh_dir=tmp_path,
                                        include_procedural=False, random_state=seed)[0]
        centre = (scene.max(axis=0) + scene.min(axis=0)) / 2
        assert np.all(np.abs(centre) <= 3 + 0.05)
        diameter = np.linalg.norm(scene[:, None] - scene[None], axis=-1).max()
        assert 0.97 < diameter <= np.sqrt(1 + 0.25 + 0.0625) + 1e-5


def test_pretraining_scenes_with_real_meshes(mesh_dir):
    scenes = make_pretraining_scenes(2, n_points=1024, mesh_dir=os.path.join(mesh_dir, "trimesh-models"),
                                     include_procedural=False, noise=0.01, random_state=0)
    assert [s.shape for s in scenes] == [(1024, 3)] * 2


# --------------------------------------------------------------------------- mesh files
def test_mesh_roundtrip_formats(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    vertices, faces = procedural_shape("cylinder")
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    for ext in ("off", "ply", "stl", "obj"):
        path = tmp_path / "sub" / f"cyl.{ext.upper() if ext == 'stl' else ext}"
        path.parent.mkdir(exist_ok=True)
        mesh.export(str(path), file_type=ext)
        v, f = load_mesh(path)
        assert v.dtype == np.float64 and f.dtype == np.int64 and f.shape[1] == 3
        area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
        assert area == pytest.approx(mesh.area, rel=1e-4)
    (tmp_path / "notes.txt").write_text("not a mesh")
    assert len(list_meshes(tmp_path)) == 4
    points = scan_mesh(list_meshes(tmp_path)[0], n_points=256, random_state=0)
    assert points.shape == (256, 3)
    with pytest.raises(FileNotFoundError):
        list_meshes(tmp_path / "missing")


def test_real_meshes_load_and_scan(mesh_dir):
    paths = list_meshes(mesh_dir)
    assert len(paths) >= 50
    names = ("fandisk.off", "pinion.off", "angle_block.STL", "plate_holes.STL", "capsule.obj", "bunny.ply")
    chosen = [p for p in paths if os.path.basename(p) in names]
    assert len(chosen) == len(names)
    for path in chosen:
        vertices, faces = load_mesh(path)
        assert len(faces) > 10 and np.isfinite(vertices).all()
        points, normals = scan_mesh(path, view=(0.1, -0.2, 1.0), n_points=4096, noise=0.0,
                                    return_normals=True, random_state=0)
        assert points.shape == (4096, 3) and points.dtype == np.float32
        view = np.array([0.1, -0.2, 1.0]) / np.linalg.norm([0.1, -0.2, 1.0])
        assert np.all(normals @ view > 0)
        # every scanned point lies on the mesh surface: it is a dense sample's near neighbour
        dense = sample_surface((vertices, faces), 200000, random_state=0)
        scale = np.ptp(vertices, axis=0).max()
        assert cKDTree(dense).query(points)[0].max() < 0.03 * scale
