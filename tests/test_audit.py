"""The audit tool (``lib.audit``, ``ddcs-audit``): scores equal the pipeline's, bad inputs are
refused clearly with nothing written, the command and the tools notebook are wired up."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from lib import paths
from lib.audit import audit, cli, example
from lib.errors import ArtifactError, DataCorruptError, InputError, WeightsError
from lib.metrics.ddcs import ddcs
from lib.metrics.membership import membership_gap

ROOT = paths.repo_root()


# ------------------------------------------------------------------------------ helpers
def write_set(root: Path, images: dict[str, np.ndarray]) -> None:
    """``{"<class>/<name>.png": uint8 (H, W) or (H, W, 3)}`` as image files under ``root``."""
    for rel, img in images.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)


def random_sets(tmp_path: Path, counts: dict[str, tuple[int, int, int]], size: int = 8,
                seed: int = 0) -> tuple[Path, Path, Path]:
    """Members, reconstructions (noisy copies of some members and fresh images) and
    non-members per class: ``counts[class] = (members, reconstructions, non-members)``."""
    rng = np.random.default_rng(seed)
    sets = {"members": {}, "recons": {}, "nonmembers": {}}
    for c, (n_m, n_r, n_n) in counts.items():
        members = rng.integers(0, 256, (n_m, size, size), dtype=np.uint8)
        sets["members"].update({f"{c}/m{i:03d}.png": x for i, x in enumerate(members)})
        sets["nonmembers"].update({f"{c}/n{i:03d}.png": x for i, x in
                                   enumerate(rng.integers(0, 256, (n_n, size, size), dtype=np.uint8))})
        for i in range(n_r):
            if i % 2 == 0:   # a noisy copy of a member (an exact copy for the first)
                noise = 0 if i == 0 else rng.normal(0, 20, (size, size))
                x = np.clip(members[i % n_m] + noise, 0, 255).astype(np.uint8)
            else:
                x = rng.integers(0, 256, (size, size), dtype=np.uint8)
            sets["recons"][f"{c}/r{i:03d}.png"] = x
    folders = []
    for name, files in sets.items():
        write_set(tmp_path / name, files)
        folders.append(tmp_path / name)
    return tuple(folders)


def read_numpy(root: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(relative files, float64 [0, 1] flat images, class labels) read independently."""
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    images = np.stack([np.asarray(Image.open(root / f), dtype=np.float64).ravel() / 255.0
                       for f in files])
    classes = sorted({f.split("/")[0] for f in files})
    return files, images, np.array([classes.index(f.split("/")[0]) for f in files])


def pixel_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args + ["--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------ pixel
def test_pixel_scores_equal_ddcs_on_independent_distances(tmp_path, capsys):
    members, recons, _ = random_sets(tmp_path, {"a": (7, 6, 0), "b": (5, 9, 0), "c": (4, 3, 0)})
    (members / ".DS_Store").write_bytes(b"\x00junk")
    (members / "a" / "Thumbs.db").write_bytes(b"junk")
    (recons / "b" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["--members", str(members), "--reconstructions", str(recons),
                                    "--distance", "pixel", "--out", str(out)], capsys)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["audit.csv", "summary.json", "most_exposed.png", "report.md"])

    m_files, m_x, m_y = read_numpy(members)
    r_files, r_x, r_y = read_numpy(recons)
    ref = ddcs(pixel_matrix(r_x, m_x), r_y, m_y)
    table = pd.read_csv(out / "audit.csv", keep_default_na=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ddcs_best"] == pytest.approx(ref.best, rel=1e-9)
    assert summary["ddcs_avg"] == pytest.approx(ref.avg, rel=1e-9)
    assert summary["resilient_fraction"] == pytest.approx(ref.resilient_fraction)
    assert summary["n_members"] == 16 and summary["n_reconstructions"] == 18
    assert summary["ddcs_best"] > 1e7            # the exact copy: distance floored at 1e-8
    by_file = table.set_index("file").loc[m_files]
    np.testing.assert_allclose(by_file["ddcs_best"], ref.per_sample_best, rtol=1e-9)
    np.testing.assert_allclose(by_file["ddcs_avg"], ref.per_sample_avg, rtol=1e-9)
    np.testing.assert_array_equal(by_file["n_assigned"], ref.n_assigned)
    covered = ref.n_assigned > 0
    assert (by_file["nearest_reconstruction"][~covered] == "").all()
    assert (by_file["nearest_distance"][~covered] == "").all()
    np.testing.assert_allclose(by_file["nearest_distance"][covered].astype(float),
                               ref.min_distance[covered], rtol=1e-9, atol=1e-15)
    # sorted by ddcs_best descending, ties by class then file
    keys = list(zip(-table["ddcs_best"], table["class"], table["file"]))
    assert keys == sorted(keys)
    # non-image files skipped, counted and reported
    assert summary["skipped"]["members"]["count"] == 2
    assert summary["skipped"]["reconstructions"]["examples"] == ["b/notes.txt"]
    assert "Skipped (not images)" in (out / "report.md").read_text()
    assert "weak, weight-free baseline" in (out / "report.md").read_text()
    assert "skipped 3 non-image file(s)" in stdout


def test_class_blocks_in_bounded_memory_change_nothing(tmp_path):
    members, recons, _ = random_sets(tmp_path, {"a": (70, 60, 0), "b": (3, 4, 0)}, size=16)
    one = audit(members, recons, distance="pixel", progress=False)
    small = audit(members, recons, distance="pixel", memory_mb=1, progress=False)  # 42 a chunk
    pd.testing.assert_frame_equal(one.table, small.table)


def test_membership_test_is_the_pipelines(tmp_path):
    members, recons, nonmembers = random_sets(tmp_path, {"a": (6, 5, 6), "b": (4, 6, 4)})
    res = audit(members, recons, nonmembers, distance="pixel", n_permutations=200, seed=3,
                progress=False)
    m_files, m_x, m_y = read_numpy(members)
    r_files, r_x, r_y = read_numpy(recons)
    n_files, n_x, n_y = read_numpy(nonmembers)
    ref = membership_gap(pixel_matrix(r_x, m_x), pixel_matrix(r_x, n_x), r_y, m_y, n_y,
                         n_permutations=200, seed=3)
    s = res.summary
    assert s["gap"] == pytest.approx(ref.gap, rel=1e-9)
    assert s["p_value"] == ref.p_value and s["n_permutations"] == 200
    assert s["nonmember_ddcs_best"] == pytest.approx(ref.ddcs_nonmembers.best, rel=1e-9)
    np.testing.assert_allclose(res.scores.membership.null_gaps, ref.null_gaps, rtol=1e-9)
    assert not s["membership_test"]["subsampled"]


def test_unequal_classes_use_a_seeded_equal_subsample(tmp_path):
    members, recons, nonmembers = random_sets(tmp_path, {"a": (9, 5, 4), "b": (3, 6, 5)})
    res = audit(members, recons, nonmembers, distance="pixel", n_permutations=50, seed=1,
                progress=False)
    t = res.summary["membership_test"]
    assert t["subsampled"] and t["n_members"] == t["n_nonmembers"] == 4 + 3
    again = audit(members, recons, nonmembers, distance="pixel", n_permutations=50, seed=1,
                  progress=False)
    assert again.summary["gap"] == res.summary["gap"]
    assert res.summary["ddcs_best"] == pytest.approx(
        audit(members, recons, distance="pixel", progress=False).summary["ddcs_best"])


def test_grey_members_colour_reconstructions_and_size(tmp_path):
    rng = np.random.default_rng(0)
    write_set(tmp_path / "m", {f"a/{i}.png": rng.integers(0, 256, (8, 8), dtype=np.uint8)
                               for i in range(3)})
    write_set(tmp_path / "r", {"a/big.jpg": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                               "a/small.webp": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)})
    with pytest.raises(InputError, match=r"differ in size: .*(big\.jpg|m/a/0\.png).*--size"):
        audit(tmp_path / "m", tmp_path / "r", distance="pixel", progress=False)
    res = audit(tmp_path / "m", tmp_path / "r", distance="pixel", size=8, progress=False)
    assert res.summary["image_mode"] == "grey" and res.summary["image_size"] == [8, 8]
    assert res.reconstructions.images.shape == (2, 1, 8, 8)


# ------------------------------------------------------------------------------ d_P
@pytest.fixture(scope="module")
def tiny_p(tmp_path_factory, fmnist):
    """A perceptual network P trained for a few seconds, saved as a repository checkpoint."""
    return example.tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "perceptual.safetensors",
                                   fmnist, n=600, width=16)


def pipeline_ddcs(checkpoint: Path, members: torch.Tensor, member_labels, recons: torch.Tensor,
                  recon_labels):
    """DDCS under d_P as the pipeline's judge computes it (Judge.ddcs_of)."""
    from lib.artifacts import load_tensors
    from lib.metrics.evaluate import Judge
    from lib.stages.classifiers import classifier_from

    tensors, meta = load_tensors(checkpoint)
    perceptual = classifier_from(tensors, meta["arch"])
    labels = np.asarray(member_labels)
    judge = Judge(perceptual, perceptual, (members, labels, np.arange(len(labels))),
                  (members, labels, np.arange(len(labels))), sorted(set(labels.tolist())))
    return judge.ddcs_of(recons, recon_labels, "d_P")


@pytest.fixture(scope="module")
def dp_sets(fmnist):
    """Members (3 classes × 30 train images) and float reconstructions (noisy copies of some,
    noisy test images), 28×28 content in [-1, 1], as the pipeline holds them."""
    rng = np.random.default_rng(0)
    y_train, y_test = fmnist.train_labels.numpy(), fmnist.test_labels.numpy()
    idx = np.concatenate([np.flatnonzero(y_train == c)[:30] for c in (0, 5, 7)])
    ridx = np.concatenate([np.flatnonzero(y_train == c)[:30:2] for c in (0, 5, 7)])
    tidx = np.concatenate([np.flatnonzero(y_test == c)[:10] for c in (0, 5, 7)])
    raw = np.concatenate([fmnist.train_images[ridx].numpy(), fmnist.test_images[tidx].numpy()])
    noisy = np.clip(raw + rng.normal(0, 15, raw.shape), 0, 255) / 127.5 - 1.0
    recons = torch.from_numpy(noisy).float()[:, None]
    return (fmnist.train_images[idx], y_train[idx], recons,
            np.concatenate([y_train[ridx], y_test[tidx]]))


def test_perceptual_on_tensors_equals_the_pipelines_d_p(tiny_p, dp_sets):
    from lib.data.images import to_model_input

    members, y_m, recons, y_r = dp_sets
    x_m = to_model_input(members)                                 # 32×32, padded, [-1, 1]
    x_r = torch.nn.functional.pad(recons, (2, 2, 2, 2), value=-1.0)
    ref = pipeline_ddcs(tiny_p, x_m, y_m, x_r, y_r)
    res = audit((x_m, y_m), (x_r, y_r), distance=f"perceptual:{tiny_p}", progress=False)
    assert res.summary["ddcs_best"] == pytest.approx(ref.best, rel=1e-9, abs=0)
    assert res.summary["ddcs_avg"] == pytest.approx(ref.avg, rel=1e-9, abs=0)
    np.testing.assert_allclose(res.scores.members.best, ref.per_sample_best, rtol=1e-9)
    # 28×28 tensors are padded like the pipeline's Fashion-MNIST input: the same numbers
    res28 = audit((members, y_m), (recons, y_r), distance=f"perceptual:{tiny_p}", progress=False)
    assert res28.summary["ddcs_best"] == pytest.approx(ref.best, rel=1e-9, abs=0)
    assert "padded with background to 32×32" in res28.summary["preprocessing"]


def test_perceptual_through_8bit_png_files(tiny_p, dp_sets, tmp_path):
    from lib.data.images import to_model_input

    members, y_m, recons, y_r = dp_sets
    ref = pipeline_ddcs(tiny_p, to_model_input(members), y_m,
                        torch.nn.functional.pad(recons, (2, 2, 2, 2), value=-1.0), y_r)
    to_png = lambda x: np.clip(np.rint((x.numpy() + 1) * 127.5), 0, 255).astype(np.uint8)
    write_set(tmp_path / "m", {f"c{c}/{i:03d}.png": x.numpy() for i, (x, c) in
                               enumerate(zip(members, y_m))})
    write_set(tmp_path / "r", {f"c{c}/{i:03d}.png": to_png(x[0]) for i, (x, c) in
                               enumerate(zip(recons, y_r))})
    res = audit(tmp_path / "m", tmp_path / "r", distance=f"perceptual:{tiny_p}", progress=False)
    assert res.summary["ddcs_best"] == pytest.approx(ref.best, rel=0.01)
    order = np.argsort(res.members.files)                  # file i ↔ member i
    rho = spearmanr(res.scores.members.best[order], ref.per_sample_best).statistic
    assert rho >= 0.99


def test_perceptual_converts_colour_to_the_checkpoints_channels(tiny_p, tmp_path):
    rng = np.random.default_rng(1)
    write_set(tmp_path / "m", {f"a/{i}.png": rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
                               for i in range(4)})
    write_set(tmp_path / "r", {f"a/{i}.png": rng.integers(0, 256, (28, 28), dtype=np.uint8)
                               for i in range(3)})
    res = audit(tmp_path / "m", tmp_path / "r", distance=f"perceptual:{tiny_p}", progress=False)
    assert res.members.images.shape[1] == 1
    assert res.summary["preprocessing"].startswith("grey (the checkpoint's 1 channel(s))")


# ------------------------------------------------------------------------------ bad input
@pytest.fixture
def good(tmp_path):
    members, recons, nonmembers = random_sets(tmp_path, {"a": (3, 2, 3), "b": (2, 2, 2)})
    return members, recons, nonmembers, tmp_path / "out"


def expect_refusal(capsys, args: list[str], out: Path, *fragments: str) -> None:
    """Exit status 2, every fragment in the one-line message, no traceback, nothing written."""
    code, stdout, stderr = run_cli(args + ["--out", str(out)], capsys)
    assert code == 2
    assert stderr.startswith("ddcs-audit: error: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    assert not out.exists() or not any(out.iterdir())
    assert not list(out.parent.glob(f".{out.name}.partial-*"))


def test_empty_class_folder(good, capsys):
    members, recons, _, out = good
    (recons / "b").mkdir(exist_ok=True)
    for f in (recons / "b").iterdir():
        f.unlink()
    (recons / "b" / ".DS_Store").write_bytes(b"x")
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(recons),
                            "--distance", "pixel"], out, str(recons / "b"), "holds no images")


def test_class_missing_from_members(good, capsys):
    members, recons, nonmembers, out = good
    write_set(recons, {"zebra/0.png": np.zeros((8, 8), np.uint8)})
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(recons),
                            "--distance", "pixel"], out, "'zebra'", str(recons / "zebra"))
    (recons / "zebra" / "0.png").unlink()
    (recons / "zebra").rmdir()
    write_set(nonmembers, {"okapi/0.png": np.zeros((8, 8), np.uint8)})
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(recons),
                            "--nonmembers", str(nonmembers), "--distance", "pixel"], out,
                   "nonmembers class 'okapi'", str(nonmembers / "okapi"))


def test_member_class_without_reconstructions_and_zero_reconstructions(good, capsys, tmp_path):
    members, recons, _, out = good
    for f in (recons / "b").iterdir():
        f.unlink()
    (recons / "b").rmdir()
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(recons),
                            "--distance", "pixel"], out, "member class 'b' has no reconstructions")
    empty = tmp_path / "none"
    empty.mkdir()
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(empty),
                            "--distance", "pixel"], out, str(empty), "no class subfolders")


@pytest.mark.parametrize("damage", ["text", "truncated"])
def test_corrupt_or_truncated_image(good, capsys, damage):
    members, recons, _, out = good
    bad = recons / "a" / "r000.png"
    data = bad.read_bytes()
    bad.write_bytes(b"not a png at all" if damage == "text" else data[: len(data) // 2])
    # a file that is no image at all is found by the survey of headers (listed by reason);
    # one whose header reads but whose data is cut short, when it is decoded
    error, says = ((InputError, "not an image") if damage == "text"
                   else (DataCorruptError, "not a readable image"))
    with pytest.raises(error, match=re.escape(str(bad))):
        audit(members, recons, distance="pixel", progress=False)
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(recons),
                            "--distance", "pixel"], out, str(bad), says)


def test_mixed_sizes_without_size(good, capsys):
    members, recons, _, out = good
    odd = recons / "b" / "r001.png"
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(odd)
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(recons),
                            "--distance", "pixel"], out, str(odd), "8×9", "--size")
    code, _, stderr = run_cli(["--members", str(members), "--reconstructions", str(recons),
                               "--distance", "pixel", "--size", "8", "--out", str(out)], capsys)
    assert code == 0, stderr


def test_out_exists_and_is_not_empty(good, capsys):
    members, recons, _, out = good
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run_cli(["--members", str(members), "--reconstructions", str(recons),
                               "--distance", "pixel", "--out", str(out)], capsys)
    assert code == 2 and str(out) in stderr and "exists and is not empty" in stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()                      # an empty folder is fine
    code, _, stderr = run_cli(["--members", str(members), "--reconstructions", str(recons),
                               "--distance", "pixel", "--out", str(out)], capsys)
    assert code == 0 and (out / "audit.csv").is_file()


def test_checkpoint_that_is_a_pickle(good, capsys, tmp_path):
    members, recons, _, out = good
    ckpt = tmp_path / "p.safetensors"
    torch.save({"model.w": torch.zeros(2)}, ckpt)
    with pytest.raises(ArtifactError, match="refusing to unpickle"):
        audit(members, recons, distance=f"perceptual:{ckpt}", progress=False)
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(recons),
                            "--distance", f"perceptual:{ckpt}"], out, str(ckpt), "pickle")


def test_lpips_vgg_without_weights_names_make_weights(good, capsys, monkeypatch, tmp_path):
    members, recons, _, out = good
    monkeypatch.setenv(paths.ENV_WEIGHTS, str(tmp_path / "no-weights"))
    with pytest.raises(WeightsError, match="make weights"):
        audit(members, recons, distance="lpips-vgg", progress=False)
    expect_refusal(capsys, ["--members", str(members), "--reconstructions", str(recons)], out,
                   "lpips-vgg", "make weights")


def test_nothing_partial_when_writing_fails(good, monkeypatch):
    from lib.audit import report

    members, recons, _, out = good
    res = audit(members, recons, distance="pixel", progress=False)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "report_markdown", fail)
    with pytest.raises(OSError, match="disk full"):
        res.save(out)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


# ------------------------------------------------------------------------------ wiring
def test_command_help_and_console_script():
    done = subprocess.run([sys.executable, "-m", "lib.audit", "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    for option in ("--members", "--reconstructions", "--nonmembers", "--distance", "--size",
                   "--out"):
        assert option in done.stdout
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["ddcs-audit"].partition(":")
    assert module == "lib.audit.cli" and callable(getattr(cli, name))
    installed = Path(sys.executable).parent / "ddcs-audit"
    if installed.is_file():                           # after pip install -e . (make install)
        done = subprocess.run([str(installed), "--help"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "--members" in done.stdout


def test_cli_error_in_a_subprocess_has_no_traceback(tmp_path):
    (tmp_path / "recons").mkdir()
    done = subprocess.run([sys.executable, "-m", "lib.audit", "--members", str(tmp_path / "nope"),
                           "--reconstructions", str(tmp_path / "recons"), "--distance", "pixel",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(tmp_path / "nope") in done.stderr and not (tmp_path / "out").exists()


TOOLS_NOTEBOOK = ROOT / "notebooks" / "tools" / "audit.ipynb"


def test_tools_notebook_is_not_a_pipeline_notebook_and_carries_a_golden():
    from lib.run import runner

    assert "audit" not in runner.NOTEBOOKS and not any("tools" in n for n in runner.NOTEBOOKS)
    nb = json.loads(TOOLS_NOTEBOOK.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == runner.KERNEL_NAME
    assert "papermill" not in nb["metadata"]
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code[0]["metadata"].get("tags") == ["parameters"]
    params = {node.targets[0].id: ast.literal_eval(node.value)
              for node in ast.parse("".join(code[0]["source"])).body}
    assert set(params) == {"MEMBERS", "RECONSTRUCTIONS", "NONMEMBERS", "DISTANCE", "SIZE", "OUT"}
    assert params["DISTANCE"] == "pixel" and params["MEMBERS"].startswith("runs/audit_example/")
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert any("NBVAL_CHECK_OUTPUT" in "".join(c["source"]) for c in code)
    for cell in code:
        assert "papermill" not in cell["metadata"] and "execution" not in cell["metadata"]
        for out in cell["outputs"]:
            assert out["output_type"] != "error"
            text = "".join(out.get("text", "")) + json.dumps(
                {k: v for k, v in out.get("data", {}).items() if not k.startswith("image/")})
            assert not re.search(r"(/work/|/home/|/root/|/tmp/|/Users/)", text), text[:200]


# ------------------------------------------------------------------------------ unusable inputs
def _audit_args(members, recons, *extra):
    return ["--members", str(members), "--reconstructions", str(recons), "--distance", "pixel",
            *extra]


def test_symlinks_that_loop_dangle_or_leave_the_folder_are_refused_then_skipped(good, capsys,
                                                                                tmp_path):
    members, recons, _, out = good
    (members / "a" / "loop").symlink_to(members / "a")                  # a loop
    (members / "a" / "gone.png").symlink_to(members / "a" / "missing.png")   # dangling
    outside = tmp_path / "elsewhere.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside)
    (members / "b" / "outside.png").symlink_to(outside)                # leaves the folder
    expect_refusal(capsys, _audit_args(members, recons), out, "3 input entries cannot be used",
                   "symlink loop (1)", "dangling link (1)", "outside the folder (1)",
                   "--skip-unusable")
    code, stdout, _ = run_cli(_audit_args(members, recons, "--skip-unusable", "--out", str(out)),
                              capsys)
    assert code == 0 and stdout.count("left out (members)") == 3
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(u["reason"] for u in summary["unusable"]) == [
        "dangling link", "outside the folder", "symlink loop"]
    assert summary["n_members"] == 5                                   # the usable ones
    assert "Left out" in (out / "report.md").read_text()


def test_unreadable_folders_are_called_unreadable(good, capsys, monkeypatch):
    import os

    members, recons, _, out = good
    (members / "a" / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(members / "a" / "sub" / "x.png")
    locked = {str(members / "a" / "sub"), str(recons / "b")}
    real_scandir = os.scandir

    def scandir(path="."):          # as an unreadable folder behaves (root ignores chmod 000)
        if str(path) in locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    expect_refusal(capsys, _audit_args(members, recons), out, "unreadable (2)",
                   str(members / "a" / "sub"), str(recons / "b"))
    code, stderr = run_cli(_audit_args(members, recons, "--out", str(out)), capsys)[::2]
    assert "holds no images" not in stderr


def test_an_unreadable_image_file_is_listed(good, capsys, monkeypatch):
    import os

    members, recons, _, out = good
    victim = members / "a" / "m001.png"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: (Path(p) != victim
                                                       and real_access(p, mode)))
    expect_refusal(capsys, _audit_args(members, recons), out, "unreadable (1)", str(victim))


def _png_header_only(path: Path, width: int, height: int, bit_depth: int) -> None:
    """A PNG declaring width × height (grey, ``bit_depth``) with no pixel data: a decompression
    bomb made small."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_an_image_above_max_pixels_is_refused_before_decoding(good, capsys, bit_depth):
    members, recons, _, out = good
    bomb = members / "a" / "bomb.png"
    _png_header_only(bomb, 13000, 13000, bit_depth)
    expect_refusal(capsys, _audit_args(members, recons, "--size", "8"), out, "too large (1)",
                   str(bomb))
    expect_refusal(capsys, _audit_args(members, recons, "--size", "8", "--max-pixels", "1000"),
                   out, "too large")


def test_reading_that_would_not_fit_in_memory_is_refused(good, capsys, monkeypatch):
    from lib.audit import images

    members, recons, _, out = good
    monkeypatch.setattr(images, "available_bytes", lambda: 10 << 20)
    monkeypatch.setattr("lib.audit.api.available_bytes", lambda: 10 << 20)
    expect_refusal(capsys, _audit_args(members, recons), out, "would need about",
                   "GiB is available")


def test_sixteen_bit_images_decode_in_integers_as_before(tmp_path):
    from lib.audit.images import _to_uint8, decode

    values = np.arange(0, 65536, 7, dtype=np.uint16)[:4096].reshape(64, 64)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    arr, alpha = decode(path, "L")
    expected = np.clip(np.rint(values.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    assert arr.shape == (1, 64, 64) and not alpha and np.array_equal(arr[0], expected)
    assert _to_uint8(np.full((3, 3), 65535, np.int32)).max() == 255


@pytest.mark.parametrize("flag, value, says", [("--permutations", "100000000", "1,000,000"),
                                               ("--size", "100000", "1..2048"),
                                               ("--max-pixels", "0", "must be ≥ 1")])
def test_out_of_range_arguments_exit_2_at_once_without_heavy_imports(tmp_path, flag, value, says):
    import time

    (tmp_path / "m").mkdir()
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lib.audit", "--members", str(tmp_path / "m"),
                           "--reconstructions", str(tmp_path / "m"), "--out",
                           str(tmp_path / "out"), flag, value], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    seconds = time.monotonic() - t0
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert says in done.stderr and "Traceback" not in done.stderr
    assert seconds < 10           # ~0.1 s; the bound leaves room for a loaded machine
    from lib.audit import cli as audit_cli
    assert "torch" not in audit_cli.__dict__ and "api" not in audit_cli.__dict__


@pytest.mark.parametrize("where", ["equal", "inside", "containing"])
def test_an_output_folder_overlapping_an_input_is_refused(good, capsys, where):
    members, recons, _, _ = good
    out = {"equal": recons, "inside": members / "a" / "audit_out",
           "containing": members.parent}[where]
    code, _, stderr = run_cli(_audit_args(members, recons, "--out", str(out)), capsys)
    assert code == 2 and "write the audit outside every input folder" in stderr
    assert not (members / "a" / "audit_out").exists()


def test_an_existing_file_as_out_is_called_a_file(good, capsys, tmp_path):
    members, recons, _, _ = good
    out = tmp_path / "a-file"
    out.write_text("x")
    code, _, stderr = run_cli(_audit_args(members, recons, "--out", str(out)), capsys)
    assert code == 2 and "is a file" in stderr and "not empty" not in stderr


def test_a_newline_in_a_file_name_keeps_the_report_table_whole(good, capsys):
    from lib.audit.report import cell

    members, recons, _, out = good
    for f in sorted((members / "a").iterdir()):
        f.rename(f.with_name(f.stem + "\nx|y" + f.suffix))
    code, _, _ = run_cli(_audit_args(members, recons, "--out", str(out)), capsys)
    report = (out / "report.md").read_text()
    assert code == 0 and "\nx|y" not in report and "\\nx\\|y" in report
    table = [line for line in report.splitlines() if line.startswith("| ") and ".png" in line]
    assert table and all(line.endswith("|") for line in table)
    assert cell("a\tb`c") == "a\\tb\\`c"


def test_an_alpha_channel_is_noted(good, capsys):
    members, recons, _, out = good
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(members / "a" / "m000.png")
    code, stdout, _ = run_cli(_audit_args(members, recons, "--out", str(out)), capsys)
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and summary["alpha_dropped"]["members"]["count"] == 1
    assert "alpha channel" in stdout and "Alpha dropped" in (out / "report.md").read_text()


def test_the_lpips_weights_message_names_the_distance_not_a_profile(tmp_path):
    from lib import weights

    with pytest.raises(WeightsError) as err:
        weights.require((weights.LPIPS_VGG_WEIGHTS_FILE,), tmp_path)
    assert "LPIPS-VGG distance" in str(err.value) and "paper profile needs" not in str(err.value)
