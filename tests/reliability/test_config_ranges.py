"""Every numeric config field has an allowed range, checked before anything is written or
compiled (issue 13, item 5). The walk over ``base_config()`` makes a field added later without a
range fail here."""

import math
import os
import re

import ml_collections
import pytest

from jaxssl.train.defaults import base_config
from jaxssl.train.loop import train
from jaxssl.train.ranges import RANGES, Each, Range, check_value
from jaxssl.train.recipes import tiny
from jaxssl.train.validate import validate_config


def numeric_leaves(node, prefix=""):
    """Dotted paths of every int/float (not bool) leaf and every tuple of numbers."""
    for key, value in node.items():
        path = prefix + key
        if isinstance(value, ml_collections.ConfigDict):
            yield from numeric_leaves(value, path + ".")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, (int, float)):
            yield path
        elif isinstance(value, tuple) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            yield path


def get(config, field):
    for part in field.split("."):
        config = config[part]
    return config


def set_field(config, field, value):
    *path, last = field.split(".")
    node = config
    for part in path:
        node = node[part]
    node[last] = value


def test_every_numeric_field_of_the_schema_has_a_range():
    leaves = set(numeric_leaves(base_config()))
    missing = sorted(leaves - set(RANGES))
    assert not missing, f"numeric config fields without a range in jaxssl/train/ranges.py: " \
                        f"{missing}"
    stale = sorted(field for field in RANGES if field not in leaves)
    assert not stale, f"ranges for fields the schema does not have: {stale}"


def test_schema_defaults_lie_in_their_ranges():
    config = base_config()
    for field, rule in RANGES.items():
        check_value(field, get(config, field), rule)


def _outside(rule):
    """Values just outside ``rule``, derived from its bounds (not from a hand list)."""
    item = rule.item if isinstance(rule, Each) else rule
    bad = [item.low if item.low_open else item.low - 1]  # every low bound is finite
    if math.isfinite(item.high):
        bad.append(item.high if item.high_open else item.high + 1)
    bad = [int(v) for v in bad] if item.integer else [float(v) for v in bad] + [math.inf,
                                                                                math.nan]
    if isinstance(rule, Range):
        return bad
    # Tuples: one bad entry, entries in the wrong order, one entry too many.
    inside = (item.low + item.high) / 2 if math.isfinite(item.high) else item.low + 1.0
    out = [(v,) + (inside,) * ((rule.length or 2) - 1) for v in bad]
    if rule.ordered:
        out.append((inside, inside - 1e-3))
    if rule.length is not None:
        out.append((inside,) * (rule.length + 1))
    return out


CASES = [(field, value) for field, rule in RANGES.items() for value in _outside(rule)]


@pytest.mark.parametrize("field, value", CASES, ids=[f"{f}={v}" for f, v in CASES])
def test_each_value_outside_a_range_is_refused_naming_field_value_and_range(field, value):
    config = tiny("dino")
    set_field(config, field, value)
    with pytest.raises(ValueError) as err:
        validate_config(config, num_devices=8, num_processes=1)
    message = str(err.value)
    rule = RANGES[field]
    assert message.startswith(f"config.{field}: got {value!r}, allowed {rule}"), message
    assert "\n" not in message


# The values the issue found accepted (training garbage) or failing late without the field.
ISSUE_CASES = [
    ("eval.knn_temperature", 0.0, r"allowed \[0\.02, inf\)"),
    ("head.num_prototypes", 1, r"allowed an integer in \[2, inf\)"),
    ("loss.boost", 0.0, r"allowed \[1, inf\)"),
    ("optim.weight_decay", -0.04, r"allowed \[0, inf\)"),
    ("optim.weight_decay_end", -0.4, r"allowed \[0, inf\)"),
    ("optim.grad_clip", -1.0, r"allowed \[0, inf\)"),
    ("loss.mask_probability", 2.0, r"allowed \[0, 1\]"),
    ("loss.center_momentum", 5.0, r"allowed \[0, 1\]"),
    ("loss.sharpen_temperature", 0.0, r"allowed \(0, inf\)"),
    ("loss.mask_ratio", (0.5, 0.1), r"allowed \(low, high\) with low <= high"),
    ("seed", -1, r"allowed an integer in \[0, 4294967295\]"),
    ("head.hidden_dim", 0, r"allowed an integer in \[1, inf\)"),
]


@pytest.mark.parametrize("method", ["dino", "ibot", "carp", "excb", "msn"])
@pytest.mark.parametrize("field, value, allowed", ISSUE_CASES,
                         ids=[f"{f}={v}" for f, v, _ in ISSUE_CASES])
def test_issue_values_are_refused_for_every_method(method, field, value, allowed):
    config = tiny(method)
    set_field(config, field, value)
    with pytest.raises(ValueError, match="^" + re.escape(f"config.{field}: got {value!r}, ")
                       + allowed):
        validate_config(config, num_devices=8, num_processes=1)


@pytest.mark.parametrize("updates, match", [
    # A local crop larger than the global one.
    ({"data.local_crops.size": 24}, r"config\.data\.local_crops\.size: 24 px local crops are "
                                    r"larger than the 16 px global crops"),
    # min_lr above the peak learning rate lr x batch / 256 (tiny: 1e-3 x 16 / 256).
    ({"optim.min_lr": 1e-3}, r"config\.optim\.min_lr: 0\.001 is above the peak learning rate "
                             r"optim\.lr x train\.batch_size / 256 = 6\.25e-05"),
    ({"optim.warmup_start_lr": 2e-3}, r"config\.optim\.warmup_start_lr: must lie in \[0, "
                                      r"optim\.lr = 0\.001\]"),
    ({"eval.final_knn": True, "eval.knn_train_size": 10},
     r"config\.eval\.knn_k: 20 neighbours but the k-NN bank holds config\.eval\.knn_train_size "
     r"= 10 images"),
    ({"train.online_knn_every": 5, "train.online_knn_train_size": 5},
     r"config\.eval\.knn_k: 20 neighbours .*config\.train\.online_knn_train_size = 5"),
    ({"augment.std": (0.3, 0.3)}, r"config\.augment\.std: has 2 entries but "
                                  r"config\.augment\.mean has 3"),
])
def test_cross_field_rules(updates, match):
    config = tiny("dino")
    for field, value in updates.items():
        set_field(config, field, value)
    with pytest.raises(ValueError, match=match):
        validate_config(config, num_devices=8, num_processes=1)


def test_in_range_edges_are_accepted():
    config = tiny("excb")
    for field, value in [("loss.boost", 1.0), ("optim.grad_clip", 0.0), ("seed", 2**32 - 1),
                         ("loss.mask_ratio", (0.3, 0.3)), ("ema.momentum_end", 1.0),
                         ("head.num_prototypes", 2), ("optim.min_lr", 1e-3 * 16 / 256)]:
        set_field(config, field, value)
    validate_config(config, num_devices=8, num_processes=1)


def test_types_are_checked_too():
    with pytest.raises(ValueError, match=r"config\.train\.num_steps: got 2\.5, allowed an "
                                         r"integer in \[1, inf\)"):
        check_value("train.num_steps", 2.5, RANGES["train.num_steps"])
    with pytest.raises(ValueError, match=r"config\.loss\.boost: got True"):
        check_value("loss.boost", True, RANGES["loss.boost"])
    with pytest.raises(ValueError, match=r"config\.loss\.mask_ratio: got '0\.1'"):
        check_value("loss.mask_ratio", "0.1", RANGES["loss.mask_ratio"])


def test_refused_before_the_workdir_is_written(tmp_path):
    config = tiny("dino")
    config.loss.sharpen_temperature = 0.0
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"config\.loss\.sharpen_temperature"):
        train(config, str(workdir))
    assert not os.path.exists(workdir)
