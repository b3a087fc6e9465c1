"""lib.config: profile resolution, overrides, clear errors, smoke on the CPU."""
from __future__ import annotations

import pytest

from lib import config as profiles  # the profiles table lives in lib.config
from lib import config
from lib.errors import ConfigError


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_every_profile_resolves(name):
    cfg = profiles.resolve(name)
    assert cfg["profile"] == name
    assert set(cfg) == set(profiles.PROFILES["cpu"]) | {"profile"}


def test_overrides_apply_and_coerce():
    cfg = profiles.resolve("cpu", {"target_epochs": 3, "target_lr": 1})
    assert cfg["target_epochs"] == 3 and cfg["target_lr"] == 1.0
    assert isinstance(cfg["target_lr"], float)
    assert profiles.resolve("cpu")["target_epochs"] == profiles.PROFILES["cpu"]["target_epochs"]


def test_resolved_config_is_read_only():
    cfg = profiles.resolve("smoke")
    with pytest.raises(TypeError):
        cfg["target_epochs"] = 1
    cfg["private_classes"].append(99)  # a copy: the table itself is unchanged
    assert 99 not in profiles.PROFILES["smoke"]["private_classes"]


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown profile 'gpu'.*smoke, cpu, paper"):
        profiles.resolve("gpu")


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown override key 'epochs'.*target_epochs"):
        profiles.resolve("cpu", {"epochs": 3})


def test_wrong_type_is_an_error():
    with pytest.raises(ValueError, match="expected int"):
        profiles.resolve("cpu", {"target_epochs": "many"})
    with pytest.raises(ValueError, match="expected bool|expected int"):
        profiles.resolve("cpu", {"target_epochs": True})


def test_smoke_forces_the_cpu():
    assert profiles.resolve("smoke")["device"] == "cpu"
    with pytest.raises(ValueError, match="CPU"):
        profiles.resolve("smoke", {"device": "cuda"})


def test_cpu_profile_keeps_protocol_sizes():
    cfg = profiles.resolve("cpu")
    assert cfg["private_per_class"] == 100 and len(cfg["seeds"]) >= 3
    assert cfg["private_classes"] == [0, 2, 3, 5, 7]
    assert cfg["target_loss"] == "focal" and cfg["focal_gamma"] == 2.0


def test_format_config_is_sorted_and_stable():
    text = profiles.format_config(profiles.resolve("smoke"))
    keys = [line.split(" = ")[0] for line in text.splitlines()]
    assert keys == sorted(keys)


def test_cpu_entropy_weights_are_the_committed_sweep_choice():
    """The cpu profile's λ_H values must be the ones the committed sweep chose (make sweep)."""
    from lib.config import resolve
    from lib.stages.transfer import load_sweep

    sweep = load_sweep()
    assert sweep is not None, "results/entropy_sweep.json is missing: run `make sweep`"
    assert sweep["profile"] == "cpu"
    cfg = resolve("cpu")
    for mode, key in [("entropy", "entropy_weight"), ("entropy+ngd", "ngd_entropy_weight"),
                      ("entropy+ngd-damped", "ngd_damped_entropy_weight")]:
        assert cfg[key] == sweep["modes"][mode]["chosen"]["weight"], (
            f"cpu {key} = {cfg[key]} but the committed sweep chose "
            f"{sweep['modes'][mode]['chosen']['weight']} for {mode}")
    assert sweep["units"] == "authors"        # λ_H per 16-sample batch, as the paper states it
    assert resolve("paper")["entropy_weight"] == 1.0  # the faithful value stays one override away


def test_contrast_overrides_come_from_its_own_sweep():
    from lib.config import CONTRAST_SPLIT, ConfigError, contrast_overrides

    sweep = {"config": {"gan": {"split": CONTRAST_SPLIT}},
             "modes": {"entropy": {"chosen": {"weight": 0.02}},
                       "entropy+ngd": {"chosen": {"weight": 5.0}},
                       "entropy+ngd-damped": {"chosen": {"weight": 0.04}}}}
    assert contrast_overrides(sweep) == {"split": CONTRAST_SPLIT, "entropy_weight": 0.02,
                                         "ngd_entropy_weight": 5.0,
                                         "ngd_damped_entropy_weight": 0.04}
    sweep["config"]["gan"]["split"] = "cluster-shift"
    with pytest.raises(ConfigError, match="make sweep-contrast"):
        contrast_overrides(sweep)


@pytest.mark.parametrize("override, allowed", [
    ({"private_per_class": -5}, "an integer in 1..3000"),
    ({"private_per_class": 3001}, "an integer in 1..3000"),
    ({"seeds": []}, "a non-empty list"),
    ({"seeds": [1, 1]}, "without repeats"),
    ({"seeds": [-1]}, "integers ≥ 0"),
    ({"image_size": -8}, "one of 32, 56, 64, 112, 128"),
    ({"batch_size": 0}, "an integer ≥ 1"),
    ({"private_classes": [0, 99]}, "each in 0..9"),
    ({"private_classes": []}, "a non-empty list"),
    ({"split": "bogus"}, "one of same-class, class-disjoint, cluster-shift"),
    ({"target_lr": 0.0}, "a finite number > 0"),
    ({"entropy_weight": -1.0}, "a finite number ≥ 0"),
    ({"collapse_max_share": 1.5}, "a share in (0, 1]"),
    ({"fid_samples": 1}, "an integer ≥ 2"),
    ({"cell_timeout_s": -1}, "an integer ≥ 0"),
    ({"perc_arch": "vgg"}, "one of mcnn, scnn"),
    ({"device": "banana"}, "one of auto, cpu, cuda"),
])
def test_values_outside_their_domain_name_the_key_the_value_and_what_is_allowed(override, allowed):
    ((key, value),) = override.items()
    with pytest.raises(ConfigError) as err:
        config.resolve("cpu", override)
    text = str(err.value)
    assert f"override {key}={value!r} is not allowed" in text and allowed in text
    assert "\n" not in text


def test_constraints_between_keys_name_both():
    with pytest.raises(ConfigError, match="attack_candidates=5 must be ≥ recon_per_class=100"):
        config.resolve("cpu", {"attack_candidates": 5})
    with pytest.raises(ConfigError, match="attack_pool=10 must be ≥ attack_candidates=150"):
        config.resolve("cpu", {"attack_pool": 10})


def test_the_faces_profile_allows_every_image_per_identity_and_needs_a_split_file():
    assert config.resolve("paper")["private_per_class"] == 0
    with pytest.raises(ConfigError, match="face_split must be the path"):
        config.resolve("paper", {"face_split": ""})


def test_every_key_is_checked_and_the_domains_follow_the_code():
    from lib import models
    from lib.data import fashion_mnist

    cfg = dict(config.resolve("cpu"))
    unchecked = []
    for key, value in cfg.items():        # a value of the key's type but outside every domain
        bad = {int: -10 ** 9, float: -1e300, str: "\x00", list: []}.get(type(value))
        if key == "profile" or bad is None or (key == "face_split"):
            continue
        if config.domain_problem(key, {**cfg, key: bad}) is None:
            unchecked.append(key)
    assert unchecked == []
    assert set(config.IMAGE_SIZES) == set(models.GAN_SIZES)
    assert set(config.CLASSIFIER_ARCHS) == (set(models.ARCHITECTURES)
                                            | set(models.TorchvisionClassifier.ARCHS))
    assert config.SPLIT_KINDS == fashion_mnist.SPLIT_KINDS


def test_the_class_disjoint_split_refuses_private_classes_among_its_public_ones():
    from lib.data import dataset

    with pytest.raises(ValueError, match=r"share \[1\] with the class-disjoint split"):
        dataset.check_inputs(config.resolve("cpu", {"split": "class-disjoint",
                                                   "private_classes": [0, 1]}))
