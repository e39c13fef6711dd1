"""jaxssl.data."""
