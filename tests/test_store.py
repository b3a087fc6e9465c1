"""The store of scored sets (``lib.metrics.store``): computed once, keyed by what produced
them, bounded in memory, verified on disk."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib import artifacts
from lib.errors import ArtifactError
from lib.inference import embed as penultimate, predict_logits
from lib.metrics.evaluate import Judge, class_block_distances
from lib.metrics.store import ScoreStore, SetScores, score_key
from lib.models import ConvClassifier


def images(n, seed):
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def make_judge(store=None, seed=0):
    torch.manual_seed(seed)
    e, p = ConvClassifier("scnn", 10, width=4).eval(), ConvClassifier("mcnn", 10, width=4).eval()
    labels = np.repeat([0, 2], 6)
    return Judge(e, p, (images(12, 1), labels, np.arange(100, 112)),
                 (images(12, 2), labels, np.arange(200, 212)), [0, 2], n_permutations=20,
                 allow_not_computed=True, batch_size=5, store=store), labels


def test_a_set_is_scored_once_and_its_blocks_equal_the_direct_distances():
    judge, labels = make_judge()
    recon = images(12, 3)
    first = judge.scores(recon, labels)
    assert judge.store.misses == 1 and judge.scores(recon, labels) is first
    assert judge.store.hits == 1
    emb = judge.distances["d_P"].embed_batched(recon, 5)
    direct = class_block_distances(emb, labels, judge.private.embeddings["d_P"],
                                   judge.private.labels)
    assert np.array_equal(judge.matrices(first, "d_P")[0], direct)
    judge.evaluate(recon, labels)                 # evaluate and ddcs_of reuse it
    judge.ddcs_of(recon, labels)
    assert judge.store.misses == 1


def test_one_evaluator_pass_gives_what_separate_passes_give():
    judge, labels = make_judge()
    recon = images(12, 3)
    emb, small = judge.extract(recon, ("d_P", "d_E"), small=True)
    assert torch.equal(emb["d_E"], judge.distances["d_E"].embed_batched(recon, 5))
    assert torch.equal(small["penultimate"], penultimate(judge.evaluator, recon, 5))
    assert torch.equal(small["logits"], predict_logits(judge.evaluator, recon, 5))


def test_keys_never_serve_another_configuration():
    a, labels = make_judge(seed=0)
    b, _ = make_judge(seed=1)                    # other network weights
    x = images(12, 3)
    assert a.producer() != b.producer()
    keys = {score_key(a.producer(), x, labels, ("d_P",)), score_key(b.producer(), x, labels, ("d_P",)),
            score_key(a.producer(), x, labels[::-1].copy(), ("d_P",)),
            score_key(a.producer(), x, labels, ("d_P", "d_E")),
            score_key(a.producer(), images(12, 4), labels, ("d_P",))}
    assert len(keys) == 5
    shared = ScoreStore()
    a.store = b.store = shared
    assert not np.array_equal(a.matrices(a.scores(x, labels), "d_P")[0],
                              b.matrices(b.scores(x, labels), "d_P")[0])
    assert shared.misses == 2


def test_memory_is_bounded_least_recently_used_first():
    judge, labels = make_judge()
    one = judge.scores(images(12, 3), labels)
    judge.store.max_bytes = int(one.nbytes() * 1.5)
    judge.scores(images(12, 4), labels)
    assert len(judge.store._memory) == 1


def test_on_disk_a_later_store_reads_it_back_verified(tmp_path):
    folder = tmp_path / "scores"
    judge, labels = make_judge(ScoreStore(folder, tmp_path, producer="06"))
    x = images(12, 3)
    first = judge.scores(x, labels)
    files = list(folder.glob("*.safetensors"))
    assert len(files) == 1 and "scores/" + files[0].name in artifacts.read_manifest(tmp_path)
    again, _ = make_judge(ScoreStore(folder, tmp_path, producer="07"))
    second = again.scores(x, labels)
    assert again.store.hits == 1 and again.store.misses == 0
    for space in ("d_P", "d_E"):
        assert all(np.array_equal(first.to_private[space][c], second.to_private[space][c])
                   for c in (0, 2))
    assert torch.equal(first.small["logits"], second.small["logits"])
    data = bytearray(files[0].read_bytes())          # one byte flipped: refused, not served
    data[-1] ^= 1
    files[0].write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="modified after it was written"):
        make_judge(ScoreStore(folder, tmp_path))[0].scores(x, labels)


def test_a_file_holding_another_key_is_an_error(tmp_path):
    store = ScoreStore(tmp_path / "scores", tmp_path)
    scores = SetScores(np.zeros(2, dtype=np.int64), {"d_P": {0: np.ones((2, 3))}},
                       {"d_P": {0: np.ones((2, 3))}}, {})
    key = "a" * 64
    store.put(key, scores)
    path = tmp_path / "scores" / f"{key[:32]}.safetensors"
    other = "a" * 32 + "b" * 32                   # same file name, another key
    with pytest.raises(ArtifactError, match="holds the scores of key"):
        ScoreStore(tmp_path / "scores", tmp_path).get(other)
    assert artifacts.load_tensors(path)[1]["key"] == key


def test_the_starts_half_of_the_null_is_computed_once_per_set_of_starts_and_seed():
    judge, labels = make_judge()
    rng = np.random.default_rng(0)
    d_priv, d_ref, s_priv, s_ref = ({c: rng.random((6, 6)) for c in (0, 2)} for _ in range(4))
    _, first = judge.membership_tests(labels, d_priv, d_ref, s_priv, s_ref)
    halved = {c: b * 0.5 for c, b in d_priv.items()}
    _, again = judge.membership_tests(labels, halved, d_ref, s_priv, s_ref)
    assert len(judge._start_cache) == 1            # other doses, the same starts
    judge.seed = 1                                 # another null: never served the old one
    _, reseeded = judge.membership_tests(labels, d_priv, d_ref, s_priv, s_ref)
    assert len(judge._start_cache) == 2
    judge.seed = 0
    _, back = judge.membership_tests(labels, d_priv, d_ref, s_priv, s_ref)
    assert len(judge._start_cache) == 2
    assert back.p_value == first.p_value and np.array_equal(back.shifts, first.shifts)
    assert again.mean_shift != first.mean_shift
