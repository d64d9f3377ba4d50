"""benchmarks/make_results.py: the curated page keeps the listed sections, in order, and nothing else."""

import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")
sys.path.insert(0, os.path.abspath(BENCHMARKS))

import make_results  # noqa: E402


def block(name, body):
    return f"<!-- begin {name} -->\n## {name}\n\n{body}\n<!-- end {name} -->"


def test_page_keeps_listed_sections_in_order_and_drops_the_rest():
    listed = [name for name, _, _ in make_results.PAGE]
    text = "\n\n".join([block("old_experiment", "x"), block(listed[2], "third"), block(listed[0], "first"),
                        block("another_old_one", "y")])
    page = make_results.assemble(text)
    assert page.startswith(make_results.HEADER)
    assert page.index("first") < page.index("third")
    assert "old_experiment" not in page and "another_old_one" not in page
    assert make_results.sections(page).keys() == {listed[0], listed[2]}
    assert make_results.assemble(page) == page  # rebuilding the page changes nothing
