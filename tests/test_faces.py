"""The face loaders and split files on a generated tiny image folder (no real faces needed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib import cli
from lib.data import faces


def _folder(root, counts: dict[str, int], size=(20, 16)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for identity, n in counts.items():
        (root / identity).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / identity / f"img_{i:03d}.png")
    return root


def test_scan_folders_and_flat(tmp_path):
    root = _folder(tmp_path / "private", {"b": 3, "a": 2})
    (root / "notes.txt").write_text("not an image")
    got = faces.scan(root)
    assert list(got) == ["a", "b"]
    assert got["a"] == ["a/img_000.png", "a/img_001.png"]
    flat = faces.scan(root / "b", "flat")
    assert flat == {"": ["img_000.png", "img_001.png", "img_002.png"]}
    with pytest.raises(faces.FaceDataError, match="does not exist"):
        faces.scan(tmp_path / "missing")
    with pytest.raises(ValueError, match="valid: folders, celeba, flat"):
        faces.scan(root, "zip")


def test_scan_celeba_layout(tmp_path):
    from PIL import Image

    images = tmp_path / "img_align_celeba"
    images.mkdir()
    for name in ["000001.jpg", "000002.jpg", "000003.jpg"]:
        Image.new("RGB", (8, 8)).save(images / name)
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 7\n000002.jpg 9\n000003.jpg 7\n"
                                                  "000004.jpg 9\n")
    assert faces.scan(images, "celeba") == {"7": ["000001.jpg", "000003.jpg"], "9": ["000002.jpg"]}


def test_split_follows_the_papers_rule(tmp_path):
    private = faces.scan(_folder(tmp_path / "p", {"id0": 5, "id1": 2, "id2": 6, "id3": 5}))
    public = faces.scan(_folder(tmp_path / "q", {"x": 2}), "folders")
    split = faces.make_split(private, public, min_images=4, n_identities=2, n_attacked=1, holdout=2)
    assert split["identities"] == ["id0", "id2"] and split["attacked"] == ["id0"]
    assert split["reference"]["id0"] == ["id0/img_003.png", "id0/img_004.png"]   # the last 2
    assert split["train"]["id2"] == [f"id2/img_{i:03d}.png" for i in range(4)]
    assert not set(split["train"]["id0"]) & set(split["reference"]["id0"])
    assert split["public_count"] == 2
    path = faces.write_split(split, tmp_path / "splits" / "faces.json")
    assert json.loads(path.read_text()) == split
    faces.check_split(split, private, public)
    private["id0"] = private["id0"][:-1]
    with pytest.raises(faces.FaceDataError, match="private face folder differs"):
        faces.check_split(split, private, public)
    with pytest.raises(ValueError, match="only 1 identities"):
        faces.make_split(private, public, min_images=6, n_attacked=2)


def test_same_dataset_public_excludes_private_identities(tmp_path):
    data = faces.scan(_folder(tmp_path / "p", {"a": 4, "b": 4, "c": 1}))
    split = faces.make_split(data, data, min_images=3, n_identities=1, n_attacked=1, holdout=1,
                             same_dataset=True)
    assert split["identities"] == ["a"] and split["public_identities"] == ["b", "c"]


def test_load_images_crops_resizes_and_scales(tmp_path):
    root = _folder(tmp_path / "p", {"a": 2}, size=(20, 16))
    x = faces.load_images(root, ["a/img_000.png", "a/img_001.png"], 8)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_split_command_writes_the_file(tmp_path, capsys):
    _folder(tmp_path / "p", {"a": 4, "b": 4})
    _folder(tmp_path / "q", {"z": 3})
    out = tmp_path / "faces.json"
    assert cli.main(["faces", "split", "--private", str(tmp_path / "p"), "--public", str(tmp_path / "q" / "z"),
                       "--min-images", "3", "--identities", "2", "--attacked", "1",
                       "--holdout", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["identities"] == ["a", "b"]
    assert "2 private identities" in capsys.readouterr().out


def _standin_split(tmp_path, ids=6, per=7, pub=3, pub_per=4, size=24):
    private, public = faces.write_standin(tmp_path / "standin", ids, per, pub, pub_per, size=size)
    out = tmp_path / "faces.json"
    assert cli.main(["faces", "split", "--private", str(private), "--public", str(public),
                       "--public-layout", "folders", "--min-images", "5", "--identities",
                       str(ids), "--attacked", "2", "--holdout", "2", "--out", str(out)]) == 0
    return out


def _paper(split_path, **over):
    from lib.config import resolve

    return resolve("paper", {"face_split": str(split_path), "private_classes": [0, 1, 2],
                             "image_size": 32, "device": "cpu", **over})


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    """The image cache goes to a temporary data folder, not the repository's."""
    import lib.paths

    monkeypatch.setattr(lib.paths, "data_dir", lambda: tmp_path / "data")
    return tmp_path / "data" / "cache"


def test_split_file_records_where_the_data_are(tmp_path):
    split = json.loads(_standin_split(tmp_path).read_text())
    assert split["sources"]["private"] == {"root": str((tmp_path / "standin" / "private").resolve()),
                                           "layout": "folders", "identity_file": None}
    assert split["sources"]["public"]["layout"] == "folders"


def test_load_for_config_gives_the_papers_roles(tmp_path, cache_dir):
    path = _standin_split(tmp_path)
    data, split = faces.load_for_config(_paper(path))
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape[1:] == (3, 32, 32)
    labels = data.train_labels.numpy()
    assert len(split.private) == 3 * 5 and len(split.reference) == 3 * 2   # 7 images, 2 held out
    assert sorted(set(labels[split.private])) == [0, 1, 2]
    assert np.array_equal(np.bincount(labels[split.reference]), [2, 2, 2])
    assert len(split.public) == 3 * 4 and (labels[split.public] >= 6).all()  # after the 6 ids
    assert np.array_equal(split.evaluator, split.private)     # E trains on D, as in the paper
    assert np.array_equal(split.test, split.reference)        # no other images of these people
    assert split.eval_classes == (0, 1, 2) and len(split.public_classes) == 3
    assert data.class_names == ["pri0000", "pri0001", "pri0002"]
    x, y = __import__("lib.data.images", fromlist=["subset"]).subset(data, split.private[:4])
    assert x.shape == (4, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    cached = list(cache_dir.glob("*.safetensors"))
    assert len(cached) == 1                                    # decoded once, then read
    again, _ = faces.load_for_config(_paper(path))
    assert again.source.startswith("cache") and torch.equal(again.train_images, data.train_images)


def test_moved_or_changed_face_folders_are_named(tmp_path, cache_dir, monkeypatch):
    import shutil

    path = _standin_split(tmp_path)
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "standin" / "private"), moved)
    with pytest.raises(faces.FaceDataError, match="DDCS_MI_FACES_PRIVATE"):
        from lib.data.dataset import check_inputs
        check_inputs(_paper(path, perc_arch="mcnn", fid_network="evaluator"))
    monkeypatch.setenv("DDCS_MI_FACES_PRIVATE", str(moved))
    data, _ = faces.load_for_config(_paper(path))          # found again through the variable
    (moved / "pri0000" / "0000.png").unlink()
    shutil.rmtree(cache_dir)
    with pytest.raises(faces.FaceDataError, match="private face folder differs"):
        faces.load_for_config(_paper(path))


def test_private_classes_must_be_the_first_identities(tmp_path, cache_dir):
    path = _standin_split(tmp_path)
    with pytest.raises(ValueError, match="0..K−1"):
        faces.load_for_config(_paper(path, private_classes=[1, 2]))
    with pytest.raises(ValueError, match="0..K−1"):
        faces.load_for_config(_paper(path, private_classes=list(range(7))))


def test_paper_profile_refuses_clearly_without_the_split_or_the_weights(tmp_path, monkeypatch):
    from lib.config import resolve
    from lib.data.dataset import check_inputs, load
    from lib.run import context

    with pytest.raises(faces.FaceDataError, match="python -m lib.cli faces split"):
        load(resolve("paper", {"face_split": str(tmp_path / "none.json")}))
    with pytest.raises(faces.FaceDataError, match="face split file .* \\(missing\\)"):
        context.setup("paper", str(tmp_path / "run"), overrides={
            "face_split": str(tmp_path / "none.json")}, show_config=False)
    assert not (tmp_path / "run").exists()                  # refused before any folder is made
    path = _standin_split(tmp_path)
    monkeypatch.setenv("DDCS_MI_WEIGHTS", str(tmp_path / "no_weights"))
    with pytest.raises(FileNotFoundError,
                       match="vgg16-397923af.pth for the LPIPS-VGG.*inception_v3.*make weights"):
        check_inputs(_paper(path))
    with pytest.raises(FileNotFoundError, match="inception_v3_google"):
        check_inputs(_paper(path, perc_arch="mcnn"))
    check_inputs(_paper(path, perc_arch="mcnn", fid_network="evaluator"))   # nothing missing


def test_paper_stages_run_through_lib_on_a_standin_folder(tmp_path):
    """The GPU check's paper part at test size: split command, cache, VGG16-BN (flatten-bn
    head, focal loss), ResNet evaluator, 56-px GAN, the three transfers, PPA, evaluation."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    command = ["--counts", "tiny", "--parts", "faces,inception", "--device", "cpu",
               "--part-s", "1200", "--command-s", "3600", "--out", str(tmp_path / "check")]
    assert module.main(command) == 0
    report = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    stages = {r["stage"] for r in report["stages"]}
    assert {"train target (vgg16_bn)", "transfer entropy+ngd", "attack ppa (entropy+ngd)",
            "evaluate (all metrics)"} <= stages
    assert all(r["seconds"] > 0 for r in report["stages"])
    assert all(r["device"].startswith("cpu") and r["gpu_peak_mb"] is None and
               r["host_peak_mb"] >= 0 for r in report["stages"])
    assert sum(r["disk_mb"] for r in report["stages"] if r["part"] == "faces") > 0
    assert report["parts"]["faces"] == report["parts"]["inception"] == "done"
    assert report["verdict"].startswith("not run on a GPU")
    meta = json.loads((tmp_path / "check" / "faces" / "manifest.json").read_text())
    assert "models/target.safetensors" in meta and not any(".partial." in k for k in meta)
    rows = len(report["stages"])                       # the same command again: nothing reruns
    assert module.main(command) == 0
    assert len(json.loads((tmp_path / "check" / "gpu_check.json").read_text())["stages"]) == rows


def test_gpu_check_answers_go_or_no_go_from_the_rates():
    """The extrapolation to the paper profile: GO when the budget holds every stage, NO-GO
    naming the budget or the piece longer than a command, no verdict when a rate is missing."""
    import importlib.util
    from pathlib import Path

    from lib.config import resolve

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = resolve("paper")
    rates = {need["rate_of"]: need for need in module.profile_work(cfg)}
    fast = {"stages": [{"part": "faces", "stage": name, "per_second": need["work"] / 10.0,
                        "device": "cuda:0"} for name, need in rates.items()]}
    lines, problems = module.extrapolate(fast, cfg, budget_s=900, command_s=600)
    assert problems == [] and "total (extrapolated)" in lines[-1]   # every stage 10 s: 90+ s
    _, problems = module.extrapolate(fast, cfg, budget_s=60, command_s=600)
    assert problems and "budget is 60 s" in problems[0]
    slow = {"stages": [dict(r, per_second=r["per_second"] / 1e6 if r["stage"].startswith(
        "attack") else r["per_second"]) for r in fast["stages"]]}     # one class: 10 s · 1e6 / 1,800
    _, problems = module.extrapolate(slow, cfg, budget_s=1e9, command_s=600)
    assert len(problems) == 1 and "PPA attacks" in problems[0]
    _, problems = module.extrapolate({"stages": fast["stages"][1:]}, cfg, 1e9, 600)
    assert problems is None
