"""Smoke test of benchmarks/mvtec3d.py on a tiny fake MVTec 3D-AD tree (the real data is not here)."""

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from _fake_mvtec import write_fake_mvtec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "mvtec3d.py")
REAL_RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")
H = W = 40


def _load_script():
    spec = importlib.util.spec_from_file_location("mvtec3d_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_root(tmp_path):
    # a box on a tilted plane, 3 % invalid pixels; defects are 4 mm bumps at random spots on the object
    return write_fake_mvtec(tmp_path / "mvtec", categories=("bagel", "rope"), shape=(H, W),
                            n_per_type={"train": 4, "test": 3}, defect_types=("crack", "hole"), defect="random",
                            half_size=(9, 10), noise=0.0005, bump=0.004, invalid_fraction=0.03)


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
