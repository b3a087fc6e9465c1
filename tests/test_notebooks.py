"""Notebook hygiene: anatomy, parameters, stored outputs, no run-specific residue."""
from __future__ import annotations

import ast
import json
import re
import subprocess

import pytest

from lib import paths
from lib.run import runner

NOTEBOOK_DIR = paths.repo_root() / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
SMOKE_DEFAULTS = {"PROFILE": "smoke", "RUN_DIR": "", "SEED": 0, "DEVICE": "auto", "OVERRIDES": {}}
ABSOLUTE_PATH = re.compile(r"(/work/|/home/|/root/|/tmp/|/Users/|[A-Z]:\\\\)")


def load(path):
    return json.loads(path.read_text())


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_runner_list_equals_the_folder():
    assert [p.stem for p in NOTEBOOKS] == runner.NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
class TestNotebook:
    def test_banner_then_title_and_sections(self, path):
        from lib.run import notebooks as nbfiles

        cells = load(path)["cells"]
        assert cells[0]["metadata"].get("tags") == [nbfiles.BANNER_TAG], "make golden adds the banner"
        assert source(cells[0]) == nbfiles.smoke_banner(path.stem)
        assert cells[1]["cell_type"] == "markdown"
        assert source(cells[1]).startswith(f"# {path.stem[:2]} · ")
        markdown = "\n".join(source(c) for c in cells if c["cell_type"] == "markdown")
        assert "## Summary" in markdown and "## Provenance" in markdown

    def test_one_parameters_cell_with_smoke_literals(self, path):
        cells = load(path)["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1
        values = {}
        for node in ast.parse(source(tagged[0])).body:
            assert isinstance(node, ast.Assign), "parameters cell holds assignments only"
            values[node.targets[0].id] = ast.literal_eval(node.value)
        assert values == SMOKE_DEFAULTS
        assert not any("injected-parameters" in c.get("metadata", {}).get("tags", [])
                       for c in cells)

    def test_setup_follows_parameters(self, path):
        code = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", [])
        assert "lib.run.context.setup(PROFILE, RUN_DIR, SEED, DEVICE, OVERRIDES" in source(code[1])
        assert f'notebook="{path.stem}"' in source(code[1])

    def test_outputs_kept_and_counts_in_order(self, path):
        code = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
        assert any(c["outputs"] for c in code), "golden outputs are missing"
        assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
        assert any("NBVAL_CHECK_OUTPUT" in source(c) for c in code)

    def test_no_papermill_residue(self, path):
        nb = load(path)
        assert "papermill" not in nb["metadata"]
        for cell in nb["cells"]:
            assert "papermill" not in cell.get("metadata", {})
            assert "execution" not in cell.get("metadata", {})

    def test_no_absolute_paths_or_errors_in_outputs(self, path):
        for cell in load(path)["cells"]:
            for out in cell.get("outputs", []):
                assert out["output_type"] != "error", f"stored error: {out.get('ename')}"
                text = json.dumps({k: v for k, v in out.get("data", {}).items()
                                   if not k.startswith("image/")}) + "".join(out.get("text", ""))
                assert not ABSOLUTE_PATH.search(text), text[:200]

    def test_goldens_ran_the_code_of_head(self, path):
        """The goldens record the commit whose code made them; lib/ and this notebook's code
        cells must be unchanged between that commit and HEAD (a later commit that only adds
        the goldens is fine). Otherwise: `make golden` on a clean tree, then commit."""
        from lib.run import notebooks as nbfiles

        commit = nbfiles.golden_commit(load(path))
        assert commit, f"{path.name} records no golden commit: run `make golden`"
        root = paths.repo_root()
        git = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True,
                                        text=True)
        if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            if git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
                pytest.skip(f"shallow clone: the golden commit {commit[:12]} is not fetched")
            pytest.fail(f"{path.name}'s golden commit {commit[:12]} is not in this history")
        changed = git("diff", "--name-only", commit, "HEAD", "--", "lib").stdout.split()
        assert not changed, (f"lib/ changed since the goldens' commit {commit[:12]}: "
                             f"{changed[:5]}; run `make golden` on a clean tree and commit")
        then = json.loads(git("show", f"{commit}:notebooks/{path.name}").stdout)
        head = json.loads(git("show", f"HEAD:notebooks/{path.name}").stdout)
        assert nbfiles.code_cells(then) == nbfiles.code_cells(head), (
            f"{path.name}'s code cells changed since the goldens' commit {commit[:12]}")

    def test_kernel_is_this_project(self, path):
        assert load(path)["metadata"]["kernelspec"]["name"] == runner.KERNEL_NAME


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pinned_config_is_the_current_smoke_profile(path):
    """Every setup cell pins a short echo of the smoke config (profile, overrides, the hash of
    the keys the notebook uses, those keys): a change of one of them needs `make golden`; a
    key the notebook does not use changes nothing. No device is pinned."""
    from lib.config import echo, resolve

    cells = [c for c in load(path)["cells"] if c["cell_type"] == "code"
             and "lib.run.context.setup(" in source(c)]
    assert len(cells) == 1, "one setup cell per notebook"
    text = "".join("".join(o.get("text", "")) for o in cells[0]["outputs"]
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")
    assert text.strip() == echo(resolve("smoke"), path.stem).strip(), (
        f"{path.name}'s pinned config echo differs from the smoke profile: run `make golden`")
    assert "device" not in text, "the echo never pins a device"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_has_a_caption_below_it(path):
    """A cell that saves a figure is followed by a markdown caption saying what the figure
    shows (not what to look for)."""
    cells = load(path)["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and "savefig(" in source(cell):
            below = cells[i + 1] if i + 1 < len(cells) else None
            assert below is not None and below["cell_type"] == "markdown" and \
                source(below).startswith("*Figure — "), f"cell {i} saves a figure without a caption"
            assert not re.search(r"\b(Look|look for|look at)\b", source(below)), (
                f"cell {i + 1}'s caption says what to look for; say what the figure shows")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_have_unique_ids(path):
    """nbformat 4.5 requires a unique id per cell (papermill warns, later versions refuse)."""
    ids = [c.get("id") for c in load(path)["cells"]]
    assert None not in ids and len(set(ids)) == len(ids)


BOOTSTRAPPING_PLOTS = {"barplot", "pointplot", "lineplot"}
"""seaborn plots whose default error bar is a bootstrap CI (a line plot's, where several y share an
x; so is a bar/point catplot's and a line relplot's)."""


def unseeded_bootstraps(code: str) -> list[str]:
    """The seaborn calls in `code` that draw a bootstrap interval without their own `seed`: their
    bars would depend on numpy's global random state, i.e. on whatever ran before them."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "sns"):
            continue
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        kind = kwargs.get("kind")
        kind = kind.value if isinstance(kind, ast.Constant) else None
        errorbar = kwargs.get("errorbar")
        if errorbar is not None:
            spec = errorbar.elts[0] if isinstance(errorbar, ast.Tuple) else errorbar
            bootstraps = isinstance(spec, ast.Constant) and spec.value == "ci"
        elif "estimator" in kwargs and isinstance(kwargs["estimator"], ast.Constant) \
                and kwargs["estimator"].value is None:
            bootstraps = False                              # no aggregation, no interval
        else:
            bootstraps = node.func.attr in BOOTSTRAPPING_PLOTS or (
                node.func.attr == "catplot" and kind in {"bar", "point"}) or (
                node.func.attr == "relplot" and kind == "line")
        if bootstraps and "seed" not in kwargs:
            found.append(ast.unparse(node)[:80])
    return found


def test_the_seed_check_sees_an_unseeded_bootstrap():
    assert unseeded_bootstraps('sns.catplot(data=t, x="m", y="a", kind="bar", errorbar=("ci", 95))')
    assert unseeded_bootstraps('sns.barplot(data=t, x="m", y="a")')
    assert not unseeded_bootstraps('sns.barplot(data=t, x="m", y="a", seed=0)')
    assert not unseeded_bootstraps('sns.barplot(data=t, x="m", y="a", errorbar="sd")')
    assert not unseeded_bootstraps('sns.relplot(data=t, x="f", y="p")')              # a scatter
    assert unseeded_bootstraps('sns.relplot(data=t, x="f", y="p", kind="line")')
    assert unseeded_bootstraps('sns.lineplot(data=t, x="f", y="p")')
    assert not unseeded_bootstraps('sns.lineplot(data=t, x="f", y="p", estimator=None)')
    assert not unseeded_bootstraps('sns.relplot(data=t, x="f", y="p", kind="line", seed=0)')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_bootstrap_error_bars_are_seeded(path):
    """A figure's bytes depend only on the run's numbers: seaborn's bootstrap intervals get their
    own seed (unseeded, they draw from numpy's global state, which moves with whatever the kernel
    computed before, so a resumed run drew different bars from the same numbers)."""
    for i, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] == "code":
            assert not unseeded_bootstraps(source(cell)), f"cell {i}: give the plot seed=0"
