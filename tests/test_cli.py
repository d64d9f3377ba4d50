"""The file workflow: ``skst3d fit`` and ``skst3d score`` on scan files, and the user guide's section.

Scans are written by the tests themselves, in millimetres far from the origin (as survey- or
machine-referenced scans are), in every format skst3d.io reads.
"""

import csv
import json
import os
import re
import shlex
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from skst3d.__main__ import main
from skst3d.datasets import make_synthetic_parts
from skst3d.io import read_point_cloud, write_point_cloud

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from bench_workflow import workflow_metrics  # noqa: E402  the targets' quantities, as the benchmark reports them

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FAR = np.array([5e5, 5.4e6, 0.0])  # millimetres: 500 m east, 5,400 km north


# ------------------------------------------------------------------------------ writers
def write_scan(path, points):
    """Write ``points`` (float64) to ``path`` in the format of its extension, losslessly."""
    path, ext = str(path), os.path.splitext(str(path))[1].lower()
    rows = "\n".join(" ".join(f"{v:.17g}" for v in p) for p in points)
    if ext == ".ply":
        write_point_cloud(path, points)
    elif ext in (".xyz", ".txt"):
        Path(path).write_text(f"# x y z\n{rows}\n")
    elif ext == ".pts":
        Path(path).write_text(f"{len(points)}\n{rows}\n")
    elif ext == ".csv":
        Path(path).write_text("x,y,z\n" + "\n".join(",".join(f"{v:.17g}" for v in p) for p in points) + "\n")
    elif ext == ".npy":
        np.save(path, points)
    elif ext == ".npz":
        np.savez(path, points=points)
    elif ext == ".pcd":
        header = ["VERSION .7", "FIELDS x y z", "SIZE 8 8 8", "TYPE F F F", "COUNT 1 1 1", f"WIDTH {len(points)}",
                  "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {len(points)}", "DATA ascii"]
        Path(path).write_text("\n".join(header) + f"\n{rows}\n")
    elif ext == ".obj":
        Path(path).write_text("\n".join("v " + " ".join(f"{v:.17g}" for v in p) for p in points) + "\n")
    elif ext == ".off":
        Path(path).write_text(f"OFF\n{len(points)} 0 0\n{rows}\n")
    elif ext == ".stl":  # ASCII STL keeps float64 text; triangles of consecutive points
        padded = np.concatenate([points, np.repeat(points[-1:], (-len(points)) % 3, axis=0)])
        facets = [
            "facet normal 0 0 1\nouter loop\n" + "".join("vertex " + " ".join(f"{v:.17g}" for v in p) + "\n" for p in tri)
            + "endloop\nendfacet"
            for tri in padded.reshape(-1, 3, 3)
        ]
        Path(path).write_text("solid scan\n" + "\n".join(facets) + "\nendsolid scan\n")
    else:  # pragma: no cover - test helper misuse
        raise ValueError(ext)


FORMATS = [".ply", ".pcd", ".xyz", ".txt", ".pts", ".csv", ".npy", ".npz", ".stl", ".obj", ".off"]


def read_ply_fields(path):
    """Vertex records of a binary little-endian PLY written by write_point_cloud."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    props = [line.split()[1:] for line in raw[:end].decode().splitlines() if line.startswith("property")]
    dtype = np.dtype([(name, {"float": "<f4", "double": "<f8"}[kind]) for kind, name in props])
    return np.frombuffer(raw[end:], dtype=dtype)


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A model fitted by ``skst3d fit`` on 5 small good scans (PLY), and test scans with labels."""
    folder = tmp_path_factory.mktemp("small")
    data = make_synthetic_parts(n_train=5, n_test=4, part_types=["plate"], n_points=1024, random_state=3)
    train = folder / "good"
    train.mkdir()
    for i, cloud in enumerate(data.train):
        write_scan(train / f"good_{i:02d}.ply", cloud.astype(np.float64) + FAR)
    model = folder / "model.joblib"
    assert main(["fit", str(train), "--model", str(model), "--epochs", "3", "--threads", "1"]) == 0
    test = [c.astype(np.float64) + FAR for c in data.test]
    return {"model": model, "test": test, "labels": data.test_labels, "folder": folder}


# --------------------------------------------------------------------------- the targets
def test_targets_on_part_scans_written_as_ply_files(tmp_path, capsys):
    """Cloud AUROC, verdicts and region centroids from the report of ``skst3d score``.

    12 good training and 12 test scans (6 defective) of one part type, 4,096 points, in
    millimetres far from the origin; the default detector with 20 epochs instead of 100, to
    stay fast (the user guide reports the default on all part types).
    """
    data = make_synthetic_parts(n_train=12, n_test=12, part_types=["flange"], n_points=4096, random_state=0)
    good, new, out = tmp_path / "good", tmp_path / "new", tmp_path / "out"
    good.mkdir(), new.mkdir()
    for i, cloud in enumerate(data.train):
        write_scan(good / f"good_{i:02d}.ply", cloud.astype(np.float64) + FAR)
    scans = [cloud.astype(np.float64) + FAR for cloud in data.test]
    for i, cloud in enumerate(scans):
        write_scan(new / f"scan_{i:02d}.ply", cloud)
    model = tmp_path / "model.joblib"
    assert run(["fit", good, "--model", model, "--epochs", 20, "--random-state", 0, "--threads", 1], capsys)[0] == 0
    status, _, err = run(["score", model, new, "--output", out, "--no-pictures", "--threads", 1], capsys)
    assert status == 0, err
    report = json.loads((out / "report.json").read_text())
    assert [os.path.basename(s["file"]) for s in report["scans"]] == [f"scan_{i:02d}.ply" for i in range(12)]

    defect_of_point = [read_ply_fields(out / f"scan_{i:02d}.ply")["defect"].astype(int) for i in range(len(scans))]
    for region_of_point, entry in zip(defect_of_point, report["scans"]):  # regions numbered 1..n in the PLY
        assert sorted(np.unique(region_of_point[region_of_point > 0]).tolist()) == list(range(1, len(entry["regions"]) + 1))
    auroc, accuracy, found, located, n_defects = workflow_metrics(report, scans, data.test_labels, defect_of_point)
    print(f"\ntargets (flange, 20 epochs): cloud AUROC {auroc:.3f}, verdict accuracy {accuracy:.3f}, "
          f"centroid within the defect's radius for {located}/{found} found defects ({found}/{n_defects} found)")
    assert auroc >= 0.95
    assert accuracy >= 0.9
    assert found >= 0.5 * n_defects and located >= 0.9 * found
    # regions are in input units and frame: far from the origin, on the part
    centroids = np.array([r["centroid"] for s in report["scans"] for r in s["regions"]])
    assert len(centroids) and np.all(np.abs(centroids[:, :2] - FAR[:2]) < 100)


# ------------------------------------------------------------------------------- outputs
def test_score_outputs_match_the_python_api(small, tmp_path, capsys):
    scans = small["test"]
    for i, scan in enumerate(scans):
        write_scan(tmp_path / f"scan_{i}.ply", scan)
    out = tmp_path / "out"
    status, text, err = run(["score", small["model"], tmp_path, "--output", out, "--threads", "1"], capsys)
    assert status == 0, err
    model = joblib.load(small["model"])
    report = json.loads((out / "report.json").read_text())
    assert report["threshold"] == -model.cloud_offset_ and report["point_threshold"] == -model.offset_
    assert report["errors"] == []
    expected_scores = -model.score_clouds(scans)
    expected_regions = model.find_defects(scans)
    expected_verdicts = model.predict_clouds(scans)
    for i, (scan, entry) in enumerate(zip(scans, report["scans"])):
        assert entry["file"] == str(tmp_path / f"scan_{i}.ply")
        assert entry["n_points"] == len(scan)
        assert entry["score"] == pytest.approx(expected_scores[i], rel=1e-6)
        assert entry["verdict"] == {1: "good", -1: "defective"}[expected_verdicts[i]]
        expected = [r.to_dict() for r in expected_regions[i]]
        assert len(entry["regions"]) == len(expected)
        for got, want in zip(entry["regions"], expected):  # approx compares flat values only
            assert got.keys() == want.keys()
            for key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-6), key
        # the scored PLY: input points in input order and units, anomaly and defect fields
        fields = read_ply_fields(out / f"scan_{i}.ply")
        np.testing.assert_array_equal(np.c_[fields["x"], fields["y"], fields["z"]], scan)
        np.testing.assert_allclose(fields["anomaly"], -model.score_samples([scan])[0], rtol=1e-6, atol=1e-6)
        assert [int((fields["defect"] == r).sum()) for r in range(1, len(entry["regions"]) + 1)] == [
            region["n_points"] for region in entry["regions"]
        ]
        assert (out / f"scan_{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [row["file"] for row in rows] == [s["file"] for s in report["scans"]]
    assert [float(row["score"]) for row in rows] == [s["score"] for s in report["scans"]]
    assert "good" in text or "defective" in text


def test_every_readable_format_gives_the_same_result(small, tmp_path, capsys):
    scan = small["test"][1]
    for ext in FORMATS:
        write_scan(tmp_path / f"scan{ext}", scan)
        assert np.array_equal(read_point_cloud(tmp_path / f"scan{ext}"), scan), ext
    out = tmp_path / "out"
    status, _, err = run(["score", small["model"], tmp_path, "--output", out, "--no-pictures", "--threads", "1"], capsys)
    assert status == 0, err
    report = json.loads((out / "report.json").read_text())
    assert len(report["scans"]) == len(FORMATS)
    first = report["scans"][0]
    for entry in report["scans"]:
        assert (entry["n_points"], entry["score"], entry["verdict"], entry["regions"]) == (
            first["n_points"], first["score"], first["verdict"], first["regions"]
        ), entry["file"]
    # one stem, eleven formats: eleven distinct outputs
    assert len(list(out.glob("scan_*.ply"))) == len(FORMATS)


# ------------------------------------------------------------------------------ failures
def test_an_unreadable_file_is_named_and_the_others_are_scored(small, tmp_path, capsys):
    write_scan(tmp_path / "a.ply", small["test"][0])
    (tmp_path / "b.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 100\n")
    (tmp_path / "c.xyz").write_text("1 2 3\n4 five 6\n")
    write_scan(tmp_path / "d.xyz", small["test"][1])
    out = tmp_path / "out"
    status, _, err = run(["score", small["model"], tmp_path, "-o", out, "--no-pictures", "--threads", "1"], capsys)
    assert status == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 2
    assert str(tmp_path / "b.ply") in errors[0] and str(tmp_path / "c.xyz") in errors[1]
    report = json.loads((out / "report.json").read_text())
    assert [os.path.basename(s["file"]) for s in report["scans"]] == ["a.ply", "d.xyz"]
    assert [os.path.basename(e["file"]) for e in report["errors"]] == ["b.ply", "c.xyz"]
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [row["verdict"] for row in rows][1:3] == ["unreadable", "unreadable"]
    assert sorted(p.name for p in out.glob("*.ply")) == ["a.ply", "d.ply"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "{good}"], "--model"),
        (["fit", "{good}", "--model", "{tmp}/m.joblib", "--epochs", "0"], "--epochs"),
        (["fit", "{tmp}/missing", "--model", "{tmp}/m.joblib"], "missing"),
        (["fit", "{good}", "--model", "{tmp}/no/such/folder/m.joblib"], "does not exist"),
        (["score", "{model}", "{good}"], "--output"),
        (["score", "{tmp}/nothing.joblib", "{good}", "-o", "{tmp}/out"], "nothing.joblib"),
        (["score", "{model}", "{tmp}/missing.ply", "-o", "{tmp}/out"], "missing.ply"),
        (["score", "{model}", "{good}", "-o", "{good}"], "overwrite"),
        (["score", "{model}", "{good}", "-o", "{tmp}/out", "--jobs", "-2"], "--jobs"),
    ],
)
def test_bad_arguments_are_argparse_errors(small, tmp_path, capsys, argv, message):
    good = small["folder"] / "good"
    argv = [a.format(good=good, tmp=tmp_path, model=small["model"]) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.joblib").exists()


def test_fit_writes_no_model_when_a_scan_is_unreadable_or_saving_fails(small, tmp_path, capsys, monkeypatch):
    good = tmp_path / "good"
    good.mkdir()
    for i, scan in enumerate(small["test"][:3]):
        write_scan(good / f"{i}.xyz", scan)
    (good / "3.xyz").write_text("")
    model = tmp_path / "model.joblib"
    status, _, err = run(["fit", good, "--model", model, "--epochs", "1", "--threads", "1"], capsys)
    assert status == 1 and str(good / "3.xyz") in err and "no model written" in err
    os.remove(good / "3.xyz")

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(joblib, "dump", broken_dump)
    status, _, err = run(["fit", good, "--model", model, "--epochs", "1", "--threads", "1"], capsys)
    assert status == 1 and f"cannot write the model to {model}: disk full" in err
    assert sorted(os.listdir(tmp_path)) == ["good"]  # no model, no temporary file


# ------------------------------------------------------------- parallel scoring, warnings
def test_parallel_scoring_gives_identical_results(small, tmp_path, capsys):
    for i, scan in enumerate(small["test"]):
        write_scan(tmp_path / f"scan_{i}.npy", scan)
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--no-pictures", "--threads", "1"]
    assert run(["score", small["model"], tmp_path, "-o", one, "--jobs", "1", *common], capsys)[0] == 0
    assert run(["score", small["model"], tmp_path, "-o", two, "--jobs", "2", *common], capsys)[0] == 0
    assert (one / "report.json").read_text() == (two / "report.json").read_text()
    for i in range(len(small["test"])):
        assert (one / f"scan_{i}.ply").read_bytes() == (two / f"scan_{i}.ply").read_bytes()


def test_other_units_or_density_warn_naming_the_file(small, tmp_path, capsys):
    scan = small["test"][0]
    write_scan(tmp_path / "metres.ply", (scan - FAR) / 1000.0)
    dense = make_synthetic_parts(n_train=1, n_test=0, part_types=["plate"], n_points=1024 * 16, random_state=3)
    write_scan(tmp_path / "dense.ply", dense.train[0].astype(np.float64) + FAR)
    write_scan(tmp_path / "fine.ply", scan)
    status, _, err = run(["score", small["model"], tmp_path, "-o", tmp_path / "out", "--no-pictures", "--threads", "1"],
                         capsys)
    assert status == 0
    warned = [line for line in err.splitlines() if "warning:" in line]
    assert len(warned) == 2
    factors = {line.split(": ")[2]: float(re.search(r"is ([\d.]+) times smaller", line).group(1)) for line in warned}
    assert 500 < factors[str(tmp_path / "metres.ply")] < 2000  # millimetres against metres
    assert 3 < factors[str(tmp_path / "dense.ply")] < 5  # 16 times the points: a quarter of the spacing
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [bool(s["warnings"]) for s in report["scans"]] == [True, False, True]  # dense, fine, metres


def test_without_matplotlib_everything_but_the_pictures_is_written(small, tmp_path, capsys, monkeypatch):
    write_scan(tmp_path / "a.ply", small["test"][0])
    write_scan(tmp_path / "b.ply", small["test"][1])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    status, _, err = run(["score", small["model"], tmp_path, "-o", tmp_path / "out", "--threads", "1"], capsys)
    assert status == 0
    assert err.count("pip install skst3d[plot]") == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.ply", "b.ply", "report.csv", "report.json"]


# ---------------------------------------------------------------------------- registration
def test_fit_registers_by_default_and_reports_regions_in_the_input_frame(small, tmp_path, capsys):
    good = tmp_path / "good"
    good.mkdir()
    for i, scan in enumerate(small["test"]):
        write_scan(good / f"{i}.ply", scan)  # millimetres far from the origin
    model, plain = tmp_path / "model.joblib", tmp_path / "plain.joblib"
    assert run(["fit", good, "--model", model, "--epochs", "2", "--threads", "1"], capsys)[0] == 0
    loaded = joblib.load(model)
    assert loaded.registration_ is not None
    scan = small["test"][0]
    # registration keeps far-from-origin scans exact: a scan registered onto itself stays put
    reference = loaded.registration_.reference_
    np.testing.assert_allclose(loaded.registration_.transform([reference])[0], reference, rtol=0, atol=1e-6)
    [regions] = loaded.find_defects([scan], threshold=float("-inf"), min_points=1, min_peak=None)
    np.testing.assert_allclose(regions[0].centroid, scan.mean(axis=0), rtol=0, atol=1e-6)  # every point, one region
    assert run(["fit", good, "--model", plain, "--epochs", "2", "--threads", "1", "--no-register"], capsys)[0] == 0
    assert joblib.load(plain).registration_ is None


# ------------------------------------------------------------------------------ user guide
def guide_section(title="Your own scans"):
    text = Path(ROOT, "docs", "user_guide.rst").read_text()
    start = text.index(f"\n{title}\n")
    following = re.search(r"\n[^\n]+\n-{4,}\n", text[start + len(title) + 2 :])
    return text[start : start + len(title) + 2 + (following.start() if following else len(text))]


def code_blocks(section, language):
    blocks = re.findall(rf"\.\. code-block:: {language}\n\n((?:(?:   .*)?\n)+)", section)
    return ["\n".join(line[3:] for line in block.splitlines()) for block in blocks]


def test_user_guide_file_workflow_runs(tmp_path, capsys, monkeypatch):
    section = guide_section()
    commands = [line for block in code_blocks(section, "bash") for line in block.splitlines() if line.strip()]
    python = code_blocks(section, "python")
    assert [c.split()[:2] for c in commands] == [["skst3d", "fit"], ["skst3d", "score"]] and len(python) == 1
    data = make_synthetic_parts(n_train=4, n_test=2, part_types=["flange"], n_points=512, random_state=4)
    monkeypatch.chdir(tmp_path)
    os.mkdir("good_scans"), os.mkdir("new_scans")
    for i, cloud in enumerate(data.train):
        write_scan(f"good_scans/good_{i}.ply", cloud.astype(np.float64) + FAR)
    write_scan("new_scans/part_0001.xyz", data.test[0].astype(np.float64) + FAR)
    write_scan("new_scans/part_0002.ply", data.test[1].astype(np.float64) + FAR)
    for command in commands:
        assert main(shlex.split(command)[1:] + ["--threads", "1"]) == 0
    capsys.readouterr()
    exec(compile(python[0], "user_guide.rst", "exec"), {"__name__": "user_guide"})  # noqa: S102 - the guide's code
    printed = capsys.readouterr().out
    report = json.loads(Path("report/report.json").read_text())
    assert [os.path.basename(s["file"]) for s in report["scans"]] == ["part_0001.xyz", "part_0002.ply"]
    assert "part_0001.xyz" in printed and "part_0002.ply" in printed
    assert os.path.exists("report/part_0001.ply") and os.path.exists("report/report.csv")
