"""Metrics: DDCS, membership-calibrated DDCS, LPIPS-style distances, fidelity/diversity."""
from .ddcs import DEFAULT_EPS, DDCSResult, ddcs
from .distances import PerceptualDistance, lpips_vgg, pairwise_sq_distances
from .fidelity import (frechet_distance, knn_distance, knn_distances, per_class_prdc, prdc,
                       restricted_accuracy, topk_accuracy)
from .membership import MembershipResult, membership_gap

__all__ = ["DEFAULT_EPS", "DDCSResult", "ddcs", "PerceptualDistance", "lpips_vgg",
           "pairwise_sq_distances", "frechet_distance", "knn_distance", "knn_distances",
           "per_class_prdc", "prdc", "restricted_accuracy", "topk_accuracy",
           "MembershipResult", "membership_gap"]
