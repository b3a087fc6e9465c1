"""Metrics: DDCS, membership-calibrated DDCS, LPIPS-style distances, fidelity/diversity,
one evaluation entry point (``Judge``) and the controls that calibrate it."""
from .controls import CONTROLS, public_by_target, random_generator, real_test
from .ddcs import DEFAULT_EPS, DDCSResult, ddcs
from .distances import PerceptualDistance, lpips_vgg, pairwise_sq_distances
from .evaluate import SPACES, Evaluation, Judge, class_block_distances
from .inception import inception_pool3
from .fidelity import (frechet_distance, knn_distance, knn_distances, per_class_prdc, prdc,
                       restricted_accuracy, topk_accuracy)
from .membership import MembershipResult, membership_gap
from .stats import format_ci, mean_ci

__all__ = ["CONTROLS", "public_by_target", "random_generator", "real_test", "DEFAULT_EPS", "DDCSResult", "ddcs",
           "PerceptualDistance", "lpips_vgg", "pairwise_sq_distances", "SPACES", "Evaluation",
           "Judge", "class_block_distances", "frechet_distance", "knn_distance",
           "knn_distances", "per_class_prdc", "prdc", "restricted_accuracy", "topk_accuracy",
           "MembershipResult", "membership_gap", "format_ci", "mean_ci", "inception_pool3"]
