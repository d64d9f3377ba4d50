"""Pretrain the teachers bundled in skst3d/weights/ (reproducible, resumable).

Scenes follow the paper (10 objects, longest side 1, random rotation, positions in [-3, 3]^3,
farthest point sampling) and are built from the shared real meshes (../shared/data/meshes,
when present) plus skst3d's procedural shapes. Only the meshes of the protocol's pretraining
group are used (``benchmarks/protocol.py``; ``--mesh-group all`` takes every mesh), so that no
part of the dev or test split is seen by a bundled teacher. Training runs in chunks of epochs with
``warm_start=True`` and writes a checkpoint after every chunk, so it can be stopped and
resumed (``--resume``) and grown across runs. The metadata beside the weights records the data,
the epochs, the command and the teacher's quality: its validation Chamfer against the same
network untrained (random weights, decoder trained alone for the same number of steps is not
measured; the untrained pair is the reference).

    python benchmarks/pretrain_teachers.py --d 64 --minutes 40
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import numpy as np
import torch

from skst3d import TeacherPretrainer
from skst3d.datasets import make_pretraining_scenes
from skst3d.weights import WEIGHTS_DIR

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MESHES = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data", "meshes"))


def _mesh_text(group):
    if group == "all":
        return "all shared real meshes (dev and test parts included) + "
    return "the shared real meshes of the protocol's pretraining group (no dev or test part) + "


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--n-blocks", type=int, default=4)
    parser.add_argument("--scenes", type=int, default=120)
    parser.add_argument("--validation-scenes", type=int, default=8)
    parser.add_argument("--points", type=int, default=16384)
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise on scenes (object units)")
    parser.add_argument("--max-receptive-field", type=int, default=2048)
    parser.add_argument("--absolute-coordinates", action="store_true", help="the paper's ablation (RandLA-Net's G)")
    parser.add_argument("--chunk-epochs", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget")
    parser.add_argument("--meshes", default=DEFAULT_MESHES)
    parser.add_argument("--mesh-group", choices=("pretraining", "all"), default="pretraining",
                        help="pretraining: only the protocol's pretraining meshes (no dev or test shape)")
    parser.add_argument("--output", default=None, help="weights file (default: skst3d/weights/teacher_d{d}_k{k}.pt)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto", help="torch device (auto: CUDA when available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes building the scenes (each scene then has its own seed)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    output = args.output or os.path.join(WEIGHTS_DIR, f"teacher_d{args.d}_k{args.k}.pt")
    mesh_dir = args.meshes if os.path.isdir(args.meshes) else None
    if mesh_dir and args.mesh_group == "pretraining":
        import tempfile

        import protocol

        mesh_dir = protocol.link_pretraining_meshes(tempfile.mkdtemp(prefix="skst3d-meshes-"), root=args.meshes)
    start = time.perf_counter()

    scenes = _scenes(args.scenes + args.validation_scenes, args.points, mesh_dir, args.noise, args.seed, args.jobs)
    train, validation = scenes[: args.scenes], scenes[args.scenes :]
    print(f"{len(scenes)} scenes of {args.points} points ({'meshes + ' if mesh_dir else ''}procedural) "
          f"in {time.perf_counter() - start:.0f} s", flush=True)

    params = dict(
        d=args.d, k=args.k, n_blocks=args.n_blocks, n_epochs=args.chunk_epochs, validation_fraction=0.0,
        max_receptive_field=args.max_receptive_field, absolute_coordinates=args.absolute_coordinates,
        random_state=args.seed, device=args.device, verbose=1,
    )
    last = output + ".last.pt"  # the latest chunk, for --resume; `output` keeps the best one
    earlier_minutes, commands = 0.0, []
    resumed = args.resume and os.path.exists(last)
    if resumed:
        teacher = TeacherPretrainer.load(last, **params)
        earlier_minutes = float(teacher.metadata_.get("minutes", 0.0))
        commands = list(teacher.metadata_.get("earlier_commands", [])) + [teacher.metadata_.get("command", "")]
        print(f"resuming from {last} ({len(teacher.loss_curve_)} epochs, {earlier_minutes:.0f} min)", flush=True)
    else:
        teacher = TeacherPretrainer(**params)
    untrained = TeacherPretrainer(**dict(params, n_epochs=1, learning_rate=1e-12, warm_start=False)).fit(train[:1])
    untrained.scale_ = None  # set below to the trained teacher's scale

    # the best validation Chamfer so far: a resumed run keeps the saved teacher unless it beats it
    history = [float(teacher.metadata_["validation_chamfer"])] if resumed else []
    chunks = 0
    while True:
        chunks += 1
        teacher.set_params(warm_start=hasattr(teacher, "network_"), random_state=args.seed + len(history))
        teacher.fit(train)
        validation_chamfer = -teacher.score(validation)
        untrained.scale_ = teacher.scale_
        reference = -untrained.score(validation)
        history.append(validation_chamfer)
        elapsed = (time.perf_counter() - start) / 60
        print(f"epochs {len(teacher.loss_curve_)}: validation Chamfer {validation_chamfer:.4f} "
              f"(untrained {reference:.4f}), {elapsed:.1f} min", flush=True)
        metadata = dict(
            data=f"{args.scenes} scenes x {args.points} points, 10 objects each, from "
                 f"{_mesh_text(args.mesh_group) if mesh_dir else ''}procedural shapes, noise {args.noise}",
            validation_chamfer=validation_chamfer,
            untrained_validation_chamfer=reference,
            max_receptive_field=args.max_receptive_field,
            minutes=round(earlier_minutes + elapsed, 1),
            command="python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]),
            earlier_commands=commands,
        )
        teacher.save(last, **metadata)
        if validation_chamfer <= min(history):  # chunks end on noisy losses: keep the best
            teacher.save(output, **metadata)
        # leave room for one more chunk of the same length
        per_chunk = elapsed / chunks
        if elapsed + per_chunk > args.minutes:
            break
    print(f"saved {output}", flush=True)


def _scenes(n_scenes, n_points, mesh_dir, noise, seed, jobs):
    """The pretraining scenes: one call with ``seed``, or with ``jobs > 1`` one seed per scene."""
    if jobs <= 1:
        return make_pretraining_scenes(n_scenes, n_points=n_points, mesh_dir=mesh_dir, noise=noise, random_state=seed)
    from joblib import Parallel, delayed

    def one(i):
        torch.set_num_threads(1)
        return make_pretraining_scenes(1, n_points=n_points, mesh_dir=mesh_dir, noise=noise,
                                       random_state=np.random.default_rng([seed, i]))[0]

    return Parallel(n_jobs=jobs)(delayed(one)(i) for i in range(n_scenes))


if __name__ == "__main__":
    main()
