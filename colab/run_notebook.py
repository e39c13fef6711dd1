"""Execute a notebook top to bottom offline on CPU (nbclient + ipykernel) and report the result.

    python colab/run_notebook.py [colab/quickstart.ipynb] [--out executed.ipynb]
                                 [--timeout 300] [-p SMALL=True ...]

The kernel runs in the repository root (so ``pip install -e .`` cells and relative workdirs
work), with ``JAX_PLATFORMS=cpu`` and without the fake-device ``XLA_FLAGS`` of the test suite.
Exit status 0 when every cell ran within the time limit; 1 with the failing cell's error
otherwise. Cell stdout is echoed so callers can read printed results.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOK = ROOT / "colab" / "quickstart.ipynb"


def _imports():
    try:
        import nbclient
        import nbformat
    except ImportError as e:
        raise ImportError(
            "run_notebook needs nbclient, nbformat and ipykernel: "
            "pip install nbclient nbformat ipykernel (or pip install -e .[test])") from e
    return nbclient, nbformat


def inject_parameters(nb, parameters: Mapping[str, str]):
    """Replaces ``NAME = ...`` lines of the cell tagged ``parameters`` with ``NAME = VALUE``.

    Raises ValueError when there is no such cell or it assigns no NAME.
    """
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not parameters:
        return nb
    if not cells:
        raise ValueError("notebook has no cell tagged 'parameters' to inject into")
    cell = cells[0]
    for name, value in parameters.items():
        pattern = re.compile(rf"^{re.escape(name)} = .*$", re.MULTILINE)
        if not pattern.search(cell.source):
            raise ValueError(f"parameter {name!r} is not assigned in the parameters cell")
        line = f"{name} = {value}  # injected"
        cell.source = pattern.sub(lambda _, line=line: line, cell.source)  # no backslash escapes
    return nb


def kernel_env() -> dict[str, str]:
    """The environment of the kernel: this one, on CPU, with one XLA host device."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = flags.strip()
    return env


def stream_text(nb) -> str:
    """All stdout / stderr stream text of the executed code cells, in order."""
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


def cell_errors(nb) -> list[str]:
    """``"ename: evalue"`` of every error output in the notebook."""
    return [f"{o['ename']}: {o['evalue']}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def run_notebook(path: str | os.PathLike = DEFAULT_NOTEBOOK, *, timeout: float = 300.0,
                 parameters: Mapping[str, str] | None = None, cwd: str | os.PathLike = ROOT):
    """Executes the notebook at ``path``; returns (executed notebook, seconds taken).

    Raises ``nbclient.exceptions.CellExecutionError`` on the first failing cell and
    ``TimeoutError`` when the whole run takes longer than ``timeout`` seconds.
    """
    nbclient, nbformat = _imports()
    nb = inject_parameters(nbformat.read(os.fspath(path), as_version=4), parameters or {})
    client = nbclient.NotebookClient(
        nb, timeout=int(timeout), kernel_name="python3",
        resources={"metadata": {"path": os.fspath(cwd)}})
    t0 = time.perf_counter()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(kernel_env())  # the kernel process inherits this environment
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    seconds = time.perf_counter() - t0
    if seconds > timeout:
        raise TimeoutError(f"notebook {path} took {seconds:.0f} s, over the {timeout:.0f} s limit")
    return nb, seconds


def _parse_parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"-p expects NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebook", nargs="?", default=str(DEFAULT_NOTEBOOK))
    p.add_argument("--out", help="write the executed notebook here")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole run")
    p.add_argument("-p", "--parameter", action="append", type=_parse_parameter, default=[],
                   metavar="NAME=VALUE", help="override an assignment of the parameters cell")
    args = p.parse_args(argv)
    nbclient, nbformat = _imports()
    try:
        nb, seconds = run_notebook(args.notebook, timeout=args.timeout,
                                   parameters=dict(args.parameter))
    except (nbclient.exceptions.CellExecutionError, TimeoutError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(stream_text(nb))
    if args.out:
        nbformat.write(nb, args.out)
    print(f"executed {args.notebook} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
