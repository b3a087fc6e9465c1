"""Manifest round trip, tamper detection, atomic writes, safetensors-only checkpoints."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from lib import artifacts as A
from lib.models import ConvClassifier, build_classifier


def test_tensors_round_trip_with_manifest(tmp_path):
    t = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.long)}
    path = A.save_tensors(tmp_path / "x" / "t.safetensors", t, {"note": [1, 2]}, tmp_path, "nb")
    entry = A.read_manifest(tmp_path)["x/t.safetensors"]
    assert entry["sha256"] == A.sha256_file(path) and entry["producer"] == "nb"
    loaded, meta = A.load_tensors(path, tmp_path)
    assert meta == {"note": [1, 2]}
    assert all(torch.equal(loaded[k], t[k]) for k in t)


def test_loaded_tensors_are_aligned_as_new_ones(tmp_path):
    """safetensors returns tensors at the file's data offsets; loaded, every tensor sits in a
    64-byte-aligned buffer as a new one does (kernels that read a misaligned input can sum in
    another order: a resumed state would compute other last bits than the uncut run)."""
    from safetensors.torch import load_file

    path = A.save_tensors(tmp_path / "t.safetensors", {"a": torch.randn(10, 8), "b": torch.arange(3)},
                          {"k": 1})
    raw = load_file(str(path))
    tensors, _ = A.load_tensors(path)
    assert any(t.data_ptr() % A.ALIGNMENT for t in raw.values()), "no misaligned tensor to fix here"
    assert all(t.data_ptr() % A.ALIGNMENT == 0 for t in tensors.values())
    assert all(torch.equal(raw[k], tensors[k]) for k in raw)
    aligned = torch.randn(4)
    assert A.aligned(aligned) is aligned


def test_modified_artefact_is_refused_and_kept(tmp_path):
    path = A.save_tensors(tmp_path / "t.safetensors", {"a": torch.zeros(3)}, {}, tmp_path)
    A.save_tensors(tmp_path / "other.safetensors", {"a": torch.ones(3)}, {}, tmp_path)
    tampered = (tmp_path / "other.safetensors").read_bytes()
    path.write_bytes(tampered)  # a valid file, but not the one that was written
    with pytest.raises(A.ArtifactError, match="modified after it was written"):
        A.load_tensors(path, tmp_path)
    assert path.read_bytes() == tampered  # nothing deleted or overwritten


def test_unregistered_and_missing_files(tmp_path):
    (tmp_path / "stray.json").write_text("{}")
    with pytest.raises(A.ArtifactError, match="not registered"):
        A.load_json(tmp_path / "stray.json", tmp_path)
    with pytest.raises(A.ArtifactError, match="missing"):
        A.verify(tmp_path, tmp_path / "absent.json")


def test_json_round_trip(tmp_path):
    A.save_json(tmp_path / "m.json", {"x": 1.5}, tmp_path, "nb")
    assert A.load_json(tmp_path / "m.json", tmp_path) == {"x": 1.5}


def test_checkpoint_round_trip(tmp_path):
    """The one checkpoint format: named modules' state dicts as <name>.<key> tensors."""
    model = ConvClassifier("mcnn", 5, width=4).eval()
    path = A.save_tensors(tmp_path / "m.safetensors", A.module_tensors({"model": model}),
                          {"arch": model.arch_spec, "config": {"epochs": 1}}, tmp_path)
    tensors, meta = A.load_tensors(path, tmp_path)
    assert all(k.startswith("model.") for k in tensors)
    clone = build_classifier(meta["arch"]).eval()
    A.load_module_tensors(tensors, {"model": clone})
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(model(x), clone(x))
    assert meta["config"] == {"epochs": 1}
    with pytest.raises(RuntimeError, match="Missing key"):       # strict: every key must match
        A.load_module_tensors({}, {"model": clone})


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    with A.atomic_path(path) as tmp:
        tmp.write_text("one")
    with pytest.raises(ZeroDivisionError):
        with A.atomic_path(path) as tmp:
            tmp.write_text("two")
            1 / 0
    assert path.read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_torch_save_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(A.ArtifactError, match="refusing to unpickle"):
        A.load_tensors(path)


def test_raw_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"w": [0.0]}, protocol=4))  # written, never loaded
    with pytest.raises(A.ArtifactError, match="refusing to unpickle"):
        A.load_tensors(path)


def test_safetensors_whose_header_length_starts_like_a_pickle_loads(tmp_path):
    """Regression: a header length whose first byte is 0x80 is not a pickle opcode."""
    path = tmp_path / "t.safetensors"
    for pad in range(300):
        A.save_tensors(path, {"a": torch.zeros(2)}, {"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    tensors, meta = A.load_tensors(path)
    assert torch.equal(tensors["a"], torch.zeros(2)) and len(meta["pad"]) == pad


def test_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(A.ArtifactError, match="not a readable safetensors"):
        A.load_tensors(path)


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = A.save_tensors(tmp_path / "t.safetensors", {"a": torch.zeros(2)})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(A, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        A.save_tensors(path, {"a": torch.ones(2)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temp file left


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / A.MANIFEST).write_text("{broken")
    with pytest.raises(A.ArtifactError, match="not valid JSON"):
        A.read_manifest(tmp_path)
    assert json.loads(json.dumps({})) == {}
