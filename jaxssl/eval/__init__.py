"""jaxssl.eval."""
