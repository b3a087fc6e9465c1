"""Every repository path the documentation mentions exists in a clone.

Scans the README, docs/, benchmarks/README.md, the notebooks (markdown and code) and lib's
docstrings and comments for repo-relative paths (``lib/...``, ``docs/...``, ``results/...``,
top-level files) and fails on any that a fresh clone lacks. Exempt: placeholders (``<folder>``,
``{name}``, globs), git-ignored paths (made by a run: ``.venv/``, ``weights/``, ``data/cache/``)
and run folders (``runs/``).
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from lib import paths

ROOT = paths.repo_root()
TOP_FOLDERS = ("lib", "notebooks", "data", "docs", "tests", "benchmarks", "results", ".ci")
TOP_FILES = ("README.md", "Makefile", "run_all.py", "requirements.txt", "pyproject.toml",
             "environment.yml", "LICENSE", "CITATION.cff", "conftest.py")
PATH = re.compile(r"(?<![\w./$~-])((?:%s)/[\w./*<>{}…+-]*[\w*>}/]|(?:%s)(?!\w|\.\w))" % (
    "|".join(re.escape(f) for f in TOP_FOLDERS), "|".join(re.escape(f) for f in TOP_FILES)))
PLACEHOLDER = re.compile(r"[<>{}*…]|\bNN\b|/X+\b")


def documents() -> dict[str, str]:
    """{name: text} of everything a reader reads."""
    texts = {p.relative_to(ROOT).as_posix(): p.read_text()
             for p in [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                       *sorted((ROOT / "docs").glob("*.md"))] if p.is_file()}
    for nb in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        texts[nb.relative_to(ROOT).as_posix()] = "\n".join("".join(c["source"]) for c in cells)
    for py in sorted((ROOT / "lib").rglob("*.py")):    # docstrings and comments
        source = py.read_text()
        docs = re.findall(r'"""(.*?)"""', source, flags=re.S) + re.findall(r"#(.*)", source)
        texts[py.relative_to(ROOT).as_posix()] = "\n".join(docs)
    return texts


def ignored(rel: str) -> bool:
    """Git-ignored, as a file or (a pattern like ``data/cache/`` matches only those) a folder
    that does not exist yet."""
    return any(subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", p]).returncode == 0
               for p in (rel, rel + "/"))


def mentioned_paths(text: str) -> set[str]:
    found = set()
    for match in PATH.finditer(text):
        rel = match.group(1).rstrip(".,;:)/")
        if not PLACEHOLDER.search(rel):
            found.add(rel)
    return found


def test_the_scanner_finds_paths_and_skips_placeholders():
    text = "see docs/method.md, `lib/ngd.py`; runs/<folder>/x and results/notebooks/<name>.ipynb; README.md."
    assert mentioned_paths(text) == {"docs/method.md", "lib/ngd.py", "README.md"}


def test_every_mentioned_path_exists():
    missing = []
    for name, text in documents().items():
        for rel in sorted(mentioned_paths(text)):
            if not (ROOT / rel).exists() and not ignored(rel):
                missing.append(f"{name}: {rel}")
    assert not missing, "paths mentioned but absent from the repository:\n" + "\n".join(missing)


def test_the_protocol_lists_the_deviations_notebook_99_prints():
    """docs/protocol.md's deviations table is lib.paper.DEVIATIONS, row for row."""
    from lib.run.report import deviations_table

    assert deviations_table() in (ROOT / "docs" / "protocol.md").read_text(), (
        "docs/protocol.md's deviations differ from lib.paper.DEVIATIONS: paste "
        "`python -m lib.cli report --deviations` into it")


def test_the_protocol_lists_the_differences_from_the_authors_code():
    """docs/protocol.md's table of differences from the authors' code is
    lib.paper.CODE_DIFFERENCES: fourteen, numbered, each marked."""
    from lib.paper import CHANGES_RESULTS, CODE_DIFFERENCES, COSMETIC
    from lib.run.report import code_differences_table

    assert len(CODE_DIFFERENCES) == 14
    assert all(mark in (CHANGES_RESULTS, COSMETIC) for *_, mark in CODE_DIFFERENCES)
    assert code_differences_table() in (ROOT / "docs" / "protocol.md").read_text(), (
        "docs/protocol.md's differences from the authors' code differ from "
        "lib.paper.CODE_DIFFERENCES: paste `python -m lib.cli report --deviations` into it")


def _numbers_in(obj) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers_in(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers_in(v)]
    return [float(obj)] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


def test_numbers_quoted_from_the_published_run_are_in_results():
    """A paragraph of the docs that quotes "the published run" quotes numbers results/ holds
    (each number with three or more decimals must round from a value of results/**/*.json)."""
    values = [x for path in (ROOT / "results").rglob("*.json")
              for x in _numbers_in(json.loads(path.read_text()))]
    stale = []
    for path in [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                 *sorted((ROOT / "docs").glob("*.md"))]:
        for paragraph in re.split(r"\n\s*\n", path.read_text()):
            if "published run" not in paragraph:
                continue
            for quoted in re.findall(r"(?<![\d.])\d+\.\d{3,}(?![\d.])", paragraph):
                places = len(quoted.split(".")[1])
                if not any(round(v, places) == float(quoted) for v in values):
                    stale.append(f"{path.relative_to(ROOT)}: {quoted}")
    assert not stale, "numbers said to come from the published run that results/ lacks: " + ", ".join(stale)
