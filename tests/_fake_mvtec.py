"""A tiny fake MVTec 3D-AD tree for tests (the real data set is not available here).

Every sample is an organised xyz scan of a box-shaped object 2 cm above a tilted background
plane, in metre-like units with 1 mm pixels; defects are bumps on the object, marked in the
ground-truth PNG. Layout, as in the real data::

    root/<category>/train/good/xyz/000.tiff
    root/<category>/test/<defect>/xyz/000.tiff
    root/<category>/test/<defect>/gt/000.png
"""

import numpy as np
import pytest


def fake_xyz(rng, shape, defect=None, *, half_size=(8, 10), noise=0.002, bump=0.0, invalid_fraction=0.0):
    """One fake scan; returns ``(xyz, obj, mask)``.

    ``xyz`` is ``(h, w, 3)`` float32, ``obj`` the boolean object footprint (pixels with
    ``|y - h/2| < half_size[0]`` and ``|x - w/2| < half_size[1]``) and ``mask`` the uint8
    ground truth (255 on the defect). ``noise`` is the amplitude of the uniform depth noise on
    the object. ``defect`` is ``None`` (a good sample), a box ``(y0, y1, x0, x1)``, or
    ``"random"``: a disk of radius 3 px centred at a random pixel within 5 px of the image
    centre. The defect is clipped to the object and pushed ``bump`` metres towards the sensor.
    A random ``invalid_fraction`` of the pixels is zeroed (invalid, as in real scans).
    """
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    xs, ys = (x - w / 2) * 0.001, (y - h / 2) * 0.001
    z = 0.6 + 0.02 * xs - 0.01 * ys  # tilted background plane
    obj = (np.abs(y - h / 2) < half_size[0]) & (np.abs(x - w / 2) < half_size[1])
    z = np.where(obj, z - 0.02 - noise * rng.random((h, w)), z)  # object 2 cm above the plane
    region = np.zeros((h, w), bool)
    if defect == "random":
        cy, cx = rng.integers(-5, 5, size=2) + (h // 2, w // 2)
        region = (y - cy) ** 2 + (x - cx) ** 2 < 9
    elif defect is not None:
        y0, y1, x0, x1 = defect
        region[y0:y1, x0:x1] = True
    region &= obj
    z = np.where(region, z - bump, z)
    mask = np.where(region, 255, 0).astype(np.uint8)
    xyz = np.stack([xs, ys, z], axis=-1).astype(np.float32)
    if invalid_fraction > 0:
        xyz[rng.random((h, w)) < invalid_fraction] = 0.0
    return xyz, obj, mask


def write_fake_mvtec(root, categories=("widget",), shape=(40, 48), n_per_type=2, defect_types=("crack", "hole"),
                     seed=0, truth=None, defect=(18, 22, 20, 25), **sample_kwargs):
    """Write a fake MVTec 3D-AD tree under ``root`` (a ``pathlib.Path``) and return ``root``.

    Each category gets ``train/good`` and ``test/good`` plus ``test/<t>`` for ``t`` in
    ``defect_types``, with ``n_per_type`` samples per folder (an int, or a dict keyed by
    split). Non-good samples carry ``defect`` (see :func:`fake_xyz`, which also receives
    ``sample_kwargs``); one generator seeded with ``seed`` draws all samples in folder order.
    If ``truth`` is a dict, it receives ``(category, split, type, i) -> (xyz, obj, mask)``.
    """
    tifffile = pytest.importorskip("tifffile")
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(seed)
    for category in categories:
        for split, types in (("train", ["good"]), ("test", ["good", *defect_types])):
            n = n_per_type[split] if isinstance(n_per_type, dict) else n_per_type
            for kind in types:
                folder = root / category / split / kind
                (folder / "xyz").mkdir(parents=True)
                if split == "test":
                    (folder / "gt").mkdir()
                for i in range(n):
                    xyz, obj, mask = fake_xyz(rng, shape, None if kind == "good" else defect, **sample_kwargs)
                    tifffile.imwrite(folder / "xyz" / f"{i:03d}.tiff", xyz, photometric="minisblack")
                    if split == "test":
                        Image.fromarray(mask).save(folder / "gt" / f"{i:03d}.png")
                    if truth is not None:
                        truth[(category, split, kind, i)] = (xyz, obj, mask)
    return root
