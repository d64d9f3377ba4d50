"""The evaluation protocol: one fixed split of the part types, the acquisition styles, the cases.

Every choice of the project (method, default, hyper-parameter) is made on the **dev** split
and reported on the **test** split, which no choice ever looks at. The **pretraining** group
holds the shapes a teacher may be pretrained on. The assignment below is fixed; change it only
with a new protocol version, never to make a number look better.

Split
-----
* Synthetic parts (:func:`skst3d.datasets.make_part_mesh`): ``rod`` and ``panel`` are dev,
  ``plate`` and ``bracket`` are test. ``flange`` is pretraining: it is built by the same
  ``flange`` builder as the procedural shape of that name (:data:`PROCEDURAL_SHAPES`), which
  pretraining scenes contain.
* Procedural shapes (:data:`skst3d.datasets.PROCEDURAL_SHAPES`): all pretraining.
* Real meshes (``../shared/data/meshes``, see ``shared/data/README.md``): every file is in
  exactly one group (:data:`MESH_GROUPS`). Mechanical/CAD parts make up dev and test; test
  also has two smooth, organic shapes (``femur``, a scanned bone, and ``helmet``). Copies of the
  same object share a group (:data:`DUPLICATES`): both fandisks (dev); the bunnies and the
  rabbit, both elephants, the lion and the lion head, the two knots, and the torus and capsule
  meshes (copies of procedural primitives) are pretraining.

Acquisition styles
------------------
Every mesh is first centred (bounding box) and scaled so that its longest side is 100.

``range`` (:func:`range_scan`)
    A single-view orthographic range scan (:func:`skst3d.datasets.scan_mesh`) from the part's
    base view (:attr:`Part.view`) jittered by up to 5 degrees, the part turned by any angle
    about the view axis, Gaussian sensor noise along the view.
``around`` (:func:`around_scan`)
    All-around surface samples (:func:`skst3d.datasets.sample_surface`, three times denser
    than the result, normals from the triangles), every scan (good or defective) scaled by an
    independent factor uniform in [0.97, 1.03] along each axis of the part (anisotropic
    manufacturing tolerance), turned by any angle about the vertical (z) axis and tilted by up
    to 5 degrees about a random horizontal axis, isotropic Gaussian sensor noise.

Defective scans get 1-2 defects from :func:`skst3d.datasets.add_defects` (dent, bump, crack,
hole, contamination) on the dense scan, which is then reduced to exactly ``n_points`` points
by a stratified random subsample; good scans by a uniform random subsample. Labels: int64 per
point, 0 normal, 1..R one id per defect region. Noise levels (standard deviation, in units of
the longest side = 100): ``low`` 0.05, ``high`` 0.2; the mean nearest-neighbour distance is
about 0.5-1.9 at 4,096 points (0.25-0.8 at 16,384).

Cases
-----
A case is (part, style, n_points, noise, seed): 12 good training scans and 12 test scans (6
defective, in shuffled order), all drawn from one generator seeded by the case itself
(:attr:`Case.data_seed`), so a case's scans never depend on which other cases run. Every part
has a 4,096-point case in its style(s) (synthetic parts in both styles); a few parts per split
also a 16,384-point case. :func:`cases` lists them; the default seeds are 0 and 1: dev has 26
case-seeds (22 at 4,096 points, 4 at 16,384), test 34 (28 and 6).

Cost of one method (2 shared cores, one thread, measured with other jobs running): the default
3D-ST detector about 22 min over dev (30 s per 4,096-point case, 2-3 min per 16,384-point
case), so about 30 min over test; the numpy FPFH baseline 17 / 19 min (its 16,384-point cases
take 2-5 min); Open3D BTF 4 / 3 min.

Run ``python benchmarks/protocol.py`` for the split and the case list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import zlib

import numpy as np
from sklearn.utils import Bunch

#: Bump when the recipe of the scans changes (cached results are keyed by the data anyway).
PROTOCOL_VERSION = 1

GROUPS = ("pretraining", "dev", "test")

DEFAULT_MESH_ROOT = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "meshes")
)

#: Sensor noise standard deviations, in units where the part's longest side is 100.
NOISE_LEVELS = {"low": 0.05, "high": 0.2}

STYLES = ("range", "around")

#: Seeds of a default run (mean and spread over them).
DEFAULT_SEEDS = (0, 1)

#: Scans per case.
N_TRAIN, N_TEST, DEFECT_FRACTION, N_DEFECTS = 12, 12, 0.5, (1, 2)

#: Sizes of ``--quick``: training scans, test scans, points.
QUICK_SIZES = (4, 4, 1024)

SIZE = 100.0
MAX_TILT = np.deg2rad(5.0)
VIEW_JITTER = np.deg2rad(5.0)
TOLERANCE = 0.03
OVERSAMPLE = 3.0  # dense samples per returned point for all-around scans

#: Group of every synthetic part type (:data:`skst3d.datasets.PART_TYPES`).
SYNTHETIC_GROUPS = {"rod": "dev", "panel": "dev", "plate": "test", "bracket": "test", "flange": "pretraining"}

#: Group of every mesh file under the meshes folder (path relative to it).
MESH_GROUPS = {
    # dev: mechanical parts
    "cgal/fandisk.off": "dev",
    "trimesh-models/fandisk.obj": "dev",  # the same fandisk (not evaluated twice)
    "cgal/pinion.off": "dev",
    "trimesh-models/plate_holes.STL": "dev",
    "cgal/couplingdown.off": "dev",
    "cgal/spool.off": "dev",
    "cgal/anchor.off": "dev",
    "trimesh-models/box.STL": "dev",
    # test: mechanical parts and two smooth/organic shapes
    "cgal/rotor_small.off": "test",
    "trimesh-models/angle_block.STL": "test",
    "trimesh-models/idler_riser.STL": "test",
    "trimesh-models/featuretype.STL": "test",
    "cgal/joint.off": "test",
    "cgal/turbine.off": "test",
    "trimesh-models/ADIS16480.STL": "test",
    "trimesh-models/octagonal_pocket.stl": "test",
    "cgal/femur.off": "test",
    "cgal/helmet.off": "test",
    # pretraining: scanned statues and animals, further mechanical parts, everyday objects
    "cgal/ChineseDragon-10kv.off": "pretraining",
    "cgal/armadillo.off": "pretraining",
    "cgal/bear.off": "pretraining",
    "cgal/blade.off": "pretraining",
    "cgal/boeing.off": "pretraining",
    "cgal/bull.off": "pretraining",
    "cgal/bunny00.off": "pretraining",
    "cgal/cactus.off": "pretraining",
    "cgal/camel.off": "pretraining",
    "cgal/cow.off": "pretraining",
    "cgal/dino.off": "pretraining",
    "cgal/diplodocus.off": "pretraining",
    "cgal/dragknob.off": "pretraining",
    "cgal/elephant.off": "pretraining",
    "cgal/elk.off": "pretraining",
    "cgal/hand.off": "pretraining",
    "cgal/head.off": "pretraining",
    "cgal/homer.off": "pretraining",
    "cgal/knot1.off": "pretraining",
    "cgal/lion-head.off": "pretraining",
    "cgal/lion.off": "pretraining",
    "cgal/man.off": "pretraining",
    "cgal/mannequin-devil.off": "pretraining",
    "cgal/mushroom.off": "pretraining",
    "cgal/nefertiti.off": "pretraining",
    "cgal/pig.off": "pretraining",
    "cgal/refined_elephant.off": "pretraining",
    "cgal/triceratops.off": "pretraining",
    "trimesh-models/1002_tray_bottom.STL": "pretraining",
    "trimesh-models/bunny.ply": "pretraining",
    "trimesh-models/busted.STL": "pretraining",
    "trimesh-models/capsule.obj": "pretraining",
    "trimesh-models/chair_model.obj": "pretraining",
    "trimesh-models/cycloidal.ply": "pretraining",
    "trimesh-models/fuze.obj": "pretraining",
    "trimesh-models/quadknot.obj": "pretraining",
    "trimesh-models/rabbit.obj": "pretraining",
    "trimesh-models/round.stl": "pretraining",
    "trimesh-models/suzanne.ply": "pretraining",
    "trimesh-models/teapot.stl": "pretraining",
    "trimesh-models/torus.STL": "pretraining",
}

#: Files (or procedural/synthetic shapes, ``procedural:NAME`` / ``synthetic:NAME``) showing the
#: same or nearly the same object: each set must lie in one group.
DUPLICATES = (
    ("cgal/fandisk.off", "trimesh-models/fandisk.obj"),
    ("cgal/bunny00.off", "trimesh-models/bunny.ply", "trimesh-models/rabbit.obj"),
    ("cgal/elephant.off", "cgal/refined_elephant.off"),
    ("cgal/lion.off", "cgal/lion-head.off"),
    ("cgal/knot1.off", "trimesh-models/quadknot.obj"),
    ("trimesh-models/torus.STL", "procedural:torus"),
    ("trimesh-models/capsule.obj", "procedural:capsule"),
    ("synthetic:flange", "procedural:flange"),
)


@dataclasses.dataclass(frozen=True)
class Part:
    """A part evaluated in dev or test.

    ``source`` is ``"synthetic"`` (``mesh`` names a part type of
    :func:`skst3d.datasets.make_part_mesh`) or ``"real"`` (``mesh`` is a file under the
    meshes folder). ``styles`` are the acquisition styles it is scanned in, ``noise`` its
    noise level, ``view`` the base view of range scans (towards the camera) and ``dense``
    the style (if any) in which it also has a 16,384-point case.
    """

    name: str
    source: str
    mesh: str
    styles: tuple
    noise: str
    view: tuple = (0.0, 0.0, 1.0)
    dense: str | None = None


#: Parts of the dev split (every choice is made on them).
DEV_PARTS = (
    Part("rod", "synthetic", "rod", ("range", "around"), "low", dense="range"),
    Part("panel", "synthetic", "panel", ("range", "around"), "high"),
    Part("fandisk", "real", "cgal/fandisk.off", ("range",), "low", view=(0.0, 1.0, 0.3)),
    Part("pinion", "real", "cgal/pinion.off", ("range",), "high"),
    Part("plate_holes", "real", "trimesh-models/plate_holes.STL", ("range",), "low"),
    Part("couplingdown", "real", "cgal/couplingdown.off", ("around",), "high", dense="around"),
    Part("spool", "real", "cgal/spool.off", ("around",), "low"),
    Part("anchor", "real", "cgal/anchor.off", ("around",), "high"),
    Part("box", "real", "trimesh-models/box.STL", ("around",), "low"),
)

#: Parts of the test split (reported; never used for a choice).
TEST_PARTS = (
    Part("plate", "synthetic", "plate", ("range", "around"), "high", dense="around"),
    Part("bracket", "synthetic", "bracket", ("range", "around"), "low"),
    Part("rotor_small", "real", "cgal/rotor_small.off", ("range",), "low", view=(1.0, 0.0, 0.2)),
    Part("angle_block", "real", "trimesh-models/angle_block.STL", ("range",), "high", view=(0.3, 0.2, 1.0), dense="range"),
    Part("idler_riser", "real", "trimesh-models/idler_riser.STL", ("range",), "low", view=(0.2, 0.2, 1.0)),
    Part("featuretype", "real", "trimesh-models/featuretype.STL", ("range",), "high"),
    Part("joint", "real", "cgal/joint.off", ("around",), "low"),
    Part("turbine", "real", "cgal/turbine.off", ("around",), "high"),
    Part("ADIS16480", "real", "trimesh-models/ADIS16480.STL", ("around",), "low", dense="around"),
    Part("octagonal_pocket", "real", "trimesh-models/octagonal_pocket.stl", ("around",), "high"),
    Part("femur", "real", "cgal/femur.off", ("around",), "low"),
    Part("helmet", "real", "cgal/helmet.off", ("around",), "high"),
)

SPLITS = {"dev": DEV_PARTS, "test": TEST_PARTS}


@dataclasses.dataclass(frozen=True)
class Case:
    """One evaluation unit: a part of a split in one style, density and noise level, one seed."""

    split: str
    part: Part
    style: str
    n_points: int
    noise: str
    seed: int
    n_train: int = N_TRAIN
    n_test: int = N_TEST

    @property
    def name(self):
        """``part/style/points/noise``: the row label of a case (seeds averaged)."""
        return f"{self.part.name}/{self.style}/{self.n_points}/{self.noise}"

    @property
    def key(self):
        """Everything that determines the scans, as one string (without the meshes' content)."""
        return (f"v{PROTOCOL_VERSION}|{self.part.source}:{self.part.mesh}|{self.style}|{self.n_points}|{self.noise}|"
                f"seed{self.seed}|train{self.n_train}|test{self.n_test}")

    @property
    def data_seed(self):
        """The seed of the case's scans: a stable hash of :attr:`key`."""
        return zlib.crc32(self.key.encode())


def cases(split, seeds=DEFAULT_SEEDS, parts=None, quick=False):
    """The cases of ``split`` ("dev" or "test"), seed by seed within each part and style.

    Parameters
    ----------
    split : {"dev", "test"}
    seeds : sequence of int
    parts : sequence of str or None
        Part names to keep (:attr:`Part.name`); None keeps all. Unknown names raise.
    quick : bool
        Tiny sizes (:data:`QUICK_SIZES`), no 16,384-point cases, and only the first synthetic
        and the first real part of the split unless ``parts`` names some.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    chosen = list(SPLITS[split])
    if parts is not None:
        unknown = set(parts) - {p.name for ps in SPLITS.values() for p in ps}
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; dev: {[p.name for p in DEV_PARTS]}, "
                             f"test: {[p.name for p in TEST_PARTS]}")
        chosen = [p for p in chosen if p.name in set(parts)]
    elif quick:
        chosen = [next(p for p in chosen if p.source == s) for s in ("synthetic", "real")]
    out = []
    for part in chosen:
        for style in part.styles:
            densities = [4096] + ([16384] if part.dense == style else [])
            for n_points in densities:
                for seed in seeds:
                    if quick:
                        n_train, n_test, points = QUICK_SIZES
                        if n_points != 4096:
                            continue
                        out.append(Case(split, part, style, points, part.noise, int(seed), n_train, n_test))
                    else:
                        out.append(Case(split, part, style, n_points, part.noise, int(seed)))
    return out


def mesh_root(root=None):
    """The meshes folder: ``root``, else ``$SKST3D_MESHES``, else ``../shared/data/meshes``."""
    return os.path.abspath(root or os.environ.get("SKST3D_MESHES") or DEFAULT_MESH_ROOT)


def meshes_available(root=None):
    return os.path.isdir(mesh_root(root))


def pretraining_meshes(root=None):
    """Absolute paths of the real meshes a teacher may be pretrained on (existing files only)."""
    base = mesh_root(root)
    return [os.path.join(base, rel) for rel, g in sorted(MESH_GROUPS.items())
            if g == "pretraining" and os.path.exists(os.path.join(base, rel))]


def link_pretraining_meshes(folder, root=None):
    """Fill ``folder`` with symbolic links to the pretraining meshes; returns ``folder``.

    :func:`skst3d.datasets.make_pretraining_scenes` takes a folder (``mesh_dir``): pass this
    one so that no dev or test shape enters a teacher. The meshes are linked, not copied.
    """
    os.makedirs(folder, exist_ok=True)
    for path in pretraining_meshes(root):
        rel = os.path.relpath(path, mesh_root(root)).replace(os.sep, "__")
        link = os.path.join(folder, rel)
        if not os.path.lexists(link):
            os.symlink(path, link)
    return folder


def part_mesh(part, root=None):
    """``(vertices, faces)`` of a part, centred and scaled to a longest side of 100.

    Raises FileNotFoundError for a real part when the meshes folder is missing.
    """
    from skst3d.datasets import load_mesh, make_part_mesh

    if part.source == "synthetic":
        vertices, faces = make_part_mesh(part.mesh, shape_variation=0.0)
    else:
        path = os.path.join(mesh_root(root), part.mesh)
        if not os.path.exists(path):
            raise FileNotFoundError(f"mesh {part.mesh!r} not found under {mesh_root(root)!r}")
        vertices, faces = load_mesh(path)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    return (vertices - (lo + hi) / 2) * (SIZE / float((hi - lo).max())), faces


def rotation(axis, angle):
    """Rotation matrix about ``axis`` by ``angle`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _perpendicular(v):
    helper = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    axis = np.cross(v, helper)
    return axis / np.linalg.norm(axis)


def _tilt(direction, rng, max_angle):
    """A rotation by up to ``max_angle`` about a random axis perpendicular to ``direction``."""
    axis = rotation(direction, rng.uniform(0, 2 * np.pi)) @ _perpendicular(direction)
    return rotation(axis, rng.uniform(0, max_angle))


def _defects_or_subsample(points, normals, n_points, n_defects, rng):
    from skst3d.datasets import DEFECT_KINDS, add_defects

    if n_defects:
        return add_defects(points, normals, kinds=DEFECT_KINDS, n_defects=n_defects, n_points=n_points,
                           return_kinds=True, random_state=rng)
    idx = rng.choice(len(points), n_points, replace=False)
    return points[idx], np.zeros(n_points, np.int64), []


def range_scan(mesh, n_points, noise, n_defects, rng, view=(0.0, 0.0, 1.0)):
    """One single-view range scan (style ``range``); returns ``(cloud, labels, kinds)``.

    The view is ``view`` jittered by up to 5 degrees, the part is turned by any angle about
    it, defects are injected into the scan at twice the final density, noise is Gaussian along
    the view. ``cloud`` is (n_points, 3) float32, ``labels`` (n_points,) int64.
    """
    from skst3d.datasets import scan_mesh

    vertices, faces = mesh
    base = np.asarray(view, dtype=np.float64)
    base = base / np.linalg.norm(base)
    direction = _tilt(base, rng, VIEW_JITTER) @ base
    spin = rotation(direction, rng.uniform(0, 2 * np.pi))
    scan, normals = scan_mesh((vertices @ spin.T, faces), view=direction, n_points=None,
                              oversample=2.0 * n_points / 4096, return_normals=True, random_state=rng)
    cloud, labels, kinds = _defects_or_subsample(scan, normals, n_points, n_defects, rng)
    cloud = cloud + rng.normal(0.0, noise, size=(n_points, 1)) * direction
    return cloud.astype(np.float32), labels, kinds


def around_scan(mesh, n_points, noise, n_defects, rng, view=None):
    """All-around surface samples (style ``around``); returns ``(cloud, labels, kinds)``.

    Scaled by a factor uniform in [0.97, 1.03] along each axis, sampled three times denser
    than ``n_points`` with the triangles' normals, defects injected, reduced to ``n_points``,
    turned by any angle about z and tilted by up to 5 degrees, isotropic Gaussian noise.
    ``view`` is ignored (all-around).
    """
    from skst3d.datasets import sample_surface

    vertices, faces = mesh
    scale = rng.uniform(1 - TOLERANCE, 1 + TOLERANCE, 3)
    points, normals = sample_surface((vertices * scale, faces), int(OVERSAMPLE * n_points), return_normals=True,
                                     random_state=rng)
    normals = normals / scale  # normals transform with the inverse transpose of the scaling
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    cloud, labels, kinds = _defects_or_subsample(points, normals, n_points, n_defects, rng)
    pose = _tilt(np.array([0.0, 0.0, 1.0]), rng, MAX_TILT) @ rotation((0.0, 0.0, 1.0), rng.uniform(0, 2 * np.pi))
    cloud = np.asarray(cloud, np.float64) @ pose.T + rng.normal(0.0, noise, size=(n_points, 3))
    return cloud.astype(np.float32), labels, kinds


SCANNERS = {"range": range_scan, "around": around_scan}


def make_case(case, root=None):
    """The scans of a case.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``train`` (list of (n_points, 3) float32 good scans), ``test``, ``test_labels``
        ((n_points,) int64 per test scan: 0 normal, 1..R regions), ``test_defect_kinds``,
        ``case``.

    Raises FileNotFoundError for a real part when the meshes folder is missing.
    """
    rng = np.random.default_rng(case.data_seed)
    mesh = part_mesh(case.part, root)
    scanner = SCANNERS[case.style]
    noise = NOISE_LEVELS[case.noise]
    n_bad = int(round(DEFECT_FRACTION * case.n_test))
    flags = [False] * case.n_train + list(rng.permutation(np.arange(case.n_test) < n_bad))
    data = Bunch(train=[], test=[], test_labels=[], test_defect_kinds=[], case=case)
    for k, bad in enumerate(flags):
        count = int(rng.integers(N_DEFECTS[0], N_DEFECTS[1] + 1)) if bad else 0
        cloud, labels, kinds = scanner(mesh, case.n_points, noise, count, rng, view=case.part.view)
        if k < case.n_train:
            data.train.append(cloud)
        else:
            data.test.append(cloud)
            data.test_labels.append(np.asarray(labels, np.int64))
            data.test_defect_kinds.append(list(kinds))
    return data


def data_fingerprint(data):
    """A short hash of a case's scans and labels (keys cached results to the exact data)."""
    h = hashlib.sha1()
    for array in [*data.train, *data.test, *data.test_labels]:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def split_summary():
    """One paragraph naming the parts of each group, for RESULTS.md."""
    def names(parts):
        return ", ".join(f"{p.name}" + ("" if p.source == "real" else " (synthetic)") for p in parts)

    pretraining = sorted(os.path.splitext(os.path.basename(m))[0] for m, g in MESH_GROUPS.items() if g == "pretraining")
    synthetic_pre = [s for s, g in SYNTHETIC_GROUPS.items() if g == "pretraining"]
    return (f"**Split** (`benchmarks/protocol.py`, fixed): dev = {names(DEV_PARTS)}; "
            f"test = {names(TEST_PARTS)}; pretraining = every procedural shape, synthetic "
            f"{', '.join(synthetic_pre)} and {len(pretraining)} meshes ({', '.join(pretraining)}). "
            "Every choice (method, default, hyper-parameter) is made on dev; test is only reported.")


def main():
    root = mesh_root()
    print(__doc__.split("\n")[0])
    print(f"meshes folder: {root} ({'found' if os.path.isdir(root) else 'MISSING: real parts are skipped'})")
    for group in GROUPS:
        files = sorted(m for m, g in MESH_GROUPS.items() if g == group)
        synth = sorted(s for s, g in SYNTHETIC_GROUPS.items() if g == group)
        print(f"\n{group}: synthetic {synth}; {len(files)} meshes: {', '.join(files)}")
    for split in SPLITS:
        listed = cases(split)
        print(f"\n{split}: {len(listed)} cases ({len(listed) // len(DEFAULT_SEEDS)} x {len(DEFAULT_SEEDS)} seeds)")
        for case in listed[:: len(DEFAULT_SEEDS)]:
            print(f"  {case.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
