"""The scripts in examples/ run end to end with --quick (tiny sizes, seconds each).

Each runs in a subprocess, as a user would run it, with one BLAS/OpenMP thread so that the
test suite stays light on shared machines. Data-dependent examples skip (or take their
"nothing to do" path) when the data is absent.
"""

import os
import subprocess
import sys

import pytest

from _fake_mvtec import write_fake_mvtec

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EXAMPLES = os.path.join(ROOT, "examples")


def run_example(name, *args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_every_example_is_tested():
    scripts = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert scripts == ["grid_search.py", "mvtec3d_evaluation.py", "pretrain_on_meshes.py", "quickstart.py"]


def test_quickstart():
    out = run_example("quickstart.py", "--quick").stdout
    for metric in ("AU-PRO@0.3", "AU-PRO@0.05", "cloud AUROC"):
        assert metric in out
    value = float(out.split("AU-PRO@0.3  =")[1].split()[0])
    assert 0.0 <= value <= 1.0


def test_grid_search():
    out = run_example("grid_search.py", "--quick").stdout
    assert "best:" in out
    # all four settings of the grid were scored (no NaN folds thanks to the stratified splits)
    lines = [line for line in out.splitlines() if line.strip().startswith("{'d'")]
    assert len(lines) == 4
    assert "nan" not in " ".join(lines)


def test_pretrain_on_meshes(mesh_dir, tmp_path, monkeypatch):
    pytest.importorskip("trimesh")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the example's temporary copies go here
    target = tmp_path / "teacher.pt"
    out = run_example("pretrain_on_meshes.py", "--quick", "--mesh-dir", mesh_dir, "--output", str(target)).stdout
    assert "teacher pretrained" in out and "AU-PRO@0.3" in out
    assert target.exists() and (tmp_path / "teacher.pt.json").exists()
    assert not [p for p in scratch.iterdir() if p.name.startswith("skst3d_")]  # nothing left behind


def test_pretrain_on_meshes_without_meshes(tmp_path):
    proc = run_example("pretrain_on_meshes.py", "--quick", "--mesh-dir", str(tmp_path / "absent"))
    assert "Nothing to do" in proc.stderr


def test_mvtec3d_evaluation_without_data(tmp_path):
    proc = run_example("mvtec3d_evaluation.py", "--quick", "--root", str(tmp_path / "absent"))
    assert "MVTec 3D-AD not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_mvtec3d_evaluation_on_a_fake_tree(tmp_path):
    # a box on a tilted plane; "crack" samples carry a 3 mm bump on the object, no invalid pixels
    write_fake_mvtec(tmp_path, shape=(36, 44), n_per_type=3, defect_types=("crack",), defect=(16, 20, 20, 25),
                     half_size=(10, 12), noise=0.0002, bump=0.003)
    out = run_example("mvtec3d_evaluation.py", "--quick", "--root", str(tmp_path), "--categories", "widget").stdout
    assert "widget" in out and "AU-PRO@0.3" in out and "mean" in out
    value = float(out.split("AU-PRO@0.3")[1].split()[0])
    assert 0.0 <= value <= 1.0
