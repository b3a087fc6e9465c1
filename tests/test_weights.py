"""lib.weights: the paper profile's pretrained weights, checked without any download."""
from __future__ import annotations

import hashlib

import pytest

from lib import weights


def _fake_download(contents: dict):
    def download(url, dst, hash_prefix=None):
        name = url.rsplit("/", 1)[-1]
        data = contents[name]
        assert hashlib.sha256(data).hexdigest().startswith(hash_prefix)
        with open(dst, "wb") as f:
            f.write(data)
    return download


def _payload_with_prefix(prefix: str) -> bytes:
    i = 0
    while True:                        # a payload whose sha256 starts like the file name says
        data = str(i).encode()
        if hashlib.sha256(data).hexdigest().startswith(prefix[:3]):
            return data
        i += 1


def test_require_names_what_is_missing_and_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make weights"):
        weights.require(folder=tmp_path)


def test_fetch_records_and_require_verifies(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "_prefix", lambda name: weights.Path(name).stem.rsplit("-", 1)[-1][:3])
    contents = {n: _payload_with_prefix(weights.Path(n).stem.rsplit("-", 1)[-1]) for n in weights.WEIGHTS}
    weights.fetch(tmp_path, download=_fake_download(contents))
    assert len((tmp_path / weights.SUMS).read_text().splitlines()) == len(weights.WEIGHTS)
    assert weights.require(folder=tmp_path) == tmp_path
    name = next(iter(weights.WEIGHTS))
    (tmp_path / name).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its sha256"):
        weights.require(folder=tmp_path)
