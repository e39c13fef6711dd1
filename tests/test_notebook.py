"""The Colab quick-start notebook: committed JSON equals its builder's output, and it executes
top to bottom offline on CPU (SMALL=True) with no cell error and a numeric k-NN accuracy."""

from __future__ import annotations

import importlib.util
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
nbformat = pytest.importorskip("nbformat")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "colab" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebook_is_the_builder_output():
    build = _load("build_notebook")
    assert (ROOT / "colab" / "quickstart.ipynb").read_text(encoding="utf-8") == build.render()
    nb = nbformat.read(ROOT / "colab" / "quickstart.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "SMALL = True" in params[0].source
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for name in ("dino_loss", "koleo_proto_loss", "count_unique_prototypes", "excb_loss",
                 "carp_loss", "random_partition", "msn_loss", "uniform_prior",
                 "power_law_prior"):
        assert f"losses.{name}(" in code, name


def test_parameter_injection():
    run = _load("run_notebook")
    nb = nbformat.read(ROOT / "colab" / "quickstart.ipynb", as_version=4)
    run.inject_parameters(nb, {"SMALL": "False", "SEED": "3"})
    source = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "SMALL = False  # injected" in source and "SEED = 3  # injected" in source
    with pytest.raises(ValueError, match="'NOPE' is not assigned"):
        run.inject_parameters(nb, {"NOPE": "1"})


def _run_data_cell(tmp_path, monkeypatch, urlopen) -> dict:
    """Runs the parameters and data cells with no local Fashion-MNIST and ``urlopen`` as network."""
    import urllib.request

    from jaxssl.data.sources import idx

    build = _load("build_notebook")
    monkeypatch.setitem(idx._SYSTEM_DIRS, "fashion_mnist", ())
    monkeypatch.delenv("JAXSSL_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    namespace = {"os": os}
    exec(build.PARAMETERS, namespace)
    namespace["WORKDIR"] = str(tmp_path / "run")
    exec(build.DATA, namespace)
    return namespace


def test_data_cell_is_synthetic_only_when_offline(tmp_path, monkeypatch, capsys):
    import urllib.error

    urls = []

    def offline(url, timeout):
        urls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    namespace = _run_data_cell(tmp_path, monkeypatch, offline)
    printed = capsys.readouterr().out
    assert namespace["source"] == "synthetic"
    assert "OFFLINE" in printed and "SYNTHETIC" in printed
    assert "fashion-mnist.s3-website" in printed  # the URL tried is named
    assert urls and all("fashion" in url for url in urls)
    assert np.load(f"{namespace['DATA_DIR']}/train.npz")["images"].shape == (4000, 28, 28)


def test_data_cell_stops_on_a_wrong_download(tmp_path, monkeypatch):
    from jaxssl.data.sources.idx import ChecksumError

    class NotTheOfficialFile(io.BytesIO):
        def __init__(self, url, timeout):
            super().__init__(b"<html>captive portal</html>")

    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz has SHA-256"):
        _run_data_cell(tmp_path, monkeypatch, NotTheOfficialFile)


@pytest.mark.slow
def test_notebook_runs_offline_on_cpu(tmp_path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    run = _load("run_notebook")
    workdir = repr(str(tmp_path / "run"))
    nb, seconds = run.run_notebook(timeout=300, parameters={"WORKDIR": workdir})
    assert run.cell_errors(nb) == []
    text = run.stream_text(nb)
    match = re.search(r"^KNN_TOP1 = (\d+\.\d+)$", text, re.MULTILINE)
    assert match, text[-2000:]
    accuracy = float(match.group(1))
    assert 0.0 <= accuracy <= 1.0
    assert "dino_loss:" in text and "msn_loss (power law prior):" in text
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    assert (tmp_path / "run" / "export" / "teacher_backbone.msgpack").exists()
    if importlib.util.find_spec("torch") is not None:
        _export_matches_torch(tmp_path / "run")
    assert seconds < 300


def _export_matches_torch(workdir: Path) -> None:
    """The trained ExCB checkpoint's teacher ViT, exported to torch, gives the JAX features."""
    import jax.numpy as jnp
    import numpy as np

    from jaxssl.export import export, load_backbone
    from jaxssl.models import create_backbone

    test_export = _load_test_module("test_export")
    torch, *_, TorchViT = test_export._torch_models()
    path = export(str(workdir), "torch")
    backbone = load_backbone(str(workdir))
    model = create_backbone(backbone.name, **backbone.kwargs)
    x = np.random.default_rng(0).normal(size=(2, model.img_size, model.img_size, 3))
    x = x.astype(np.float32)
    ours = np.asarray(model.apply(backbone.variables(), jnp.asarray(x)))
    torch_model = TorchViT(model.patch_size, model.embed_dim, model.depth, model.num_heads,
                           model.img_size, model.mlp_ratio)
    theirs = test_export._torch_features(torch, torch_model, torch.load(path), x)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def _load_test_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
