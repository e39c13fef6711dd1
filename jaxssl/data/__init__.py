"""jaxssl.data: grain sources, dataset specs, multi-crop input pipelines and batch delivery."""

from jaxssl.data.checkpoint import (
    iterator_checkpoint_handler,
    iterator_restore_args,
    iterator_save_args,
)
from jaxssl.data.config import default_data_config, validate_data_config
from jaxssl.data.delivery import to_global_batch
from jaxssl.data.long_tail import LongTailSource, long_tail_counts
from jaxssl.data.pipeline import make_eval_iterator, make_train_iterator
from jaxssl.data.spec import SPEC_FORMS, DatasetSpec, make_source, parse_spec

__all__ = [
    "SPEC_FORMS",
    "DatasetSpec",
    "LongTailSource",
    "default_data_config",
    "iterator_checkpoint_handler",
    "iterator_restore_args",
    "iterator_save_args",
    "long_tail_counts",
    "make_eval_iterator",
    "make_source",
    "make_train_iterator",
    "parse_spec",
    "to_global_batch",
    "validate_data_config",
]
