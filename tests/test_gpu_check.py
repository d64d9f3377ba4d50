"""benchmarks/gpu_check.py in its CPU dry run: every phase runs, and pretraining resumes."""

import json
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, os.path.abspath(BENCHMARKS))
    import gpu_check

    return gpu_check


def test_dry_run_runs_every_phase(gpu_check, tmp_path):
    # a generous budget: the run ends when the phases do, and a slow machine must not skip any
    args = ["--dry-run", "--budget", "300", "--skip", "tests", "pretraining", "--device", "cpu"]
    assert gpu_check.main(["--out", str(tmp_path), *args]) == 0
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {name: p["status"] for name, p in record["phases"].items()} == {
        "environment": "ok", "keops": "ok", "exactness": "ok", "scaling": "ok"}
    knn = record["phases"]["exactness"]["knn"]
    assert all(row["max_distance_error"] < 1e-5 and row["rows_with_identical_neighbour_sets"] > 0.99 for row in knn)
    assert all(row["max_relative_error_vs_float64"] < 1e-5 for row in record["phases"]["exactness"]["chamfer"])
    assert len(record["phases"]["scaling"]["rows"]) == len(gpu_check.DRY["grid"])
    assert record["phases"]["scaling"]["detector"]["score_samples_s"] > 0


def test_dry_run_pretraining_writes_checkpoints_that_the_next_run_resumes(gpu_check, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["--dry-run", "--budget", "30", "--skip", "tests", "exactness", "scaling", "--device", "cpu"]
    assert gpu_check.main(["--out", str(first), "--resume-from", str(tmp_path / "none"), *args]) == 0
    done = json.loads((first / "gpu_check.json").read_text())["phases"]["pretraining"]
    assert done["status"] == "ok" and not done["resumed"] and done["epochs"] > 0
    assert (first / (gpu_check.CHECKPOINT + ".last.pt")).exists()
    # the next GPU window continues from the checkpoints the last one brought back
    assert gpu_check.main(["--out", str(second), "--resume-from", str(first), *args]) == 0
    resumed = json.loads((second / "gpu_check.json").read_text())["phases"]["pretraining"]
    assert resumed["resumed"] and resumed["epochs"] > done["epochs"]
