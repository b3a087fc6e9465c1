"""Metrics: DDCS, membership-calibrated DDCS, LPIPS-style distances, fidelity/diversity,
one evaluation entry point (``Judge``) and the controls that calibrate it."""
from . import claims
from .controls import CONTROLS, public_by_target, random_generator, real_test
from .ddcs import DEFAULT_EPS, DDCSResult, ddcs
from .distances import PerceptualDistance, lpips_vgg, pairwise_sq_distances
from .evaluate import SPACES, Evaluation, Judge, build_judge, class_block_distances, label_view
from .inception import inception_pool3
from .fidelity import (frechet_distance, knn_distance, knn_distances, per_class_prdc, prdc,
                       restricted_accuracy, topk_accuracy)
from .membership import MembershipResult, membership_gap
from .stats import combined_p_value, format_ci, mean_ci, paired_bootstrap_ci

__all__ = ["claims", "CONTROLS", "public_by_target", "random_generator", "real_test", "DEFAULT_EPS", "DDCSResult", "ddcs",
           "PerceptualDistance", "lpips_vgg", "pairwise_sq_distances", "SPACES", "Evaluation",
           "Judge", "build_judge", "class_block_distances", "label_view", "frechet_distance", "knn_distance",
           "knn_distances", "per_class_prdc", "prdc", "restricted_accuracy", "topk_accuracy",
           "MembershipResult", "membership_gap", "format_ci", "mean_ci", "paired_bootstrap_ci", "combined_p_value", "inception_pool3"]
