"""jaxssl.models."""
