"""The evaluation entry point, the controls, and intervals over seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib.data.fashion_mnist import load_split
from lib.metrics.controls import public_by_target, real_test
from lib.metrics.ddcs import ddcs
from lib.metrics.distances import pairwise_sq_distances
from lib.metrics.evaluate import SPACES, Judge, label_view
from lib.metrics.membership import membership_gap
from lib.metrics.stats import format_ci, mean_ci
from lib.models import ConvClassifier


def nets():
    torch.manual_seed(0)
    return ConvClassifier("scnn", 10, width=4).eval(), ConvClassifier("mcnn", 10, width=4).eval()


def images(n, seed):
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def make_judge(**kw):
    e, p = nets()
    labels = np.repeat([0, 2], 6)
    return Judge(e, p, (images(12, 1), labels, np.arange(100, 112)),
                   (images(12, 2), labels, np.arange(200, 212)), [0, 2],
                   n_permutations=20, **kw), labels


def test_evaluate_reports_every_metric_with_its_space():
    judge, labels = make_judge(allow_not_computed=True)
    ev = judge.evaluate(images(12, 3), labels)
    expected = {"ddcs_best_d_P", "ddcs_avg_d_P", "resilient_fraction_d_P", "ddcs_best_R_d_P",
                "gap_DR_d_P", "gap_p_d_P", "acc1_strict", "acc5_strict", "acc1_restricted",
                "knn_dist", "fid_e", "precision", "recall", "density", "coverage"}
    assert expected <= set(ev.metrics)
    assert all(v["space"] in SPACES for v in ev.metrics.values())
    assert ev.metrics["fid_e"]["value"] is None or ev.metrics["fid_e"]["value"] >= -1e-9


def test_fid_below_its_minimum_raises_unless_allowed():
    judge, labels = make_judge()  # 12 images, 16-dimensional E features: FID-E needs 17
    assert judge.private.penultimate.shape[1] == 16
    with pytest.raises(ValueError, match="too few samples for the Fréchet distance"):
        judge.evaluate(images(12, 3), labels)
    allowed, labels = make_judge(allow_not_computed=True)
    ev = allowed.evaluate(images(12, 3), labels)
    assert ev.metrics["fid_e"]["value"] is None and "too few" in ev.metrics["fid_e"]["not_computed"]


def test_ddcs_in_the_judge_equals_ddcs_on_the_distance_matrix():
    judge, labels = make_judge(allow_not_computed=True)
    recon = images(12, 3)
    ev = judge.evaluate(recon, labels)
    d = judge.distances["d_P"]
    dist = pairwise_sq_distances(d.embed(recon), d.embed(judge.private.images))
    assert ev.metrics["ddcs_best_d_P"]["value"] == pytest.approx(ddcs(dist, labels, labels).best,
                                                                 rel=1e-5)


def test_audit_table_has_one_row_per_private_sample():
    judge, labels = make_judge(allow_not_computed=True)
    ev = judge.evaluate(images(12, 3), labels)
    audit = ev.audit
    assert len(audit) == 12 and audit.dataset_index.tolist() == list(range(100, 112))
    covered = audit.n_assigned_d_P > 0
    assert (audit.ddcs_best_d_P[covered] > 0).all() and (audit.ddcs_best_d_P[~covered] == 0).all()
    # a covered sample's best score is 1 / its nearest same-class reconstruction's distance
    row = audit[covered].iloc[0]
    assert row.ddcs_best_d_P == pytest.approx(1 / row.nearest_distance_d_P, rel=1e-9)
    assert audit.n_assigned_d_P.sum() == 12


def test_bad_reconstructions_are_refused():
    judge, labels = make_judge(allow_not_computed=True)
    with pytest.raises(ValueError, match="not private classes"):
        judge.evaluate(images(12, 3), np.repeat([0, 5], 6))
    with pytest.raises(ValueError, match="NaN or inf"):
        judge.evaluate(images(12, 3) * np.nan, labels)


def test_controls(fmnist):
    split = load_split(fmnist, "same-class", 20, 0)
    target = ConvClassifier("mcnn", 5, width=4).eval()
    x, y = real_test(fmnist, split, [0, 2, 3, 5, 7], 4, seed=0)
    assert x.shape == (20, 1, 32, 32) and np.bincount(y, minlength=8)[[0, 2, 3, 5, 7]].tolist() == [4] * 5
    x2, _ = real_test(fmnist, split, [0, 2, 3, 5, 7], 4, seed=0)
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="the public set has"):
        public_by_target(fmnist, split, target, [0, 2, 3, 5, 7], 100_000, seed=0)
    # an untrained target gives some classes too few public images: they are filled with the
    # public images most probable for them (many identities, few public images)
    xf, yf = public_by_target(fmnist, split, target, [0, 2, 3, 5, 7], 30, seed=0, candidates=2)
    assert xf.shape == (150, 1, 32, 32) and np.bincount(yf)[[0, 2, 3, 5, 7]].tolist() == [30] * 5
    argmax = np.array([0, 2, 3, 5, 7])[target(xf).argmax(1).numpy()]
    assert (argmax != yf).any()          # the fill was needed here

    class Oracle(torch.nn.Module):  # "predicts" by mean brightness bands: every class occurs
        def forward(self, x):
            band = ((x.mean((1, 2, 3)) + 1) * 10).long().clamp(0, 4)
            return torch.nn.functional.one_hot(band, 5).float()

    xp, yp = public_by_target(fmnist, split, Oracle(), [0, 2, 3, 5, 7], 2, seed=0)
    assert xp.shape == (10, 1, 32, 32) and sorted(yp.tolist()) == [0, 0, 2, 2, 3, 3, 5, 5, 7, 7]


def test_mean_ci():
    assert mean_ci([2.0])[0] == 2.0 and math.isnan(mean_ci([2.0])[1])
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and lo == pytest.approx(2 - 4.302652729911275 / math.sqrt(3))
    assert format_ci([1.0, 2.0, 3.0]).startswith("2 [")
    with pytest.raises(ValueError):
        mean_ci([])


def test_label_view_on_fixed_logits():
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits[x[:, 0, 0, 0].long()]

    images = torch.arange(4.0)[:, None, None, None].expand(4, 1, 2, 2).contiguous()
    classes = [0, 2]                                  # target label 0 ↔ class 0, 1 ↔ class 2
    labels = [0, 0, 2, 2]
    target = Fixed(torch.tensor([[9.0, 0], [0, 9.0], [0, 9.0], [0, 9.0]]))
    e_logits = torch.zeros(4, 10)
    e_logits[0, 0] = e_logits[1, 5] = e_logits[2, 2] = 1.0   # row 1: class 5 (not private)
    e_logits[3, 0] = 1.0
    e_logits[1, 2] = 0.5                              # restricted argmax of row 1: class 2
    out = label_view(target, Fixed(e_logits), images, labels, classes)
    assert out["T_acc1"] == 0.75
    assert out["E_acc1_strict"] == 0.5                # rows 0 and 2
    assert out["E_acc1_restricted"] == 0.5            # rows 0, 2 right; 1 → 2, 3 → 0 wrong
    p_hi = torch.softmax(torch.tensor([9.0, 0]), 0)[0].item()
    assert out["T_confidence"] == pytest.approx((3 * p_hi + (1 - p_hi)) / 4)


def test_restricted_judge_equals_a_judge_built_on_the_subset():
    judge, labels = make_judge(allow_not_computed=True)
    keep = np.array([100, 101, 103, 106, 108, 111])
    sub = judge.restricted(keep)
    assert sub.private.indices.tolist() == keep.tolist() and len(judge.private.indices) == 12
    e, p = nets()
    rows = keep - 100
    direct = Judge(e, p, (images(12, 1)[rows], labels[rows], keep),
                     (images(12, 2), labels, np.arange(200, 212)), [0, 2], n_permutations=20)
    recon = images(12, 3)
    a, b = sub.ddcs_of(recon, labels), direct.ddcs_of(recon, labels)
    assert np.allclose(a.per_sample_best, b.per_sample_best, rtol=1e-5)
    assert a.per_sample_best.shape == (6,)
    with pytest.raises(ValueError, match="not in the judge's private set"):
        judge.restricted([999])
    with pytest.raises(ValueError, match="unknown distance"):
        judge.ddcs_of(recon, labels, "d_X")


def test_membership_runs_on_a_balanced_sample_when_d_is_larger():
    """The face split holds out 3 images per identity: the test samples as many members."""
    e, p = nets()
    d_labels, r_labels = np.repeat([0, 2], 9), np.repeat([0, 2], 3)
    judge = Judge(e, p, (images(18, 1), d_labels, np.arange(100, 118)),
                    (images(6, 2), r_labels, np.arange(200, 206)), [0, 2], n_permutations=20,
                    allow_not_computed=True)
    rows = judge.balanced_members()
    assert np.array_equal(np.bincount(d_labels[rows]), [3, 0, 3])
    recon, labels = images(8, 3), np.repeat([0, 2], 4)
    ev = judge.evaluate(recon, labels)
    d = judge.distances["d_P"]
    dist = pairwise_sq_distances(d.embed(recon), d.embed(judge.private.images))
    full = ddcs(dist, labels, d_labels)
    assert ev.metrics["ddcs_best_d_P"]["value"] == pytest.approx(full.best, rel=1e-5)  # all of D
    sub = membership_gap(dist[:, rows], pairwise_sq_distances(
        d.embed(recon), d.embed(judge.reference.images)), labels, d_labels[rows], r_labels,
        "best", 20, judge.seed)
    assert ev.metrics["gap_DR_d_P"]["value"] == pytest.approx(sub.gap, abs=1e-6)
    quantile = ev.audit["nonmember_quantile_d_P"].to_numpy()
    assert np.isnan(quantile).sum() == 12 and not np.isnan(quantile[rows]).any()


def test_inception_fid_is_reported_in_its_own_space():
    class Pool(torch.nn.Module):      # stands in for Inception pool3: 4-d features
        def forward(self, x):
            return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3)), x[:, :, :16].mean((1, 2, 3)),
                                x[:, :, 16:].mean((1, 2, 3))], 1)

    judge, labels = make_judge(allow_not_computed=True, inception=Pool())
    ev = judge.evaluate(images(12, 3), labels)
    assert ev.metrics["fid"]["space"] == "Inception-pool3" and ev.metrics["fid"]["value"] >= 0
