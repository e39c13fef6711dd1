"""jaxssl.methods."""
