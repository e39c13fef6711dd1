"""One process of the multi-process test (run by test_train_distributed.py, not collected).

Usage: python dist_worker.py WORKDIR PROCESS_ID NUM_PROCESSES PORT DEVICES_PER_PROCESS
Trains the tiny DINO recipe and, on process 0, prints one JSON line with parameter checksums.
"""

import json
import os
import sys
import time

LATE_S = 35.0


def main() -> None:
    workdir, pid, nproc, port, ndev = sys.argv[1:6]
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    if int(nproc) > 1:
        os.environ["JAXSSL_COORDINATOR"] = f"localhost:{port}"
        os.environ["JAXSSL_NUM_PROCESSES"] = nproc
        os.environ["JAXSSL_PROCESS_ID"] = pid
    import jax
    import numpy as np

    from jaxssl.train.loop import train
    from jaxssl.train.recipes import tiny

    if int(nproc) > 1 and pid == "1":
        # Arrive late, as a process compiling on a loaded host does: the first step's collective
        # must wait for it (the Gloo context alone gives up after 30 s).
        from jaxssl.train.mesh import maybe_initialize_distributed

        maybe_initialize_distributed()
        time.sleep(LATE_S)
    c = tiny("dino")
    c.train.num_steps = 3
    out = train(c, workdir)
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), out["state"].params)
    leaves = jax.tree.leaves(params)
    if jax.process_index() == 0:
        print("RESULT " + json.dumps({
            "processes": jax.process_count(), "devices": jax.device_count(),
            "abs_sum": float(sum(np.abs(x).sum() for x in leaves)),
            "first": [float(x.ravel()[0]) for x in leaves],
            "center": np.asarray(out["state"].method_state["center"])[:8].tolist(),
        }), flush=True)


if __name__ == "__main__":
    main()
