"""Anomaly-detection sets built from real CAD meshes: scans under pose/noise variation + defects.

Recipe
------
For each named part (a mesh found by file stem under ``mesh_root``, by default the shared
``../shared/data/meshes`` next to the repository; see ``shared/data/README.md``):

1. normalise the mesh: centre it and scale its longest bounding-box side to ``size`` (100,
   millimetre-like units, as :func:`skst3d.datasets.make_synthetic_parts`);
2. for every sample draw a pose: a rotation about the view axis (uniform in +-``rotation``) and a
   viewpoint jittered around the part's base view by up to ``view_jitter`` radians;
3. scan it with :func:`skst3d.datasets.scan_mesh` (orthographic z-buffer, about twice as many
   pixels as ``n_points``) and keep the camera-facing normals;
4. defective test samples get 1-2 defects from :func:`skst3d.datasets.add_defects`
   (dent, bump, crack, hole, contamination; normals from the scanned triangles), which also
   reduces the cloud to exactly ``n_points`` by a stratified uniform subsample; good samples are
   reduced by a uniform random subsample;
5. Gaussian sensor noise (``noise``) is added along the view direction.

The result has the layout of :func:`skst3d.datasets.make_synthetic_parts` (``train``,
``train_part_types``, ``test``, ``test_labels``, ``test_part_types``, ``test_defect_kinds``,
``part_types``). Without the meshes folder, :func:`make_real_geometry_set` returns None and the
script prints a message and exits with status 0.

Run ``python benchmarks/real_geometry.py`` for a per-part summary.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from scipy.spatial import cKDTree
from sklearn.utils import Bunch, check_random_state

DEFAULT_MESH_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "meshes"))

#: Parts used by default, with the view direction (towards the camera) they are scanned from.
DEFAULT_PARTS = {
    "fandisk": (0.0, 1.0, 0.3),
    "rotor_small": (1.0, 0.0, 0.2),
    "pinion": (0.0, 0.0, 1.0),
    "angle_block": (0.3, 0.2, 1.0),
    "plate_holes": (0.0, 0.0, 1.0),
    "idler_riser": (0.2, 0.2, 1.0),
    "featuretype": (0.0, 0.0, 1.0),
}


def _find_mesh(mesh_root, stem):
    from skst3d.datasets import list_meshes

    matches = [p for p in list_meshes(mesh_root) if os.path.splitext(os.path.basename(p))[0].lower() == stem.lower()]
    if not matches:
        raise FileNotFoundError(f"no mesh named {stem!r} under {mesh_root!r}")
    return matches[0]


def _rodrigues(axis, angle):
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _jittered_view(base, rng, jitter):
    base = np.asarray(base, dtype=np.float64)
    base = base / np.linalg.norm(base)
    helper = np.array([1.0, 0.0, 0.0]) if abs(base[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    axis = np.cross(base, helper)
    axis = _rodrigues(base, rng.uniform(0, 2 * np.pi)) @ axis
    return _rodrigues(axis, rng.uniform(0, jitter)) @ base


def _as_generator(random_state):
    """A numpy Generator from an int, RandomState, Generator or None (as skst3d.datasets seeds)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))


def make_real_geometry_set(
    mesh_root=None,
    parts=tuple(DEFAULT_PARTS),
    n_train=12,
    n_test=8,
    n_points=4096,
    noise=0.05,
    size=100.0,
    defect_fraction=0.5,
    n_defects=(1, 2),
    rotation=np.pi / 6,
    view_jitter=np.deg2rad(5.0),
    random_state=0,
):
    """Good and defective scans of real CAD meshes (see the module docstring for the recipe).

    Parameters
    ----------
    mesh_root : str or None
        Folder searched recursively for the meshes; None uses ``../shared/data/meshes``
        relative to the repository.
    parts : sequence of str
        Mesh file stems (case-insensitive); views come from ``DEFAULT_PARTS`` (+z otherwise).
    n_train, n_test : int
        Good training scans and test scans per part; ``round(defect_fraction * n_test)`` of
        the test scans are defective.
    n_points : int
    noise : float
        Sensor noise along the view direction, in units where the part's longest side is ``size``.
    size : float
    defect_fraction : float
    n_defects : int or (int, int)
    rotation : float
        Maximum rotation about the view axis (radians).
    view_jitter : float
        Maximum angle between the used and the base view direction (radians).
    random_state : int, RandomState instance, Generator or None

    Returns
    -------
    data : sklearn.utils.Bunch or None
        Layout of :func:`skst3d.datasets.make_synthetic_parts`, plus ``paths`` (part -> file);
        None when ``mesh_root`` does not exist (a message is printed).
    """
    from skst3d.datasets import DEFECT_KINDS, add_defects, load_mesh, scan_mesh

    mesh_root = os.path.abspath(mesh_root or DEFAULT_MESH_ROOT)
    if not os.path.isdir(mesh_root):
        print(f"real_geometry: meshes folder {mesh_root} not found; nothing to build")
        return None
    rng = _as_generator(random_state)
    data = Bunch(
        train=[], train_part_types=[], test=[], test_labels=[], test_part_types=[], test_defect_kinds=[],
        part_types=list(parts), paths={},
    )
    for part in parts:
        path = _find_mesh(mesh_root, part)
        data.paths[part] = path
        vertices, faces = load_mesh(path)
        lo, hi = vertices.min(axis=0), vertices.max(axis=0)
        vertices = (vertices - (lo + hi) / 2) * (size / float((hi - lo).max()))
        base = DEFAULT_PARTS.get(part, (0.0, 0.0, 1.0))
        n_bad = int(round(defect_fraction * n_test))
        flags = [False] * n_train + list(rng.permutation(np.arange(n_test) < n_bad))
        for k, bad in enumerate(flags):
            view = _jittered_view(base, rng, view_jitter)
            spin = _rodrigues(view, rng.uniform(-rotation, rotation))
            scan, normals = scan_mesh(
                (vertices @ spin.T, faces), view=view, n_points=None, oversample=2.0 * n_points / 4096,
                return_normals=True, random_state=rng,
            )
            if bad:
                count = n_defects if np.isscalar(n_defects) else int(rng.integers(n_defects[0], n_defects[1] + 1))
                cloud, labels, kinds = add_defects(
                    scan, normals, kinds=DEFECT_KINDS, n_defects=count, n_points=n_points, return_kinds=True,
                    random_state=rng,
                )
            else:
                labels = np.zeros(n_points, np.int64)
                cloud = scan[rng.choice(len(scan), n_points, replace=False)]
                kinds = []
            cloud = (cloud + rng.normal(0.0, noise, size=(n_points, 1)) * view).astype(np.float32)
            if k < n_train:
                data.train.append(cloud)
                data.train_part_types.append(part)
            else:
                data.test.append(cloud)
                data.test_labels.append(labels)
                data.test_part_types.append(part)
                data.test_defect_kinds.append(kinds)
    return data


def main():
    t0 = time.perf_counter()
    data = make_real_geometry_set()
    if data is None:
        return 0
    print(f"built in {time.perf_counter() - t0:.1f} s from {DEFAULT_MESH_ROOT}")
    print(f"{'part':<14}{'file':<28}{'train':>6}{'test':>6}{'bad':>5}  spacing  defect regions (kind: points)")
    for part in data.part_types:
        clouds = [c for c, p in zip(data.train, data.train_part_types) if p == part]
        spacing = np.mean(cKDTree(clouds[0]).query(clouds[0], k=2)[0][:, 1])
        tests = [(l, k) for l, k, p in zip(data.test_labels, data.test_defect_kinds, data.test_part_types) if p == part]
        regions = [f"{kind}:{int((l == r).sum())}" for l, ks in tests for r, kind in enumerate(ks, 1)]
        print(
            f"{part:<14}{os.path.basename(data.paths[part]):<28}{len(clouds):>6}{len(tests):>6}"
            f"{sum(bool(k) for _, k in tests):>5}  {spacing:7.3f}  {' '.join(regions)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
