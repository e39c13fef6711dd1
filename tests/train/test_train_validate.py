"""Config validation names the offending field before anything is compiled."""

import pytest

from jaxssl.train.recipes import tiny
from jaxssl.train.validate import validate_config


def check(method, field, value, match):
    c = tiny(method)
    node = c
    *path, last = field.split(".")
    for p in path:
        node = node[p]
    node[last] = value
    with pytest.raises(ValueError, match=match):
        validate_config(c, num_devices=8, num_processes=1)


def test_valid_tiny_configs_pass():
    for method in ("dino", "ibot", "carp", "excb", "msn"):
        validate_config(tiny(method), num_devices=8, num_processes=1)


@pytest.mark.parametrize("method,field,value,match", [
    ("carp", "loss.block_size", 24, r"config\.loss\.block_size: 24 does not divide.*=64"),
    ("excb", "data.global_crops.size", 32, r"config\.data\.global_crops\.size: 32 px crops "
                                           r"are larger than the 28 px"),
    ("excb", "model.backbone", "vit_huge", r"config\.model\.backbone: unknown backbone "
                                          r"'vit_huge'; valid names: \[.*vit_small"),
    ("excb", "data.dataset", "imagenet", r"config\.data\.dataset: .*imagenet"),
    ("dino", "train.batch_size", 12, r"config\.train\.batch_size: 12 must be a positive "
                                     r"multiple of devices"),
    ("dino", "data.local_crops.size", 10, r"config\.data\.local_crops\.size: 10 is not a "
                                          r"multiple of the ViT patch size 4"),
    ("msn", "loss.prior", "zipf", r"config\.loss\.prior: must be 'uniform', 'power_law' or a "
                                  r"path to a \.npy file"),
    ("msn", "loss.prior", "/nonexistent/freq.npy", r"config\.loss\.prior: prior file "
                                                   r"'/nonexistent/freq\.npy' does not exist"),
    ("dino", "optim.grad_clip_mode", "layerwise", r"config\.optim\.grad_clip_mode: must be one "
                                                  r"of \('per_parameter', 'global'\)"),
    ("dino", "optim.grad_clip", -1.0, r"config\.optim\.grad_clip: got -1\.0, allowed "
                                      r"\[0, inf\)"),
    ("dino", "optim.freeze_prototypes_steps", -1, r"config\.optim\.freeze_prototypes_steps: "
                                                  r"got -1, allowed an integer in \[0, inf\)"),
    ("msn", "loss.prior_direction", "both", r"config\.loss\.prior_direction"),
    ("excb", "loss.excb_pairing", "Paper", r"config\.loss\.excb_pairing: must be one of "
                                           r"\('paper', 'released'\), got 'Paper'"),
    ("dino", "optim.name", "adam", r"config\.optim\.name: must be one of"),
    ("dino", "method", "byol", r"config\.method: must be one of"),
    ("dino", "augment.local.hue", 0.9, r"config\.augment\.local\.hue: got 0\.9, allowed "
                                       r"\[0, 0\.5\]"),
    ("dino", "loss.teacher_temp", 0.0, r"config\.loss\.teacher_temp: got 0\.0, allowed "
                                       r"\(0, inf\)"),
    ("msn", "optim.warmup_start_lr", 1.0, r"config\.optim\.warmup_start_lr: must lie in"),
])
def test_invalid_fields_are_named(method, field, value, match):
    check(method, field, value, match)


def test_ibot_needs_vit():
    c = tiny("ibot", backbone="resnet_tiny")
    with pytest.raises(ValueError, match=r"config\.model\.backbone: iBOT's patch loss needs a "
                                         r"ViT"):
        validate_config(c, num_devices=8, num_processes=1)
