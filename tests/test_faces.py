"""The face loaders and split files on a generated tiny image folder (no real faces needed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib import faces


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
    assert faces.main(["split", "--private", str(tmp_path / "p"), "--public", str(tmp_path / "q" / "z"),
                       "--min-images", "3", "--identities", "2", "--attacked", "1",
                       "--holdout", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["identities"] == ["a", "b"]
    assert "2 private identities" in capsys.readouterr().out


def test_paper_profile_refuses_clearly_until_it_is_wired():
    from lib.data import split_for_config
    from lib.profiles import resolve

    with pytest.raises(NotImplementedError, match="python -m lib.faces split"):
        split_for_config(resolve("paper"))
