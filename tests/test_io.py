"""Tests for skst3d.io: every format read against files encoded here by hand (struct/numpy/text),
not only through our own writer, plus the writer's round trips and every error message."""

import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skst3d.io import (
    POINT_CLOUD_EXTENSIONS,
    list_point_cloud_files,
    read_point_cloud,
    write_point_cloud,
)

# Millimetre scan far from the origin: x ~ 5e5, y ~ 5.4e6, 0.001 mm steps. float32 cannot hold
# these (neighbouring float32 values are 0.03 mm and 0.5 mm apart there).
FAR = np.column_stack(
    [500000.0 + 0.001 * np.arange(7), 5400000.0 + 0.001 * np.arange(7), 0.001 * np.arange(7)]
)


def num(value):
    """Shortest text that reads back as exactly this float64."""
    return repr(float(value))


def assert_bitwise_equal(actual, expected):
    """Exact equality, bit for bit (so -0.0 and 0.0 differ)."""
    actual, expected = np.asarray(actual), np.asarray(expected, dtype=np.float64)
    assert actual.dtype == np.float64
    assert actual.shape == expected.shape
    assert np.array_equal(actual.view(np.int64), expected.view(np.int64))


def write_ply(path, fmt, elements, body):
    """A PLY file from its elements ``(name, count, [property declarations])`` and data."""
    header = ["ply", f"format {fmt} 1.0", "comment encoded by hand in test_io"]
    for name, count, properties in elements:
        header.append(f"element {name} {count}")
        header += [f"property {p}" for p in properties]
    header.append("end_header")
    if isinstance(body, str):
        body = body.encode("ascii")
    path.write_bytes(("\n".join(header) + "\n").encode("ascii") + body)
    return path


def parse_binary_ply(path):
    """Decode a binary little-endian PLY without skst3d: (property types, records)."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    lines = raw[:end].decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    count = next(int(line.split()[2]) for line in lines if line.startswith("element vertex"))
    types = {line.split()[2]: line.split()[1] for line in lines if line.startswith("property")}
    dtype = np.dtype([(name, {"float": "<f4", "double": "<f8"}[t]) for name, t in types.items()])
    assert len(raw) - end == count * dtype.itemsize  # nothing missing, nothing extra
    return types, np.frombuffer(raw[end:], dtype=dtype)


# --------------------------------------------------------------------------- #
# PLY
# --------------------------------------------------------------------------- #

VERTEX_PROPERTIES = [
    ("x", "<f8", "double x"),
    ("y", "<f8", "double y"),
    ("z", "<f8", "double z"),
    ("nx", "<f4", "float nx"),
    ("ny", "<f4", "float ny"),
    ("nz", "<f4", "float nz"),
    ("red", "u1", "uchar red"),
    ("green", "u1", "uchar green"),
    ("blue", "u1", "uchar blue"),
    ("scalar_intensity", "<f4", "float scalar_intensity"),
]


def vertex_records(points, byte_order="<"):
    dtype = [(name, code.replace("<", byte_order)) for name, code, _ in VERTEX_PROPERTIES]
    records = np.zeros(len(points), dtype=dtype)
    records["x"], records["y"], records["z"] = points.T
    records["nz"], records["red"], records["scalar_intensity"] = 1.0, 200, 0.5
    return records


@pytest.mark.parametrize(
    ("fmt", "order"), [("binary_little_endian", "<"), ("binary_big_endian", ">")]
)
def test_binary_ply_with_extra_properties_and_faces(tmp_path, fmt, order):
    faces = struct.pack(order + "B3i", 3, 0, 1, 2) + struct.pack(order + "B4i", 4, 3, 4, 5, 6)
    path = write_ply(
        tmp_path / "scan.ply",
        fmt,
        [
            ("vertex", len(FAR), [decl for *_, decl in VERTEX_PROPERTIES]),
            ("face", 2, ["list uchar int vertex_indices"]),
        ],
        vertex_records(FAR, order).tobytes() + faces,
    )
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_binary_big_endian_float_coordinates(tmp_path):
    points = np.array([[0.5, -1.25, 3.0], [1e-3, 2e5, -7.0]], dtype=np.float32)
    path = write_ply(
        tmp_path / "be.ply",
        "binary_big_endian",
        [("vertex", 2, ["float x", "float y", "float z"])],
        points.astype(">f4").tobytes(),
    )
    assert_bitwise_equal(read_point_cloud(path), points.astype(np.float64))


def test_binary_ply_integer_coordinates_and_other_property_order(tmp_path):
    records = np.array(
        [(7, 1, -2, 300), (8, 2, 70000, -5)],
        dtype=[("flags", "u1"), ("z", "<i2"), ("x", "<i4"), ("y", "<i4")],
    )
    path = write_ply(
        tmp_path / "int.ply",
        "binary_little_endian",
        [("vertex", 2, ["uchar flags", "short z", "int x", "int y"])],
        records.tobytes(),
    )
    assert_bitwise_equal(read_point_cloud(path), [[-2, 300, 1], [70000, -5, 2]])


def test_binary_ply_vertex_list_property_and_element_before_vertices(tmp_path):
    # A "camera" element with a list comes first, and each vertex carries a variable-length
    # list between its coordinates: both force the row-by-row path.
    body = struct.pack("<B2f", 2, 1.0, 2.0) + struct.pack("<B", 0)
    for i, (x, y, z) in enumerate(FAR):
        items = list(range(i % 3))
        body += struct.pack(f"<dB{len(items)}id", x, len(items), *items, y)
        body += struct.pack("<df", z, 0.25)
    path = write_ply(
        tmp_path / "lists.ply",
        "binary_little_endian",
        [
            ("camera", 2, ["list uchar float view"]),
            (
                "vertex",
                len(FAR),
                ["double x", "list uchar int tags", "double y", "double z", "float s"],
            ),
        ],
        body,
    )
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_binary_ply_fixed_size_element_before_vertices(tmp_path):
    body = struct.pack("<3f", 1, 2, 3) + FAR.astype("<f8").tobytes()
    path = write_ply(
        tmp_path / "cam.ply",
        "binary_little_endian",
        [
            ("camera", 1, ["float vx", "float vy", "float vz"]),
            ("vertex", 7, ["double x", "double y", "double z"]),
        ],
        body,
    )
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_ascii_ply_with_extra_properties_lists_and_faces(tmp_path):
    rows = "".join(
        f"{num(x)} {num(y)} {num(z)} 0 0 1 255 0 0 2 {i} {i + 1}\n"
        for i, (x, y, z) in enumerate(FAR)
    )
    body = "0.5\n" + rows + "3 0 1 2\n3 2 3 4\n"
    path = write_ply(
        tmp_path / "ascii.ply",
        "ascii",
        [
            ("camera", 1, ["float focal"]),
            ("vertex", len(FAR), ["double x", "double y", "double z", "float nx", "float ny",
                                  "float nz", "uchar red", "uchar green", "uchar blue",
                                  "list uchar int tags"]),
            ("face", 2, ["list uchar int vertex_indices"]),
        ],
        body,
    )  # fmt: skip
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_ply_written_by_plyfile(tmp_path):
    plyfile = pytest.importorskip("plyfile")
    vertices = vertex_records(FAR)
    faces = np.array([([0, 1, 2],), ([2, 3, 4, 5],)], dtype=[("vertex_indices", "O")])
    faces["vertex_indices"] = [np.array([0, 1, 2], "i4"), np.array([2, 3, 4, 5], "i4")]
    elements = [
        plyfile.PlyElement.describe(vertices, "vertex"),
        plyfile.PlyElement.describe(faces, "face"),
    ]
    for text in (True, False):
        path = tmp_path / f"plyfile_{text}.ply"
        plyfile.PlyData(elements, text=text).write(str(path))
        assert_bitwise_equal(read_point_cloud(path), FAR)


# --------------------------------------------------------------------------- #
# PCD
# --------------------------------------------------------------------------- #


def pcd_header(fields, sizes, types, counts, n, data):
    return (
        "# .PCD v0.7 - Point Cloud Data file format\n"
        "VERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\n"
        f"TYPE {' '.join(types)}\nCOUNT {' '.join(map(str, counts))}\n"
        f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n"
    )


def test_ascii_pcd_with_multi_count_field_before_xyz(tmp_path):
    header = pcd_header(
        ["normal", "x", "y", "z", "rgb"], [4, 8, 8, 8, 4], "FFFFU", [3, 1, 1, 1, 1], 7, "ascii"
    )
    rows = "".join(f"0 0 1\t{num(x)}  {num(y)} {num(z)} 4278190080\n" for x, y, z in FAR)
    path = tmp_path / "scan.pcd"
    path.write_text(header + rows)
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_binary_pcd_mixed_types(tmp_path):
    records = np.zeros(
        len(FAR),
        dtype=[
            ("normal", "<f4", (3,)),
            ("x", "<f8"),
            ("y", "<f8"),
            ("z", "<f8"),
            ("rgb", "<u4"),
            ("pad", "u1"),
        ],
    )
    records["x"], records["y"], records["z"] = FAR.T
    records["rgb"] = 0xFF00FF
    header = pcd_header(
        ["normal", "x", "y", "z", "rgb", "_"],
        [4, 8, 8, 8, 4, 1],
        "FFFFUU",
        [3, 1, 1, 1, 1, 1],
        7,
        "binary",
    )
    path = tmp_path / "scan.pcd"
    path.write_bytes(header.encode() + records.tobytes())
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_binary_pcd_float32(tmp_path):
    points = np.array([[0.1, 0.2, 0.3], [1, 2, 3]], dtype=np.float32)
    path = tmp_path / "f.pcd"
    path.write_bytes(
        pcd_header("xyz", [4] * 3, "FFF", [1] * 3, 2, "binary").encode() + points.tobytes()
    )
    assert_bitwise_equal(read_point_cloud(path), points.astype(np.float64))


def test_binary_compressed_pcd_through_pypcd4(tmp_path):
    pypcd4 = pytest.importorskip("pypcd4")
    cloud = pypcd4.PointCloud.from_points(
        np.column_stack([FAR, np.arange(7.0)]), ("x", "y", "z", "intensity"), (np.float64,) * 4
    )
    path = tmp_path / "compressed.pcd"
    cloud.save(str(path), encoding=pypcd4.Encoding.BINARY_COMPRESSED)
    assert b"DATA binary_compressed" in path.read_bytes()
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_binary_compressed_pcd_without_pypcd4_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "c.pcd"
    path.write_bytes(
        pcd_header("xyz", [4] * 3, "FFF", [1] * 3, 1, "binary_compressed").encode() + b"\0" * 8
    )
    monkeypatch.setitem(sys.modules, "pypcd4", None)  # makes "import pypcd4" fail
    with pytest.raises(ImportError, match=r"c\.pcd.*pip install skst3d\[pcd\]"):
        read_point_cloud(path)


def test_corrupt_binary_compressed_pcd(tmp_path):
    pytest.importorskip("pypcd4")
    path = tmp_path / "bad.pcd"
    payload = struct.pack("<II", 5, 24) + b"\xff" * 5
    path.write_bytes(
        pcd_header("xyz", [8] * 3, "FFF", [1] * 3, 1, "binary_compressed").encode() + payload
    )
    with pytest.raises(ValueError, match=r"bad\.pcd: cannot decompress"):
        read_point_cloud(path)


# --------------------------------------------------------------------------- #
# text tables
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("extension", [".xyz", ".txt", ".pts"])
def test_whitespace_text_with_comments_and_extra_columns(tmp_path, extension):
    lines = ["# exported by a scanner", ""]
    lines += [f"{num(x)}\t{num(y)}   {num(z)} 0.5 {i}" for i, (x, y, z) in enumerate(FAR)]
    lines.insert(5, "# a comment in the middle")
    path = tmp_path / f"scan{extension}"
    path.write_bytes("\r\n".join(lines).encode())  # Windows line ends too
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_decimal_text_is_parsed_to_the_nearest_double(tmp_path):
    strings = [("500000.123", "5400000.001", "-0.007"), ("499999.999", "5400000.999", "12.5")]
    path = tmp_path / "mm.xyz"
    path.write_text("".join(" ".join(row) + "\n" for row in strings))
    assert_bitwise_equal(read_point_cloud(path), [[float(v) for v in row] for row in strings])


def test_pts_with_point_count_line(tmp_path):
    path = tmp_path / "leica.pts"
    path.write_text("3\n1 2 3 -1200 10 20 30\n4 5 6 -1000 10 20 30\n7 8 9 -900 10 20 30\n")
    assert_bitwise_equal(read_point_cloud(path), [[1, 2, 3], [4, 5, 6], [7, 8, 9]])


def test_pts_point_count_mismatch(tmp_path):
    path = tmp_path / "short.pts"
    path.write_text("5\n1 2 3\n4 5 6\n")
    with pytest.raises(
        ValueError, match=r"short\.pts: the first line says 5 points, the file holds 2"
    ):
        read_point_cloud(path)


@pytest.mark.parametrize(
    "text",
    [
        "X,Y,Z\n1,2,3\n4,5,6\n",  # header, comma
        "x;y;z\n1;2;3\n4;5;6\n",  # header, semicolon
        "1,2,3\n4,5,6\n",  # no header
        "1;2;3;\n4;5;6;\n",  # no header, trailing separator
        "Intensity,Z,label,X,Y\n9,3,good,1,2\n9,6,bad,4,5\n",  # named columns in any order
        '"name","a","b","c","id"\n"p",1,2,3,7\n"q",4,5,6,8\n',  # no x/y/z: first numeric columns
        "//X,Y,Z,R,G,B\n1,2,3,0,0,0\n4,5,6,0,0,0\n",  # CloudCompare's header
        "# comment\nx, y, z\n1, 2, 3\n4, 5, 6\n",  # spaces after the separators
    ],
)
def test_csv_variants(tmp_path, text):
    path = tmp_path / "scan.csv"
    path.write_text(text)
    assert_bitwise_equal(read_point_cloud(path), [[1, 2, 3], [4, 5, 6]])


def test_csv_with_utf8_bom_and_far_coordinates(tmp_path):
    path = tmp_path / "excel.csv"
    rows = "".join(f"{num(x)};{num(y)};{num(z)}\n" for x, y, z in FAR)
    path.write_bytes(b"\xef\xbb\xbf" + ("x;y;z\n" + rows).encode())
    assert_bitwise_equal(read_point_cloud(path), FAR)


# --------------------------------------------------------------------------- #
# NumPy files
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "array",
    [
        FAR,
        np.column_stack([FAR, np.ones(7), np.zeros(7)]),
        FAR.astype(np.float32),
        np.arange(21).reshape(7, 3),
    ],
    ids=["float64", "five-columns", "float32", "int"],
)
def test_npy(tmp_path, array):
    path = tmp_path / "cloud.npy"
    np.save(path, array)
    assert_bitwise_equal(read_point_cloud(path), np.asarray(array)[:, :3].astype(np.float64))


def test_npy_structured_array(tmp_path):
    records = np.zeros(7, dtype=[("intensity", "f4"), ("x", "f8"), ("y", "f8"), ("z", "f8")])
    records["x"], records["y"], records["z"] = FAR.T
    path = tmp_path / "structured.npy"
    np.save(path, records)
    assert_bitwise_equal(read_point_cloud(path), FAR)


@pytest.mark.parametrize(
    "arrays",
    [{"cloud": FAR}, {"points": FAR, "labels": np.zeros(7)}, {"normals": FAR * 0, "xyz": FAR}],
)
def test_npz(tmp_path, arrays):
    path = tmp_path / "cloud.npz"
    np.savez(path, **arrays)
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_npz_without_a_points_array_lists_the_arrays(tmp_path):
    path = tmp_path / "many.npz"
    np.savez(path, a=FAR, b=FAR)
    with pytest.raises(ValueError, match=r"many\.npz: cannot tell which array.*arrays: a, b"):
        read_point_cloud(path)


# --------------------------------------------------------------------------- #
# meshes
# --------------------------------------------------------------------------- #

TETRA = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
TETRA_FACES = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]


def test_binary_stl_keeps_each_corner_once_in_first_seen_order(tmp_path):
    triangles = np.zeros(4, dtype=[("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("a", "<u2")])
    triangles["v"] = TETRA[np.array(TETRA_FACES)]
    path = tmp_path / "tetra.stl"
    header = b"solid but binary".ljust(80, b" ")  # binary headers may start with "solid"
    path.write_bytes(header + struct.pack("<I", 4) + triangles.tobytes())
    assert_bitwise_equal(read_point_cloud(path), TETRA[[0, 2, 1, 3]])


def test_ascii_stl(tmp_path):
    facets = ""
    for face in TETRA_FACES:
        corners = "".join(
            f"      vertex {num(x)} {num(y)} {num(z)}\n" for x, y, z in FAR[list(face)]
        )
        facets += f"  facet normal 0 0 1\n    outer loop\n{corners}    endloop\n  endfacet\n"
    path = tmp_path / "part.STL"
    path.write_text(f"solid part\n{facets}endsolid part\n")
    assert_bitwise_equal(read_point_cloud(path), FAR[[0, 2, 1, 3]])


def test_obj_vertices_including_unused_ones_and_colours(tmp_path):
    path = tmp_path / "mesh.obj"
    lines = ["# obj", "mtllib m.mtl", "o part"]
    lines += [f"v {num(x)} {num(y)} {num(z)} 0.5 0.5 0.5" for x, y, z in FAR]
    lines += [
        "vn 0 0 1",
        "vt 0 0",
        "vt 1 0",
        "vt 0 1",
        "f 1/1/1 2/2/1 3/3/1",
        "f 1/2/1 3/1/1 4/3/1",
    ]
    path.write_text("\n".join(lines) + "\n")
    assert_bitwise_equal(read_point_cloud(path), FAR)


@pytest.mark.parametrize(
    "header",
    ["OFF\n# counts\n4 4 6\n", "OFF 4 4 6\n", "COFF\n4 4 0\n", "4 4 0\n"],
    ids=["plain", "counts-on-keyword-line", "colour", "no-keyword"],
)
def test_off(tmp_path, header):
    vertices = "".join(f"{num(x)} {num(y)} {num(z)} 255 0 0 255\n" for x, y, z in FAR[:4])
    faces = "".join(f"3 {a} {b} {c}\n" for a, b, c in TETRA_FACES)
    path = tmp_path / "tetra.off"
    path.write_text(header + vertices + faces)
    assert_bitwise_equal(read_point_cloud(path), FAR[:4])


def test_off_agrees_with_datasets_load_mesh(tmp_path):
    pytest.importorskip("trimesh")
    from skst3d.datasets import load_mesh

    path = tmp_path / "tetra.off"
    body = "".join(f"{num(x)} {num(y)} {num(z)}\n" for x, y, z in TETRA) + "".join(
        f"3 {a} {b} {c}\n" for a, b, c in TETRA_FACES
    )
    path.write_text("OFF\n4 4 0\n" + body)
    assert_bitwise_equal(read_point_cloud(path), load_mesh(path)[0])


# --------------------------------------------------------------------------- #
# write_point_cloud
# --------------------------------------------------------------------------- #


def test_write_far_coordinates_as_double_and_round_trip(tmp_path):
    assert not np.array_equal(FAR.astype(np.float32), FAR)  # float32 would damage them
    path = tmp_path / "far.ply"
    write_point_cloud(path, FAR)
    types, records = parse_binary_ply(path)
    assert types == {"x": "double", "y": "double", "z": "double"}
    assert_bitwise_equal(np.column_stack([records[a] for a in "xyz"]), FAR)
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_write_float32_exact_coordinates_as_float(tmp_path):
    points = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    path = tmp_path / "f32.ply"
    write_point_cloud(path, points.astype(np.float64))
    types, _ = parse_binary_ply(path)
    assert types == {"x": "float", "y": "float", "z": "float"}
    assert_bitwise_equal(read_point_cloud(path), points.astype(np.float64))


def test_write_fields_and_read_them_back(tmp_path):
    rng = np.random.default_rng(1)
    scores = rng.normal(size=7)
    scores[3] = np.nan  # a score may be missing
    mask = np.arange(7) % 2 == 0
    labels = np.arange(7) * 1000
    ids = np.arange(7, dtype=np.int64) + 2**40  # not exact in float32
    path = tmp_path / "scored.ply"
    write_point_cloud(path, FAR, anomaly=scores, defect=mask, label=labels, point_id=ids)
    types, records = parse_binary_ply(path)
    assert list(types) == ["x", "y", "z", "anomaly", "defect", "label", "point_id"]
    assert [types[n] for n in ("anomaly", "defect", "label", "point_id")] == [
        "float",
        "float",
        "float",
        "double",
    ]
    np.testing.assert_array_equal(records["anomaly"], scores.astype(np.float32))
    np.testing.assert_array_equal(records["defect"], mask.astype(np.float32))
    np.testing.assert_array_equal(records["label"], labels)
    np.testing.assert_array_equal(records["point_id"], ids)
    assert_bitwise_equal(read_point_cloud(path), FAR)


def test_written_fields_read_by_plyfile(tmp_path):
    plyfile = pytest.importorskip("plyfile")
    path = tmp_path / "scored.ply"
    write_point_cloud(path, FAR, anomaly=np.linspace(0, 1, 7), defect=np.arange(7) > 4)
    vertex = plyfile.PlyData.read(str(path))["vertex"]
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "anomaly", "defect"]
    np.testing.assert_array_equal(vertex["x"], FAR[:, 0])
    np.testing.assert_array_equal(vertex["anomaly"], np.linspace(0, 1, 7).astype(np.float32))
    np.testing.assert_array_equal(vertex["defect"], [0, 0, 0, 0, 0, 1, 1])


def test_write_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.ply"
    path.write_text("old")
    write_point_cloud(str(path), [[1, 2, 3]])
    assert os.listdir(tmp_path) == ["out.ply"]
    assert_bitwise_equal(read_point_cloud(path), [[1, 2, 3]])


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.ply"
    path.write_text("old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_point_cloud(path, FAR)
    assert os.listdir(tmp_path) == ["out.ply"]
    assert path.read_text() == "old"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_written_file_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_point_cloud(tmp_path / "p.ply", [[0, 0, 0]])
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "p.ply").st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("points", "fields", "error", "message"),
    [
        ([[1, 2]], {}, ValueError, r"points must have shape \(n, 3\), got \(1, 2\)"),
        (np.zeros((0, 3)), {}, ValueError, "no points to write"),
        (
            [[0, 0, 0], [1, np.nan, 2]],
            {},
            ValueError,
            r"point 1 \(counting from 0\) has a non-finite coordinate \(1.0, nan, 2.0\)",
        ),
        ([[0, 0, np.inf]], {}, ValueError, "point 0 .* non-finite"),
        ([["a", "b", "c"]], {}, TypeError, "points must hold numbers"),
        ([[0, 0, 0]], {"X": [1]}, ValueError, "field name 'X' clashes with the coordinates"),
        (
            [[0, 0, 0]],
            {"bad name": [1]},
            ValueError,
            "field name 'bad name' is not a PLY property name",
        ),
        ([[0, 0, 0]], {"1st": [1]}, ValueError, "field name '1st' is not a PLY property name"),
        ([[0, 0, 0]], {"s": [1, 2]}, ValueError, "field 's' has 2 values for 1 points"),
        ([[0, 0, 0]], {"s": [[1]]}, ValueError, r"field 's' must be 1-D.*\(1, 1\)"),
        ([[0, 0, 0]], {"s": ["high"]}, TypeError, "field 's' must hold numbers or booleans"),
    ],
)
def test_write_errors_name_the_file(tmp_path, points, fields, error, message):
    path = tmp_path / "bad.ply"
    with pytest.raises(error, match=r"bad\.ply: " + message):
        write_point_cloud(path, points, **fields)
    assert os.listdir(tmp_path) == []


def test_write_needs_ply_extension_and_an_existing_folder(tmp_path):
    with pytest.raises(ValueError, match=r"out\.pcd: write_point_cloud writes PLY files"):
        write_point_cloud(tmp_path / "out.pcd", [[0, 0, 0]])
    with pytest.raises(FileNotFoundError, match=r"out\.ply: the folder .*missing does not exist"):
        write_point_cloud(tmp_path / "missing" / "out.ply", [[0, 0, 0]])
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        write_point_cloud(42, [[0, 0, 0]])


# --------------------------------------------------------------------------- #
# exactness on random clouds
# --------------------------------------------------------------------------- #

finite_up_to_1e9 = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)


@settings(deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.just(3)), elements=finite_up_to_1e9))
def test_random_clouds_round_trip_exactly_through_ply_xyz_and_npy(points):
    with tempfile.TemporaryDirectory() as folder:
        ply, xyz, npy = (os.path.join(folder, "cloud" + e) for e in (".ply", ".xyz", ".npy"))
        write_point_cloud(ply, points)
        with open(xyz, "w") as fh:
            fh.writelines(" ".join(repr(float(v)) for v in row) + "\n" for row in points)
        np.save(npy, points)
        for path in (ply, xyz, npy):
            assert_bitwise_equal(read_point_cloud(path), points)


# --------------------------------------------------------------------------- #
# list_point_cloud_files
# --------------------------------------------------------------------------- #


@pytest.fixture
def scan_tree(tmp_path):
    for name in ["b.ply", "a.XYZ", "notes.md", ".hidden.ply", "._b.ply", "sub/c.pcd", "sub/d.txt",
                 "sub/deeper/e.npy", ".git/f.ply"]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


def relative(paths, root):
    return [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]


def test_list_point_cloud_files_in_a_folder(scan_tree):
    assert relative(list_point_cloud_files(scan_tree), scan_tree) == ["a.XYZ", "b.ply"]


def test_list_point_cloud_files_recursive(scan_tree):
    found = list_point_cloud_files([scan_tree], recursive=True)
    assert relative(found, scan_tree) == [
        "a.XYZ",
        "b.ply",
        "sub/c.pcd",
        "sub/d.txt",
        "sub/deeper/e.npy",
    ]


def test_list_point_cloud_files_mixes_files_and_folders_without_duplicates(scan_tree):
    found = list_point_cloud_files(
        [str(scan_tree / "sub" / "d.txt"), scan_tree / "sub", scan_tree / "b.ply"]
    )
    assert relative(found, scan_tree) == ["b.ply", "sub/c.pcd", "sub/d.txt"]


def test_list_point_cloud_files_errors(scan_tree):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ply: no such file or directory"):
        list_point_cloud_files([scan_tree / "b.ply", scan_tree / "nowhere.ply"])
    with pytest.raises(
        ValueError, match=r"notes\.md: unsupported file extension '\.md'; supported: \.ply"
    ):
        list_point_cloud_files([scan_tree / "notes.md"])
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        list_point_cloud_files([scan_tree, 3])
    with pytest.raises(TypeError, match="iterable of paths, got int"):
        list_point_cloud_files(3)


# --------------------------------------------------------------------------- #
# errors: each names the file and what is wrong with it
# --------------------------------------------------------------------------- #


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gone\.ply: no such file or directory"):
        read_point_cloud(tmp_path / "gone.ply")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder, not a file"):
        read_point_cloud(tmp_path)


def test_path_of_the_wrong_type():
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got list"):
        read_point_cloud(["scan.ply"])


@pytest.mark.parametrize("extension", POINT_CLOUD_EXTENSIONS)
def test_empty_file(tmp_path, extension):
    path = tmp_path / f"empty{extension}"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"empty{extension}: the file is empty")):
        read_point_cloud(path)


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    path = tmp_path / "scan.las"
    path.write_bytes(b"LASF")
    with pytest.raises(
        ValueError,
        match=r"scan\.las: unsupported file extension '\.las'; supported: \.ply, \.pcd, .*\.off",
    ):
        read_point_cloud(path)


def test_truncated_binary_ply(tmp_path):
    points = np.random.default_rng(2).normal(size=(4096, 3)).astype("<f4")
    data = points.tobytes()[: 1022 * 12 + 5]  # 1022 whole vertices and a piece of the next
    path = write_ply(
        tmp_path / "scan.ply",
        "binary_little_endian",
        [("vertex", 4096, ["float x", "float y", "float z"])],
        data,
    )
    with pytest.raises(
        ValueError,
        match=r"scan\.ply: binary PLY truncated: expected 4096 vertices, the file ends after 1022",
    ):
        read_point_cloud(path)


def test_truncated_binary_ply_with_list_properties(tmp_path):
    body = (
        struct.pack("<fffB", 1, 2, 3, 2)
        + struct.pack("<ii", 0, 1)
        + struct.pack("<fffB", 4, 5, 6, 2)
        + b"\0\0"
    )
    path = write_ply(
        tmp_path / "lists.ply",
        "binary_little_endian",
        [("vertex", 3, ["float x", "float y", "float z", "list uchar int tags"])],
        body,
    )
    with pytest.raises(
        ValueError,
        match=r"lists\.ply: binary PLY truncated: expected 3 vertices, the file ends after 1",
    ):
        read_point_cloud(path)


def test_truncated_binary_ply_before_the_vertices(tmp_path):
    path = write_ply(
        tmp_path / "early.ply",
        "binary_little_endian",
        [("camera", 2, ["double focal"]), ("vertex", 1, ["float x", "float y", "float z"])],
        b"\0" * 8,
    )
    with pytest.raises(
        ValueError,
        match=r"early\.ply: binary PLY truncated: expected 2 'camera' rows, the file ends after 1",
    ):
        read_point_cloud(path)


def test_truncated_ascii_ply(tmp_path):
    path = write_ply(
        tmp_path / "short.ply",
        "ascii",
        [("vertex", 5, ["float x", "float y", "float z"])],
        "1 2 3\n4 5 6\n",
    )
    with pytest.raises(
        ValueError, match=r"short\.ply: ascii PLY truncated: expected 5 vertices, found 2"
    ):
        read_point_cloud(path)


def test_ascii_ply_non_numeric_value_names_the_line(tmp_path):
    path = write_ply(
        tmp_path / "bad.ply",
        "ascii",
        [("vertex", 2, ["float x", "float y", "float z"])],
        "1 2 3\n4 five 6\n",
    )
    # 8 header lines (ply, format, comment, element, 3 properties, end_header): line 10.
    with pytest.raises(ValueError, match=r"bad\.ply: line 10: 'five' in column 2 is not a number"):
        read_point_cloud(path)


def test_not_a_ply_file(tmp_path):
    path = tmp_path / "fake.ply"
    path.write_text("solid mesh\n")
    with pytest.raises(ValueError, match=r"fake\.ply: not a PLY file"):
        read_point_cloud(path)


def test_ply_header_without_end(tmp_path):
    path = tmp_path / "open.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n")
    with pytest.raises(ValueError, match=r"open\.ply: PLY header has no end_header line"):
        read_point_cloud(path)


def test_ply_with_unknown_format(tmp_path):
    path = write_ply(tmp_path / "fmt.ply", "binary", [("vertex", 1, ["float x"])], b"")
    with pytest.raises(ValueError, match=r"fmt\.ply: unknown PLY format 'binary 1\.0'"):
        read_point_cloud(path)


def test_ply_header_with_unknown_type(tmp_path):
    path = write_ply(tmp_path / "t.ply", "ascii", [("vertex", 1, ["float128 x"])], "1\n")
    with pytest.raises(
        ValueError, match=r"t\.ply: PLY header line 5: unknown property type 'float128'"
    ):
        read_point_cloud(path)


def test_ply_without_vertex_element(tmp_path):
    path = write_ply(
        tmp_path / "faces.ply",
        "ascii",
        [("face", 1, ["list uchar int vertex_indices"])],
        "3 0 1 2\n",
    )
    with pytest.raises(
        ValueError, match=r"faces\.ply: PLY file has no 'vertex' element \(elements: face\)"
    ):
        read_point_cloud(path)


def test_ply_without_z(tmp_path):
    path = write_ply(
        tmp_path / "flat.ply",
        "ascii",
        [("vertex", 1, ["float x", "float y", "float intensity"])],
        "1 2 3\n",
    )
    with pytest.raises(
        ValueError,
        match=r"flat\.ply: PLY vertex element has no z property \(properties: x, y, intensity\)",
    ):
        read_point_cloud(path)


def test_ply_with_zero_vertices(tmp_path):
    path = write_ply(
        tmp_path / "none.ply",
        "binary_little_endian",
        [("vertex", 0, ["float x", "float y", "float z"])],
        b"",
    )
    with pytest.raises(ValueError, match=r"none\.ply: no points"):
        read_point_cloud(path)


def test_truncated_binary_pcd(tmp_path):
    path = tmp_path / "cut.pcd"
    data = np.zeros((10, 3), "<f4").tobytes()[:40]
    path.write_bytes(pcd_header("xyz", [4] * 3, "FFF", [1] * 3, 10, "binary").encode() + data)
    with pytest.raises(
        ValueError,
        match=r"cut\.pcd: binary PCD truncated: expected 10 points, the file ends after 3",
    ):
        read_point_cloud(path)


def test_truncated_ascii_pcd(tmp_path):
    path = tmp_path / "cut.pcd"
    path.write_text(pcd_header("xyz", [4] * 3, "FFF", [1] * 3, 3, "ascii") + "1 2 3\n")
    with pytest.raises(
        ValueError, match=r"cut\.pcd: ascii PCD truncated: expected 3 points, found 1"
    ):
        read_point_cloud(path)


def test_pcd_without_z(tmp_path):
    path = tmp_path / "xy.pcd"
    path.write_text(pcd_header(["x", "y", "rgb"], [4] * 3, "FFU", [1] * 3, 1, "ascii") + "1 2 3\n")
    with pytest.raises(ValueError, match=r"xy\.pcd: PCD file has no z field \(fields: x, y, rgb\)"):
        read_point_cloud(path)


def test_organized_pcd_with_nan_names_the_point(tmp_path):
    path = tmp_path / "kinect.pcd"
    path.write_text(
        pcd_header("xyz", [4] * 3, "FFF", [1] * 3, 3, "ascii") + "1 2 3\nnan nan nan\n4 5 6\n"
    )
    with pytest.raises(
        ValueError,
        match=r"kinect\.pcd: point 1 \(counting from 0\) has a non-finite coordinate "
        r"\(nan, nan, nan\)",
    ):
        read_point_cloud(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("two.xyz", "1 2 3\n4 5\n", "line 2: 2 columns, expected at least 3"),
        ("narrow.txt", "# x y\n1 2\n", "line 2: 2 numeric columns, expected 3"),
        ("word.xyz", "1 2 3\n\n4 abc 6\n", "line 3: 'abc' in column 2 is not a number"),
        (
            "comma.csv",
            "x;y;z\n1;2;3\n1,5;2;3\n",
            r"line 3: '1,5' in column 1 is not a number \(decimal commas",
        ),
        ("gap.csv", "x,y,z\n1,2,3\n4,,6\n", "line 3: '' in column 2 is not a number"),
        ("header.csv", "x,y,z\n", r"no points \(a header line and no data\)"),
        ("comments.xyz", "# nothing\n\n", r"no points \(only comments or blank lines\)"),
        (
            "inf.txt",
            "1 2 3\n4 5 inf\n",
            r"point 1 \(counting from 0\) has a non-finite coordinate \(4.0, 5.0, inf\)",
        ),
        (
            "huge.txt",
            "1e400 2 3\n",
            r"point 0 \(counting from 0\) has a non-finite coordinate \(inf, 2.0, 3.0\)",
        ),
    ],
)
def test_bad_text_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(name) + ": " + message):
        read_point_cloud(path)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 3)), "no points"),
        (np.zeros((4, 2)), r"the array has shape \(4, 2\); expected \(n, 3\)"),
        (np.zeros(3), r"the array has shape \(3,\)"),
        (np.array([["a", "b", "c"]]), "the array holds <U1 values, not numbers"),
        (
            np.array([[0, 0, 0], [1, 2, np.nan]]),
            r"point 1 \(counting from 0\) has a non-finite coordinate",
        ),
    ],
)
def test_bad_npy_files(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=r"bad\.npy: " + message):
        read_point_cloud(path)


def test_corrupt_npy_and_npz(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"junk\.npy: not a readable \.npy file"):
        read_point_cloud(tmp_path / "junk.npy")
    np.savez(tmp_path / "none.npz")
    with pytest.raises(ValueError, match=r"none\.npz: the \.npz archive holds no arrays"):
        read_point_cloud(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz file"):
        read_point_cloud(tmp_path / "junk.npz")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.stl", b"\0" * 80 + struct.pack("<I", 0)),
        ("empty_ascii.stl", b"solid nothing\nendsolid nothing\n"),
        ("empty.obj", b"# no vertices\nmtllib a.mtl\n"),
        ("empty.off", b"OFF\n0 0 0\n"),
    ],
)
def test_mesh_without_vertices(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(name) + ": the mesh has no vertices"):
        read_point_cloud(path)


def test_truncated_meshes(tmp_path):
    stl = tmp_path / "cut.stl"
    stl.write_bytes(b"\0" * 80 + struct.pack("<I", 10) + b"\0" * 120)
    with pytest.raises(
        ValueError,
        match=r"cut\.stl: binary STL truncated: expected 10 triangles, the file ends after 2",
    ):
        read_point_cloud(stl)
    off = tmp_path / "cut.off"
    off.write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n")
    with pytest.raises(
        ValueError, match=r"cut\.off: OFF file truncated: expected 4 vertices, found 2"
    ):
        read_point_cloud(off)
    off = tmp_path / "comments.off"
    off.write_text("# only a comment\n")
    with pytest.raises(ValueError, match=r"comments\.off: OFF file holds only comments"):
        read_point_cloud(off)
    off.write_text("OFF\nfour 4 0\n")
    with pytest.raises(ValueError, match=r"comments\.off: line 2: expected the OFF vertex count"):
        read_point_cloud(off)
    obj = tmp_path / "bad.obj"
    obj.write_text("v 0 0 0\nvn 0 0 1\nv 1 0\n")
    with pytest.raises(ValueError, match=r"bad\.obj: line 3: 3 columns, expected at least 4"):
        read_point_cloud(obj)


def test_module_imports_without_torch():
    code = "import sys, skst3d.io; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
