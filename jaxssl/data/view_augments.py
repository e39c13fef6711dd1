"""Config -> the photometric augmentation of every view (global views, local views)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxssl.data.augment import ViewAugment

# ExCB's released code inverts the DINO blur probabilities: first global never, every further
# global 0.9, locals never (``augment.released_excb_blur``).
RELEASED_EXCB_BLUR = {"global1": 0.0, "global2": 0.9, "local": 0.0}


def view_augments(config: Mapping[str, Any]) -> tuple[tuple[ViewAugment, ...],
                                                      tuple[ViewAugment, ...]]:
    """Per-view photometric settings (global views, local views) from ``config.augment`` and
    the view counts ``config.data.{global,local}_crops.num``.

    View 0 uses ``augment.global1``, every further global view ``augment.global2``, locals
    ``augment.local``, all normalised with ``augment.mean``/``augment.std``.
    ``released_excb_blur`` reproduces the ExCB code's inverted blur probabilities
    (``RELEASED_EXCB_BLUR``).

    >>> from jaxssl.train.defaults import base_config
    >>> glob, loc = view_augments(base_config())
    >>> [v.blur_prob for v in glob], len(loc), loc[0].blur_prob
    ([1.0, 0.1], 4, 0.5)
    """
    a = config.augment

    def make(name: str) -> ViewAugment:
        fields = dict(a[name])
        if a.released_excb_blur:
            fields["blur_prob"] = RELEASED_EXCB_BLUR[name]
        fields["blur_sigma"] = tuple(fields["blur_sigma"])
        return ViewAugment(mean=tuple(a.mean), std=tuple(a.std), **fields)

    num_global, num_local = config.data.global_crops.num, config.data.local_crops.num
    glob = tuple(make("global1" if i == 0 else "global2") for i in range(num_global))
    return glob, tuple(make("local") for _ in range(num_local))
