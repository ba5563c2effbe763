"""In a notebook: the reports of fcgrad.check, of a derivation and of audit_code render as HTML tables.

``examples/check_in_a_notebook.ipynb`` is executed by a real Jupyter kernel (nbclient and ipykernel,
the ``test`` extra), and each of its three report cells must have produced ``text/html`` holding the
report's table, its verdict and, with matplotlib present, the figure as an inline PNG. It runs twice: with
the kernel started in ``examples/``, as Jupyter and ``jupyter nbconvert --execute`` start it (in the
notebook's folder), and with the kernel started in the repository's root.
"""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "check_in_a_notebook.ipynb"
KERNEL_TIMEOUT_S = 300  # JAX's import and compiles in a fresh kernel: about 15 s on a busy 2-core machine


KERNEL_FOLDERS = {"notebook-folder": NOTEBOOK.parent, "repository-root": ROOT}


@pytest.fixture(scope="module", params=list(KERNEL_FOLDERS))
def html_outputs(request) -> list[str]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    folder = {"metadata": {"path": KERNEL_FOLDERS[request.param]}}  # the kernel's working directory
    client = NotebookClient(nb, timeout=KERNEL_TIMEOUT_S, kernel_name="python3", resources=folder)
    client.execute()
    outputs = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            html = [o["data"]["text/html"] for o in cell.get("outputs", []) if "text/html" in o.get("data", {})]
            outputs.append("".join(html))
    return outputs


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.split("<img")[0])).replace("&#x27;", "'")


def test_a_check_report_renders_as_a_table_with_its_figure(html_outputs):
    html = html_outputs[0]
    assert html.count("<table>") == 3 and "<caption>gradients at the initial parameters" in html
    assert "OK: manual and JAX agree" in _text(html)
    assert 'src="data:image/png;base64,' in html  # matplotlib is in the test extra


def test_a_derivation_report_renders_its_terms_and_the_named_mistake(html_outputs):
    html = html_outputs[1]
    assert "<th>term</th><th>shape</th><th>end to end max|Δ|</th>" in html
    text = _text(html)
    assert "looks like a missing 1/N: manual is exactly 5 × JAX" in text
    assert "FAILED: 4 wrong term(s); origin(s): y" in text


def test_an_audit_code_report_renders_its_findings_and_the_drift(html_outputs):
    html = html_outputs[2]
    text = _text(html)
    assert "findings (origins)" in text and "tanh' written as 1 − y" in text
    assert 'src="data:image/png;base64,' in html
