"""jaxssl.train."""
