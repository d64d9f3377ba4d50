"""Data for skst3d: synthetic parts, virtual scans, pretraining scenes, MVTec 3D-AD.

Everything here needs only numpy, scipy and scikit-learn. Reading mesh files needs the optional
``trimesh`` (``pip install skst3d[meshes]``), reading MVTec 3D-AD needs ``tifffile`` and
``Pillow`` (``pip install skst3d[mvtec]``); pretraining scenes use
:func:`skst3d.geometry.farthest_point_sampling` (torch), imported when called.

Label convention: per-point int64 labels, 0 for normal points and 1..R for the R separate
defect regions of a cloud.
"""

from ._defects import DEFECT_KINDS, add_defects, estimate_normals
from ._harmonic import scores_to_image
from ._meshes import MESH_EXTENSIONS, list_meshes, load_mesh
from ._mvtec import load_mvtec3d
from ._parts import PART_TYPES, make_part_mesh, make_synthetic_parts
from ._sampling import sample_surface
from ._scan import scan_mesh
from ._scenes import make_pretraining_scenes
from ._shapes import PROCEDURAL_SHAPES, procedural_shape

__all__ = [
    "DEFECT_KINDS",
    "MESH_EXTENSIONS",
    "PART_TYPES",
    "PROCEDURAL_SHAPES",
    "add_defects",
    "estimate_normals",
    "list_meshes",
    "load_mesh",
    "load_mvtec3d",
    "make_part_mesh",
    "make_pretraining_scenes",
    "make_synthetic_parts",
    "procedural_shape",
    "sample_surface",
    "scan_mesh",
    "scores_to_image",
]
