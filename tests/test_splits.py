"""The committed split files reproduce from their seed; D, R and public never overlap."""
from __future__ import annotations

import json

import numpy as np
import pytest

import lib.data.fashion_mnist as D
from lib.data.split import Split
from lib.errors import SplitError
import lib.paths


def committed_split_files():
    return sorted((lib.paths.data_dir() / "splits").glob("fashion-mnist_*.json"))


def test_there_are_committed_splits_for_smoke_and_cpu():
    names = {p.name for p in committed_split_files()}
    for n in (20, 100):
        for kind in D.SPLIT_KINDS:
            assert D.split_filename(kind, n, 0) in names


@pytest.mark.parametrize("path", committed_split_files(), ids=lambda p: p.stem)
def test_committed_split_reproduces_from_seed(path, fmnist):
    stored = json.loads(path.read_text())
    clusters = ({int(c): np.asarray(v) for c, v in stored["private_clusters"].items()}
                if "private_clusters" in stored else None)
    split = D.make_split(fmnist.train_labels.numpy(), fmnist.test_labels.numpy(),
                         stored["kind"], stored["per_class"], stored["seed"],
                         tuple(stored["private_classes"]), clusters)
    assert D.split_to_json(split, fmnist.sha256, clusters) == stored


@pytest.mark.parametrize("kind", D.SPLIT_KINDS)
def test_roles_are_disjoint_and_sized(kind, fmnist):
    split = D.load_split(fmnist, kind, 100, 0)
    labels = fmnist.train_labels.numpy()
    for a, b in [(split.private, split.reference), (split.private, split.public),
                 (split.reference, split.public)]:
        assert np.intersect1d(a, b).size == 0
    assert not np.isin(np.r_[split.private, split.reference], split.evaluator).any()
    for c in (0, 2, 3, 5, 7):
        assert (labels[split.private] == c).sum() == 100
        assert (labels[split.reference] == c).sum() == 100
    public_classes = set(labels[split.public].tolist())
    assert public_classes == ({1, 4, 6, 8, 9} if kind == "class-disjoint" else set(range(10)))
    assert split.private.size + split.reference.size + split.evaluator.size == 60000


def test_check_disjoint_raises_on_overlap(fmnist):
    split = D.load_split(fmnist, "same-class", 20, 0)
    broken = Split(**{**split.__dict__, "public": np.r_[split.public, split.private[:1]]})
    with pytest.raises(SplitError, match="private and public"):
        broken.check_disjoint()


def test_tampered_split_file_is_detected(fmnist, tmp_path, monkeypatch):
    src = D.split_path("same-class", 20, 0)
    stored = json.loads(src.read_text())
    stored["private"][0] = stored["reference"][0]
    fake = tmp_path / src.name
    fake.write_text(json.dumps(stored))
    monkeypatch.setattr(D, "split_path", lambda *a: fake)
    with pytest.raises(D.DataCorruptError, match="modified"):
        D.load_split(fmnist, "same-class", 20, 0)
    assert json.loads(fake.read_text()) == stored  # left as it was


def test_uncommitted_size_is_written_once(fmnist, tmp_path, monkeypatch):
    target = tmp_path / "new.json"
    monkeypatch.setattr(D, "split_path", lambda *a: target)
    split = D.load_split(fmnist, "same-class", 7, 3)
    assert target.is_file() and split.private.size == 35
    with pytest.raises(FileNotFoundError):
        monkeypatch.setattr(D, "split_path", lambda *a: tmp_path / "absent.json")
        D.load_split(fmnist, "same-class", 7, 3, create=False)


def test_bad_split_requests(fmnist):
    with pytest.raises(ValueError, match="unknown split"):
        D.make_split(fmnist.train_labels.numpy(), fmnist.test_labels.numpy(), "random")
    with pytest.raises(ValueError, match="need"):
        D.make_split(fmnist.train_labels.numpy(), fmnist.test_labels.numpy(), per_class=4000)


def test_cluster_shift_draws_d_and_r_from_the_private_clusters(fmnist):
    split = D.load_split(fmnist, "cluster-shift", 100, 0)
    stored = json.loads(D.split_path("cluster-shift", 100, 0).read_text())
    clusters = np.concatenate([np.asarray(v) for v in stored["private_clusters"].values()])
    assert np.isin(np.r_[split.private, split.reference], clusters).all()
    assert not np.isin(split.public, clusters).any()          # the shift: none in public
    labels = fmnist.train_labels.numpy()
    for c, members in stored["private_clusters"].items():
        assert (labels[np.asarray(members)] == int(c)).all()
        assert len(members) >= D.CLUSTER_SHIFT["min_cluster_per_class"] * 100
    assert split.public.size == 60000 - clusters.size


def test_private_clusters_pick_the_farthest_large_enough_cluster():
    """Constructed classes: a large central blob, a far blob large enough, a farther one
    too small and a near one — the rule picks the far, large enough one."""
    rng = np.random.default_rng(0)

    def blob(first, last, n):     # 16 pixels: the first 8 at ``first``, the last 8 at ``last``
        return np.clip(np.r_[np.full(8, first), np.full(8, last)]
                       + 0.01 * rng.normal(size=(n, 16)), 0, 1) * 255

    images = np.concatenate([blob(0.5, 0.5, 300), blob(0.9, 0.5, 120), blob(0.5, 0.02, 20),
                             blob(0.3, 0.5, 200)]).reshape(-1, 4, 4)
    labels = np.zeros(len(images), dtype=int)
    got = D.private_clusters(images, labels, (0,), per_class=25, seed=0)[0]
    assert np.array_equal(got, np.arange(300, 420))            # 120 ≥ 4 × 25; 20 is too few
    with pytest.raises(ValueError, match="no cluster of class 0 holds"):
        D.private_clusters(images, labels, (0,), per_class=100, seed=0)


def test_a_cluster_shift_file_without_its_clusters_is_refused(fmnist, tmp_path, monkeypatch):
    src = D.split_path("cluster-shift", 20, 0)
    stored = json.loads(src.read_text())
    del stored["private_clusters"]
    fake = tmp_path / src.name
    fake.write_text(json.dumps(stored))
    monkeypatch.setattr(D, "split_path", lambda *a: fake)
    with pytest.raises(D.DataCorruptError, match="private clusters"):
        D.load_split(fmnist, "cluster-shift", 20, 0)
