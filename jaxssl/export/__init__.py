"""Export a pretrained backbone from a jaxssl workdir as Flax msgpack or a PyTorch state dict.

Command line: ``python -m jaxssl.export --workdir DIR --format {msgpack,torch}
[--which teacher|student] [--step N] [--out PATH]``.

The torch format needs the optional ``torch`` package (``pip install torch==2.13.0``, or the
``jaxssl[torch]`` extra); it is imported only when writing that format. Key names follow
torchvision (ResNets) and timm (ViTs), see :mod:`jaxssl.export.torch_names`.
"""

from __future__ import annotations

from jaxssl._extras import require_train_extra

require_train_extra(__name__)

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import flax.serialization
import jax
import numpy as np

from jaxssl.export.torch_names import backbone_family, flatten, torch_state_dict
from jaxssl.output_paths import atomic_write, check_output_file
from jaxssl.train.restore import checkpoints_dir, restore_checkpoint

FORMATS = ("msgpack", "torch")
WHICH = ("teacher", "student")


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A backbone's variables as numpy trees plus what is needed to rebuild the module.

    Attributes:
      name: registered backbone name (``config.model.backbone``), e.g. ``"resnet50"``.
      kwargs: its constructor overrides (``config.model.backbone_kwargs``).
      params: nested dict of numpy arrays (the module's ``params`` collection).
      batch_stats: nested dict of numpy arrays (BatchNorm running statistics; empty for ViTs).
      step: the training step of the checkpoint.
    """

    name: str
    kwargs: dict[str, Any]
    params: dict[str, Any]
    batch_stats: dict[str, Any]
    step: int

    def variables(self) -> dict[str, Any]:
        """``{"params": ..., "batch_stats": ...}``, ready for ``module.apply``."""
        return {"params": self.params, "batch_stats": self.batch_stats}


def _to_numpy(tree: Any) -> Any:
    return jax.tree.map(np.asarray, tree) if tree is not None else {}


def backbone_from_state(state: Mapping[str, Any], config: Any, which: str = "teacher"
                        ) -> Backbone:
    """Extracts the ``which`` ("teacher" or "student") backbone from a raw TrainState dict.

    ``state`` is :meth:`jaxssl.train.checkpoint.Checkpointer.restore_raw`'s result; the
    backbone is the ``"backbone"`` child of (teacher_)params and (teacher_)batch_stats.

    >>> import numpy as np, ml_collections
    >>> cfg = ml_collections.ConfigDict({"model": {"backbone": "vit_nano",
    ...                                            "backbone_kwargs": {"depth": 1}}})
    >>> state = {"step": np.array(3), "teacher_params": {"backbone": {"w": np.ones(2)}},
    ...          "teacher_batch_stats": {}}
    >>> b = backbone_from_state(state, cfg)
    >>> b.name, b.kwargs, b.step, b.batch_stats
    ('vit_nano', {'depth': 1}, 3, {})
    """
    if which not in WHICH:
        raise ValueError(f"export: which must be one of {WHICH}, got {which!r}")
    prefix = "teacher_" if which == "teacher" else ""
    params = state.get(f"{prefix}params") or {}
    if "backbone" not in params:
        raise ValueError(
            f"export: {prefix}params has no 'backbone' child; got keys {sorted(params)}")
    stats = state.get(f"{prefix}batch_stats") or {}
    name = str(config.model.backbone)
    kwargs = config.model.backbone_kwargs
    kwargs = dict(kwargs.to_dict() if hasattr(kwargs, "to_dict") else kwargs)
    return Backbone(
        name=name,
        kwargs=kwargs,
        params=_to_numpy(params["backbone"]),
        batch_stats=_to_numpy(stats.get("backbone", {})),
        step=int(np.asarray(state.get("step", 0))),
    )


def load_backbone(workdir: str, which: str = "teacher", step: int | None = None) -> Backbone:
    """Reads the ``which`` backbone of the checkpoint at ``step`` (default newest) in ``workdir``
    through :func:`jaxssl.train.restore.restore_checkpoint` (raw: the method is not rebuilt).

    Raises FileNotFoundError when ``workdir`` has no checkpoint, and
    :class:`~jaxssl.train.checkpoint.CorruptCheckpointError` (a ValueError naming the checkpoint
    and the other steps to pass as ``--step``) when it cannot be read.
    """
    restored = restore_checkpoint(workdir, step=step, raw=True)
    return backbone_from_state(restored.state, restored.config, which)


def msgpack_bytes(backbone: Backbone) -> bytes:
    """Flax msgpack of ``{"params": ..., "batch_stats": ...}``; read it back with
    ``flax.serialization.msgpack_restore``.

    >>> import numpy as np, flax.serialization
    >>> b = Backbone("vit_nano", {}, {"w": np.arange(3.0)}, {}, 0)
    >>> flax.serialization.msgpack_restore(msgpack_bytes(b))["params"]["w"].tolist()
    [0.0, 1.0, 2.0]
    """
    return flax.serialization.msgpack_serialize(backbone.variables())


def _import_torch():
    try:
        import torch  # lazy on purpose: an optional ~1 GB dependency, needed by --format torch only
    except ImportError as e:
        raise ImportError(
            "export: --format torch needs PyTorch, an optional dependency of jaxssl. Install it "
            "with `pip install torch==2.13.0` (CPU build is enough) or `pip install -e .[torch]`."
        ) from e
    return torch


def torch_tensors(backbone: Backbone) -> dict[str, Any]:
    """The backbone as a PyTorch state dict of CPU tensors (torchvision / timm key names)."""
    torch = _import_torch()
    arrays = torch_state_dict(backbone.name, backbone.params, backbone.batch_stats,
                              num_batches_tracked=backbone.step)
    # np.array copies, so every tensor owns contiguous memory (torch.save keeps views' storage);
    # bfloat16 (an ml_dtypes type numpy-to-torch cannot convert) is widened to float32.
    return {k: torch.from_numpy(np.array(v, np.float32 if v.dtype.name == "bfloat16" else None))
            for k, v in arrays.items()}


def default_out_path(workdir: str, fmt: str, which: str = "teacher") -> str:
    """``<workdir>/export/<which>_backbone.{msgpack,pt}``.

    >>> default_out_path("runs/a", "torch")
    'runs/a/export/teacher_backbone.pt'
    """
    suffix = {"msgpack": "msgpack", "torch": "pt"}[fmt]
    return os.path.join(workdir, "export", f"{which}_backbone.{suffix}")


def export(workdir: str, fmt: str, which: str = "teacher", out: str | None = None,
           step: int | None = None) -> str:
    """Writes the ``which`` backbone of ``workdir`` in format ``fmt``; returns the file path."""
    if fmt not in FORMATS:
        raise ValueError(f"export: format must be one of {FORMATS}, got {fmt!r}")
    if which not in WHICH:
        raise ValueError(f"export: which must be one of {WHICH}, got {which!r}")
    checkpoints_dir(workdir)
    # A directory, read-only or uncreatable destination fails before the checkpoint is read.
    chosen = out is not None
    out = out if chosen else default_out_path(workdir, fmt, which)
    check_output_file(out, what="--out" if chosen else "the export file",
                      hint="" if chosen else "Choose another path with --out.")
    backbone = load_backbone(workdir, which, step)
    if fmt == "torch":
        backbone_family(backbone.name)  # unsupported names fail before torch is imported
        torch = _import_torch()
        payload = torch_tensors(backbone)

        def write(tmp: str) -> None:
            torch.save(payload, tmp)
    else:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(msgpack_bytes(backbone))
    # Temporary file + rename: an existing export is replaced only by a complete one.
    return atomic_write(out, write)


__all__ = [
    "FORMATS",
    "WHICH",
    "Backbone",
    "backbone_family",
    "backbone_from_state",
    "default_out_path",
    "export",
    "flatten",
    "load_backbone",
    "msgpack_bytes",
    "torch_state_dict",
    "torch_tensors",
]
