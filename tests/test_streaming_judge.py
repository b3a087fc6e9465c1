"""The streaming judge (``Judge(stream=True)``): D, R and every scored set embedded class by
class, never a whole set's distance embeddings, with the numbers of the judge that holds them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib.metrics import distances as distances_module
from lib.metrics import evaluate as evaluate_module
from lib.metrics.evaluate import Judge
from lib.models import ConvClassifier


def images(n, seed):
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def judges(d_per_class=10, r_per_class=10, classes=(0, 2, 5), **kw):
    """A judge holding D and R whole and a streaming one, on the same networks and sets."""
    torch.manual_seed(0)
    e, p = ConvClassifier("scnn", 10, width=4).eval(), ConvClassifier("mcnn", 10, width=4).eval()
    d_labels = np.repeat(classes, d_per_class)
    r_labels = np.repeat(classes, r_per_class)
    common = dict(n_permutations=50, allow_not_computed=True, batch_size=7, **kw)
    sets = ((images(len(d_labels), 1), d_labels, np.arange(len(d_labels))),
            (images(len(r_labels), 2), r_labels, np.arange(1000, 1000 + len(r_labels))))
    return (Judge(e, p, *sets, list(classes), **common),
            Judge(e, p, *sets, list(classes), stream=True, **common))


def assert_close(a, b, rel=1e-9):
    if a is None or b is None:
        assert a is None and b is None
    else:
        assert a == pytest.approx(b, rel=rel, abs=1e-12)


@pytest.mark.parametrize("d_per_class", [10, 16])       # |D| = |R|, and D larger (faces)
def test_streaming_equals_holding_every_metric_audit_and_test(d_per_class):
    held, streaming = judges(d_per_class=d_per_class)
    labels = np.repeat([0, 2, 5], 8)
    recon, starts = images(24, 3), images(24, 4)
    a, b = held.evaluate(recon, labels, starts), streaming.evaluate(recon, labels, starts)
    assert set(a.metrics) == set(b.metrics)
    assert {"fid_e", "coverage", "shift_d_P", "gap_p_d_P"} <= set(a.metrics)
    assert a.metrics["fid_e"]["value"] is not None
    for name in a.metrics:
        assert a.metrics[name]["value"] == b.metrics[name]["value"], name   # the same batches
    pd.testing.assert_frame_equal(a.audit, b.audit, rtol=1e-9)
    for space in ("d_P", "d_E"):
        np.testing.assert_allclose(a.membership[space].per_sample_member_score,
                                   b.membership[space].per_sample_member_score, rtol=1e-9)
        assert a.membership[space].p_value == b.membership[space].p_value
    assert np.allclose(held.ddcs_of(recon, labels).per_sample_best,
                       streaming.ddcs_of(recon, labels).per_sample_best, rtol=1e-9)
    small_a, small_b = held.scores(recon, labels).small, streaming.scores(recon, labels).small
    assert set(small_a) == set(small_b) == {"penultimate", "logits"}
    for key in small_a:                # 24 images in batches of 7: filled batch by batch
        assert small_b[key].shape == small_a[key].shape and torch.equal(small_a[key], small_b[key])
    keep = held.private.indices[::2]
    assert np.allclose(held.restricted(keep).ddcs_of(recon, labels).per_sample_best,
                       streaming.restricted(keep).ddcs_of(recon, labels).per_sample_best,
                       rtol=1e-9)


def test_streaming_never_holds_a_whole_set_and_keeps_one_batch_per_side_and_space():
    held, streaming = judges()
    assert set(held.private.embeddings) == {"d_P", "d_E"}
    assert streaming.private.embeddings == {} and streaming.reference.embeddings == {}
    labels = np.repeat([0, 2, 5], 8)
    recon = images(24, 3)
    first = streaming.evaluate(recon, labels).values()
    assert set(streaming._last_batch) == {(side, space) for side in "DR" for space in ("d_P", "d_E")}
    assert all(len(batch) <= streaming.batch_size for _, batch in streaming._last_batch.values())
    assert first == pytest.approx(held.evaluate(recon, labels).values(), rel=0, nan_ok=True)
    assert held.producer() == streaming.producer()     # the same batches: the same numbers
    assert held.describe()[0].startswith("d_E: ") and "class by class" in streaming.describe()[0]


def test_a_class_with_no_reference_images_gives_an_empty_block():
    held, streaming = judges(classes=(0, 2))
    labels = np.repeat([0, 2], 5)
    for judge in (held, streaming):
        judge.reference.labels[judge.reference.labels == 2] = 0   # R holds class 0 only
    a = held.scores(images(10, 3), labels, ("d_P",), small=False)
    b = streaming.scores(images(10, 3), labels, ("d_P",), small=False)
    assert b.to_reference["d_P"][2].shape == (5, 0) == a.to_reference["d_P"][2].shape


def test_every_network_pass_and_distance_runs_on_the_judges_device(monkeypatch):
    """A stub device (the CPU under another name) must reach every heavy call."""
    device = torch.device("cpu", 0)
    seen = []

    def spy(module, name):
        original = getattr(module, name)

        def wrapped(*args, **kwargs):
            seen.append((name, kwargs.get("device", args[3] if len(args) > 3 else None)))
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapped)

    spy(evaluate_module, "batched")
    for name in ("penultimate", "predict_logits", "apply"):
        spy(evaluate_module, name)
    spy(distances_module, "batched")                 # PerceptualDistance.embed_batched
    for stream in (False, True):
        seen.clear()
        torch.manual_seed(0)
        e = ConvClassifier("scnn", 10, width=4).eval()
        p = ConvClassifier("mcnn", 10, width=4).eval()
        labels = np.repeat([0, 2], 6)
        judge = Judge(e, p, (images(12, 1), labels, None), (images(12, 2), labels, None),
                      [0, 2], n_permutations=20, allow_not_computed=True, stream=stream,
                      device=device)
        judge.evaluate(images(12, 3), labels, images(12, 4))
        assert "batched" in {name for name, _ in seen}
        assert all(d is not None and torch.device(d) == device for _, d in seen), seen


def test_a_lazy_set_is_scored_as_the_tensor_it_stands_for_and_read_a_batch_at_a_time():
    """A set made a slice at a time (a control in a file, a leak's blends) gives the same
    key and numbers as the whole tensor; the streaming judge never asks for more than a
    batch of it, the holding judge makes it whole."""
    from lib.data.images import ImageFile, LazyImages
    from lib.metrics.store import tensor_digest
    held, streaming = judges()
    labels = np.repeat([0, 2, 5], 8)
    recon = images(24, 3)
    asked = []

    def rows(lo, hi):
        asked.append(hi - lo)
        return recon[lo:hi]

    lazy = LazyImages(len(recon), recon.shape[1:], recon.dtype, rows)
    assert tensor_digest(lazy) == tensor_digest(recon)
    asked.clear()
    got = streaming.evaluate(lazy, labels).values()
    assert got == held.evaluate(recon, labels).values() == held.evaluate(lazy, labels).values()
    assert asked and max(asked) <= streaming.batch_size
    stored = ImageFile(len(recon), recon.shape[1:])
    for i in range(len(recon)):
        stored[i] = recon[i]
    from_file = stored.images()
    assert torch.equal(from_file.tensor(), recon)
    assert torch.equal(from_file[[3, 0, 3]], recon[[3, 0, 3]])
    assert torch.equal(from_file[5:9], recon[5:9])
    assert torch.equal(from_file[np.arange(24) % 2 == 0], recon[::2])
    with pytest.raises(Exception, match="step 1"):
        from_file[::2]
    with pytest.raises(Exception, match="out of range"):
        from_file[[24]]
    with pytest.raises(Exception, match="image file of"):
        stored[0] = recon[0].double()
