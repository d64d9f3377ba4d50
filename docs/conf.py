"""Sphinx configuration of the skst3d documentation.

Build with ``python -m sphinx -b html docs docs/_build/html`` (needs ``pip install skst3d[docs]``).
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import skst3d  # noqa: E402

project = "skst3d"
author = "skst3d developers"
copyright = "skst3d developers"
release = skst3d.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

# numpydoc renders the Parameters/Returns sections; one stub page per class member would
# flood the API page, so members are documented inline.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
autosummary_generate = False
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
# Documented without importing the optional extras at build time.
autodoc_mock_imports = ["pykeops", "trimesh", "tifffile", "PIL"]

# Links to other projects' docs need the network: opt in with SKST3D_DOCS_INTERSPHINX=1.
if os.environ.get("SKST3D_DOCS_INTERSPHINX"):
    extensions.append("sphinx.ext.intersphinx")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "torch": ("https://pytorch.org/docs/stable", None),
    "joblib": ("https://joblib.readthedocs.io/en/stable", None),
}
# Offline builds must not fail (or wait) on unreachable inventories.
intersphinx_timeout = 5


def _skip_metadata_routing(app, what, name, obj, skip, options):
    """scikit-learn's generated set_*_request methods are not skst3d API."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_routing)

templates_path = []
exclude_patterns = ["_build"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"

html_theme = "alabaster"
html_title = f"skst3d {release}"
html_static_path = []


# --------------------------------------------------------------------------------------------
# benchmarks/RESULTS.md (our measured results) is written by the benchmark scripts in
# Markdown; it is converted here to reStructuredText (_generated/measured_results.rst, included
# by results.rst) so that the docs need no Markdown extension. Absent file: a placeholder.
# --------------------------------------------------------------------------------------------
import re  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_RESULTS_MD = os.path.join(_HERE, "..", "benchmarks", "RESULTS.md")
_GENERATED = os.path.join(_HERE, "_generated")
_ADORN = {1: "=", 2: "-", 3: "~", 4: "^"}


def _inline(text):
    text = re.sub(r"!\[([^\]]*)\]\(([^)]*)\)", r"[figure: \2]", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"`\1 <\2>`__", text)
    text = re.sub(r"(?<!`)`([^`]+)`(?![`_])", r"``\1``", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"**\1**", text)
    return text.rstrip().rstrip("\\").rstrip()


def _table(rows):
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    cells = [r for r in cells if not all(re.fullmatch(r":?-{3,}:?", c) for c in r if c)]
    out = [".. list-table::", "   :header-rows: 1", ""]
    width = max(len(r) for r in cells)
    for r in cells:
        r = r + [""] * (width - len(r))
        out.append("   * - " + (_inline(r[0]) or "\\"))
        out += ["     - " + (_inline(c) or "\\") for c in r[1:]]
    return out + [""]


def markdown_to_rst(text, top_level=2):
    """A small Markdown subset (headings, pipe tables, paragraphs, code spans) to rST."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    lines, out, table = text.splitlines(), [], []
    for line in lines + [""]:
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        if table:
            out += [""] + _table(table)
            table = []
        heading = re.match(r"^(#+)\s+(.*)$", line)
        if heading and len(heading.group(1)) == 1:
            continue  # the document title: the including page gives the section
        if heading:
            level = min(len(heading.group(1)) - 2 + top_level, 4)
            title = _inline(heading.group(2))
            out += ["", title, _ADORN[max(level, 1)] * max(len(title), 3), ""]
        elif line.endswith("  ") or line.endswith("\\"):
            out += [_inline(line), ""]  # a Markdown hard line break: its own paragraph
        else:
            out.append(_inline(line))
    return "\n".join(out) + "\n"


def _write_measured_results():
    os.makedirs(_GENERATED, exist_ok=True)
    target = os.path.join(_GENERATED, "measured_results.rst")
    if os.path.exists(_RESULTS_MD):
        with open(_RESULTS_MD, encoding="utf-8") as fh:
            body = markdown_to_rst(fh.read(), top_level=3)
    else:
        body = (
            "*No measured results yet:* ``benchmarks/RESULTS.md`` does not exist in this source tree. "
            "Run the scripts in ``benchmarks/`` (e.g. ``python benchmarks/mvtec3d.py``) to write it, "
            "then rebuild the documentation.\n"
        )
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(body)


_write_measured_results()
