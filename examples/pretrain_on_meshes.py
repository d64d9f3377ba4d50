"""Pretrain a teacher on scenes made of your own meshes, save it, and use it in a detector.

The paper pretrains its teacher on random scenes of ModelNet10 objects; any collection of
real shapes serves. :func:`skst3d.datasets.make_pretraining_scenes` places randomly chosen
meshes from ``--mesh-dir`` (OFF/PLY/STL/OBJ, read with trimesh: ``pip install skst3d[meshes]``)
and procedural shapes at random poses and samples each scene by farthest point sampling.

    python examples/pretrain_on_meshes.py --mesh-dir path/to/meshes --output teacher_d64.pt
    python examples/pretrain_on_meshes.py --quick --mesh-dir path/to/meshes   # seconds

Without a mesh folder the script says so and stops (exit status 0).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

from skst3d import StudentTeacherDetector, TeacherPretrainer
from skst3d.datasets import list_meshes, make_pretraining_scenes, make_synthetic_parts
from skst3d.metrics import au_pro


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh-dir", default=None, help="folder searched recursively for meshes")
    parser.add_argument("--output", default=None, help="where to save the teacher (.pt; default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    args = parser.parse_args(argv)

    if args.mesh_dir is None or not os.path.isdir(args.mesh_dir):
        print(f"no mesh folder given or found ({args.mesh_dir!r}); pass --mesh-dir with OFF/PLY/STL/OBJ files. "
              "Nothing to do.", file=sys.stderr)
        return 0
    try:
        meshes = list_meshes(args.mesh_dir)
    except ImportError as exc:
        print(f"cannot read meshes: {exc}", file=sys.stderr)
        return 0
    if not meshes:
        print(f"no meshes found under {args.mesh_dir!r}. Nothing to do.", file=sys.stderr)
        return 0

    if args.quick:
        # A handful of meshes keeps the scene building fast.
        mesh_dir = tempfile.mkdtemp(prefix="skst3d_meshes_")
        for path in sorted(meshes, key=os.path.getsize)[:3]:
            shutil.copy(path, os.path.join(mesh_dir, os.path.basename(path)))
        scene_args = dict(n_scenes=4, n_points=512, n_objects=4)
        teacher_args = dict(d=16, k=8, n_blocks=1, n_epochs=2, n_decoded_points=64, samples_per_step=4)
        detector_args = dict(k=8, n_epochs=2)
        part_args = dict(n_train=3, n_test=4, n_points=400)
    else:
        mesh_dir = args.mesh_dir
        scene_args = dict(n_scenes=100, n_points=8192, n_objects=10)
        # one residual block (2 hops), as the bundled teachers: see "Choosing k, d and n_points"
        teacher_args = dict(d=64, k=32, n_blocks=1, n_epochs=30)
        detector_args = dict(k=32, n_epochs=20)
        part_args = dict(n_train=10, n_test=10, n_points=2048)

    # 1. Scenes: meshes (and procedural shapes) at random poses, sampled by farthest point sampling.
    start = time.perf_counter()
    try:
        scenes = make_pretraining_scenes(mesh_dir=mesh_dir, random_state=0, **scene_args)
        n_meshes = len(list_meshes(mesh_dir))
    finally:
        if mesh_dir != args.mesh_dir:
            shutil.rmtree(mesh_dir, ignore_errors=True)  # the copies served only these scenes
    print(f"{len(scenes)} scenes of {scene_args['n_points']} points from {n_meshes} meshes "
          f"in {time.perf_counter() - start:.1f} s")

    # 2. Self-supervised pretraining: reconstruct each point's receptive field from its descriptor.
    start = time.perf_counter()
    teacher = TeacherPretrainer(random_state=0, verbose=0 if args.quick else 1, **teacher_args).fit(scenes)
    print(f"teacher pretrained in {time.perf_counter() - start:.1f} s; best epoch {teacher.best_epoch_}, "
          f"validation Chamfer loss {teacher.best_loss_:.4f}")

    # 3. Save (state dicts + JSON metadata) and load back.
    path = args.output or os.path.join(tempfile.mkdtemp(prefix="skst3d_teacher_"), f"teacher_d{teacher.d}.pt")
    teacher.save(path, pretraining_meshes=os.path.abspath(args.mesh_dir))
    teacher = TeacherPretrainer.load(path)
    print(f"saved and reloaded {path} (metadata in {path}.json)")

    # 4. Use it: the detector's d must equal the teacher's.
    data = make_synthetic_parts(part_types=["flange"], random_state=0, **part_args)
    detector = StudentTeacherDetector(teacher, d=teacher.d, random_state=0, **detector_args).fit(data.train)
    anomaly = [-s for s in detector.score_samples(data.test)]
    print(f"detector with this teacher on synthetic flanges: AU-PRO@0.3 = {au_pro(data.test_labels, anomaly):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
