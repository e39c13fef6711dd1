"""Re-exports :mod:`jaxssl.ops.schedules` (the schedules are pure functions shared with
``jaxssl.data.scale_schedule``, so they live in the ``ops`` layer below both)."""

from jaxssl.ops.schedules import cosine_ramp, linear_warmup, warmup_cosine

__all__ = ["cosine_ramp", "linear_warmup", "warmup_cosine"]
