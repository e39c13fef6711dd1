"""jaxssl.train."""

from jaxssl._extras import require_train_extra

require_train_extra(__name__)
