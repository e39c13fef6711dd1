"""jaxssl.data: grain sources, dataset specs, multi-crop input pipelines and batch delivery.

Trainer contract::

    data = DataConfig.from_config(cfg.data)  # typed view; validate_config(cfg) ran first
    it = make_train_iterator(data, global_batch_size=GB, seed=seed,
                             process_index=jax.process_index(),
                             process_count=jax.process_count())
    batch = to_global_batch(next(it), mesh)
    # {"global": uint8 [GB, G, Hg, Wg, 3], "local": uint8 [GB, L, Hl, Wl, 3] (only when L > 0),
    #  "label": int32 [GB], "index": int64 [GB]}

Iterator state goes into the same orbax ``CheckpointManager`` step as the train state, as a
``Composite`` item ``grain.checkpoint.CheckpointSave(it)`` / ``CheckpointRestore(it)`` (see
``jaxssl.train.checkpoint``).
"""

from jaxssl._extras import require_train_extra

require_train_extra(__name__)

from jaxssl.data.augment import ViewAugment, augment_views, normalize_images
from jaxssl.data.config import DataConfig
from jaxssl.data.delivery import to_global_batch
from jaxssl.data.long_tail import LongTailSource, long_tail_counts
from jaxssl.data.masks import ibot_masks, msn_keep_indices
from jaxssl.data.pipeline import make_eval_iterator, make_train_iterator
from jaxssl.data.spec import SPEC_FORMS, DatasetSpec, make_source, parse_spec
from jaxssl.data.view_augments import view_augments

__all__ = [
    "SPEC_FORMS",
    "ViewAugment",
    "augment_views",
    "ibot_masks",
    "msn_keep_indices",
    "normalize_images",
    "DatasetSpec",
    "LongTailSource",
    "DataConfig",
    "long_tail_counts",
    "make_eval_iterator",
    "make_source",
    "make_train_iterator",
    "parse_spec",
    "to_global_batch",
    "view_augments",
]
