"""Fashion-MNIST parsing, integrity checks, model input, and clear errors."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

import lib.data.fashion_mnist as D
from lib import cli, paths
from lib.data.images import to_model_input, to_private_labels
from conftest import idx_bytes


def test_parse_idx_round_trip():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(D.parse_idx(idx_bytes(arr)), arr)


@pytest.mark.parametrize("raw, what", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x05", "unsigned byte"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "bytes"),
])
def test_parse_idx_rejects_bad_bytes(raw, what):
    with pytest.raises(D.DataCorruptError, match=what):
        D.parse_idx(raw)


def test_parser_matches_torchvision(fmnist, tmp_path):
    """Our parser and torchvision's give the same arrays on the same (decompressed) files."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    folder = D.find_source_dir()
    for key in ("test_images", "test_labels"):
        raw = D.read_idx_bytes(D._file_in(folder, D.FILES[key]))
        path = tmp_path / D.FILES[key]
        path.write_bytes(raw)
        ref = read_image_file(str(path)) if key.endswith("images") else read_label_file(str(path))
        assert torch.equal(getattr(fmnist, key).to(ref.dtype), ref)


def test_real_data_facts(fmnist):
    assert fmnist.train_images.shape == (60000, 28, 28)
    assert fmnist.test_images.shape == (10000, 28, 28)
    assert torch.equal(torch.bincount(fmnist.train_labels), torch.full((10,), 6000))
    assert fmnist.sha256 == D.SOURCE_SHA256


def test_to_model_input_pads_and_scales():
    img = torch.tensor([[[0, 255], [128, 64]]], dtype=torch.uint8).expand(3, 2, 2)
    x = to_model_input(img, size=4)
    assert x.shape == (3, 1, 4, 4) and x.dtype == torch.float32
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 1, 2] == 1.0 and x[0, 0, 1, 1] == -1.0
    assert torch.allclose(x[0, 0, 1:3, 1:3], img[0].float() / 127.5 - 1)
    with pytest.raises(ValueError, match="pad"):
        to_model_input(img, size=3)


def test_missing_data_names_every_way(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "candidate_dirs", lambda: [tmp_path / "nothing"])
    with pytest.raises(D.DataNotFoundError) as err:
        D.find_source_dir()
    msg = str(err.value)
    for hint in ("data/raw/fashion-mnist", "apt-get install dataset-fashion-mnist",
                 "python -m lib.cli data fetch", paths.ENV_FASHION_MNIST):
        assert hint in msg
    assert cli.main(["data", "status"]) == 1


def test_wrong_content_is_refused(tiny_idx_dir):
    with pytest.raises(D.DataCorruptError, match="sha256"):
        D.load_fashion_mnist(tiny_idx_dir)
    data = D.load_fashion_mnist(tiny_idx_dir, verify=False)  # the parser itself works
    assert data.train_images.shape == (20, 28, 28)


def test_truncated_gzip_is_a_clear_error(tiny_idx_dir):
    path = tiny_idx_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(D.DataCorruptError, match="cannot be read"):
        D.load_fashion_mnist(tiny_idx_dir, verify=False)


def test_env_folder_is_searched_first(tiny_idx_dir, monkeypatch):
    monkeypatch.setenv(paths.ENV_FASHION_MNIST, str(tiny_idx_dir))
    assert D.find_source_dir() == tiny_idx_dir
    assert D.describe_source(tiny_idx_dir).startswith("$")


def test_uncompressed_files_are_accepted(tiny_idx_dir):
    for stem in D.FILES.values():
        gz = tiny_idx_dir / f"{stem}.gz"
        (tiny_idx_dir / stem).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    assert D.load_fashion_mnist(tiny_idx_dir, verify=False).test_labels.shape == (10,)


def test_private_label_mapping():
    labels = torch.tensor([0, 2, 7, 5])
    assert to_private_labels(labels, [0, 2, 3, 5, 7]).tolist() == [0, 1, 4, 3]
    with pytest.raises(ValueError):
        to_private_labels(torch.tensor([1]), [0, 2])


def test_colour_images_are_scaled_and_resized():
    images = torch.full((2, 3, 20, 20), 255, dtype=torch.uint8)
    images[1] = 0
    x = to_model_input(images, size=8)
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x[0], torch.ones(3, 8, 8))
    assert torch.allclose(x[1], -torch.ones(3, 8, 8))
    assert to_model_input(images, size=20).shape == (2, 3, 20, 20)


def test_private_label_mapping_beyond_ten_classes():
    assert to_private_labels(torch.tensor([0, 1, 11]), [0, 1, 11]).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="outside the private classes"):
        to_private_labels(torch.tensor([-1]), [0, 1])
