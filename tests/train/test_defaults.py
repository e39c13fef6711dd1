"""The one config schema (jaxssl.train.defaults): every data field can be set from the command
line, and configs saved before a field existed read it as its default."""

import json

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from jaxssl.data.config import DataConfig
from jaxssl.data.spec import DatasetSpec
from jaxssl.train.defaults import base_config, fill_defaults
from jaxssl.train.validate import validate_config

# A value different from the default for every leaf of config.data, in command-line form.
DATA_OVERRIDES = {
    "dataset": ("npz:/d/x_{split}.npz:lt10", "npz:/d/x_{split}.npz:lt10"),
    "data_dir": ("/data/idx", "/data/idx"),
    "global_crops.num": ("3", 3),
    "global_crops.size": ("24", 24),
    "global_crops.scale": ("(0.5, 0.9)", (0.5, 0.9)),
    "local_crops.num": ("6", 6),
    "local_crops.size": ("12", 12),
    "local_crops.scale": ("(0.05, 0.5)", (0.05, 0.5)),
    "ratio": ("(0.5, 2.0)", (0.5, 2.0)),
    "interpolation": ("bilinear", "bilinear"),
    "num_threads": ("5", 5),
    "prefetch": ("7", 7),
    "skip_corrupt": ("false", False),
    "subset_seed": ("11", 11),
    "crop_scale_schedule.start_min": ("0.6", 0.6),
    "crop_scale_schedule.steps": ("40", 40),
}


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_every_data_field_is_settable_from_the_command_line(tmp_path):
    assert set(_leaves(base_config().data)) == set(DATA_OVERRIDES)
    path = tmp_path / "cfg.py"
    path.write_text("from jaxssl.train.defaults import base_config\n\n"
                    "def get_config():\n    return base_config()\n")
    argv = ["prog", f"--config={path}"] + [f"--config.data.{k}={text}"
                                           for k, (text, _) in DATA_OVERRIDES.items()]
    values = flags.FlagValues()
    # sys_argv: config_flags finds the override flags by scanning the command line.
    config_flags.DEFINE_config_file("config", str(path), flag_values=values, lock_config=True,
                                    sys_argv=argv)
    values(argv)
    data = values.config.data
    for field, (_, expected) in DATA_OVERRIDES.items():
        node = data
        for part in field.split("."):
            node = node[part]
        assert (tuple(node) if isinstance(node, (list, tuple)) else node) == expected, field
    view = DataConfig.from_config(data)
    assert view.spec == DatasetSpec("npz", "/d/x_{split}.npz", 10.0)
    assert (view.ratio, view.interpolation, view.subset_seed) == ((0.5, 2.0), "bilinear", 11)


def test_an_unknown_data_field_is_refused_from_the_command_line(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text("from jaxssl.train.defaults import base_config\n\n"
                    "def get_config():\n    return base_config()\n")
    argv = ["prog", f"--config={path}", "--config.data.ratoi=(0.5, 2.0)"]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", str(path), flag_values=values, lock_config=True,
                                    sys_argv=argv)
    with pytest.raises(Exception, match="ratoi"):
        values(argv)


def test_fill_defaults_completes_a_config_saved_before_new_fields():
    saved = base_config()
    saved.data.global_crops.size = 24
    raw = json.loads(saved.to_json_best_effort())
    for name in ("ratio", "interpolation", "subset_seed"):
        del raw["data"][name]
    del raw["augment"]["global1"]["hue"]
    old = fill_defaults(ml_collections.ConfigDict(raw))
    assert old.data.global_crops.size == 24  # kept
    assert tuple(old.data.ratio) == (0.75, 4.0 / 3.0)
    assert (old.data.interpolation, old.data.subset_seed) == ("bicubic", 0)
    assert old.augment.global1.hue == 0.1
    validate_config(old, num_devices=1, num_processes=1)


def test_schema_defaults_validate():
    validate_config(base_config(), num_devices=1, num_processes=1)
