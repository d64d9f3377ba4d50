"""Smoke test of benchmarks/mvtec3d.py on a tiny fake MVTec 3D-AD tree (the real data is not here)."""

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "mvtec3d.py")
REAL_RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")
H = W = 40


def _load_script():
    spec = importlib.util.spec_from_file_location("mvtec3d_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_sample(rng, defect):
    """A tilted plane with a box-shaped object 2 cm above it; defects are bumps on the object."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    xs, ys = (x - W / 2) * 0.001, (y - H / 2) * 0.001
    z = 0.6 + 0.02 * xs - 0.01 * ys
    obj = (np.abs(x - W / 2) < 10) & (np.abs(y - H / 2) < 9)
    z = np.where(obj, z - 0.02 - 0.0005 * rng.random((H, W)), z)
    mask = np.zeros((H, W), np.uint8)
    if defect:
        cy, cx = rng.integers(15, 25, size=2)
        bump = obj & ((y - cy) ** 2 + (x - cx) ** 2 < 9)
        z = np.where(bump, z - 0.004, z)
        mask[bump] = 255
    xyz = np.stack([xs, ys, z], axis=-1).astype(np.float32)
    xyz[rng.random((H, W)) < 0.03] = 0.0  # invalid pixels, as in real scans
    return xyz, mask


@pytest.fixture
def fake_root(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    root = tmp_path / "mvtec"
    for category in ("bagel", "rope"):
        for split, types, n in (("train", ["good"], 4), ("test", ["good", "crack", "hole"], 3)):
            for defect in types:
                folder = root / category / split / defect
                (folder / "xyz").mkdir(parents=True)
                if split == "test":
                    (folder / "gt").mkdir()
                for i in range(n):
                    xyz, mask = _fake_sample(rng, defect != "good")
                    tifffile.imwrite(folder / "xyz" / f"{i:03d}.tiff", xyz, photometric="minisblack")
                    if split == "test":
                        Image.fromarray(mask).save(folder / "gt" / f"{i:03d}.png")
    return root


def test_quick_benchmark_on_fake_tree(fake_root, tmp_path):
    before = open(REAL_RESULTS, "rb").read() if os.path.exists(REAL_RESULTS) else None
    results = tmp_path / "RESULTS.md"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--root", str(fake_root), "--quick", "--results", str(results)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # the Table 1 layout: paper rows and ours, the ten categories and the mean
    assert "| Method | bagel | cable gland | carrot |" in out and "| tire | mean |" in out
    assert "| 3D-ST64 (paper) | 0.939 | 0.440 |" in out and "| 3D-ST128 (paper) | 0.950 |" in out
    rows = [line for line in out.splitlines() if line.startswith("| 3D-ST (skst3d) |")]
    assert len(rows) == 2  # AU-PRO and I-AUROC tables
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 1 + 10 + 1
    values = {name: cells[1 + i] for i, name in enumerate(
        ["bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire"])}
    assert values["carrot"] == "–"
    for name in ("bagel", "rope"):
        assert 0.0 <= float(values[name]) <= 1.0
    assert 0.0 <= float(cells[-1]) <= 1.0
    for category in ("bagel", "rope"):
        match = re.search(rf"^{category}\s+AU-PRO@0.3 ([0-9.]+)\s+I-AUROC ([0-9.]+)", out, re.M)
        assert match, out
        assert 0.0 <= float(match.group(1)) <= 1.0 and 0.0 <= float(match.group(2)) <= 1.0
    assert out.count("3 train / 6 test clouds") == 2  # quick mode caps: 3 train, 2 per defect type
    # the section went to --results, never to the real RESULTS.md
    text = results.read_text()
    assert "<!-- begin mvtec3d -->" in text and "<!-- end mvtec3d -->" in text and "3D-ST64 (paper)" in text
    after = open(REAL_RESULTS, "rb").read() if os.path.exists(REAL_RESULTS) else None
    assert after == before


def test_missing_root_exits_cleanly(tmp_path, capsys):
    module = _load_script()
    assert module.main(["--root", str(tmp_path / "nowhere")]) == 0
    assert "MVTec 3D-AD not found" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert module.main(["--root", str(tmp_path / "empty"), "--no-write"]) == 0
    assert "no MVTec 3D-AD category folders" in capsys.readouterr().out
    assert module.main(["--root", str(tmp_path), "--categories", "bagel", "--no-write"]) == 2


def test_table_means_follow_the_evaluated_categories():
    module = _load_script()
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))  # build_tables imports _results
    try:
        pro, auroc = module.build_tables(
            {"bagel": {"au_pro": 0.5, "i_auroc": 0.75}, "rope": {"au_pro": 1.0, "i_auroc": float("nan")}},
            list(module.CATEGORIES),
        )
        # all ten categories: the paper's own means
        full = {c: {"au_pro": 0.9, "i_auroc": 0.9} for c in module.CATEGORIES}
        full_pro, _ = module.build_tables(full, list(module.CATEGORIES))
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))
    rows = {line.split("|")[1].strip(): line for line in pro.splitlines()[2:]}
    assert rows["3D-ST (skst3d)"].rstrip().endswith("| 0.750 |")
    assert rows["3D-ST64 (paper)"].rstrip().endswith(f"| {np.mean([0.939, 0.967]):.3f} |")
    assert "| – |" in auroc and auroc.rstrip().endswith("| 0.750 |")
    assert "| 0.818 |" in full_pro and "| 0.833 |" in full_pro and full_pro.rstrip().endswith("| 0.900 |")
