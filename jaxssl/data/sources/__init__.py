"""grain random-access data sources yielding ``{"image": uint8 [H, W, C], "label": int}``."""

from jaxssl.data.sources.folder import CorruptImageError, ImageFolderSource
from jaxssl.data.sources.idx import IdxSource, load_idx_split
from jaxssl.data.sources.npz import NpzSource

__all__ = ["CorruptImageError", "IdxSource", "ImageFolderSource", "NpzSource", "load_idx_split"]
