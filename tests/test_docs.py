"""docs/ against the code: docs/api.md documents every public loss with its exact signature, and
the design documents the repository points to exist."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from jaxssl import losses

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api.md"

# "### `name`" followed (before the next heading) by a ```python block whose first line is the call.
_ENTRY = re.compile(r"^### `(\w+)`\n(.*?)(?=^#{2,3} |\Z)", re.M | re.S)
_CALL = re.compile(r"```python\n(\w+)\((.*?)\)\n```", re.S)


def documented_signatures(text: str) -> dict[str, list[tuple[str, str, object]]]:
    """name -> [(argument, kind, default)] of every documented function.

    ``kind`` is ``"positional"`` or ``"keyword"`` (after ``*``); ``default`` is the literal or
    ``inspect.Parameter.empty``.
    """
    out = {}
    for name, body in _ENTRY.findall(text):
        call = _CALL.search(body)
        assert call, f"docs/api.md: `{name}` has no ```python signature block"
        assert call.group(1) == name, f"docs/api.md: the block under `{name}` calls {call.group(1)}"
        args = ast.parse(f"def {name}({call.group(2)}): pass").body[0].args
        positional = [*args.posonlyargs, *args.args]
        pos_defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults))
        pos_defaults += [ast.literal_eval(d) for d in args.defaults]
        kw_defaults = [inspect.Parameter.empty if d is None else ast.literal_eval(d)
                       for d in args.kw_defaults]
        out[name] = ([(a.arg, "positional", d) for a, d in zip(positional, pos_defaults)]
                     + [(a.arg, "keyword", d) for a, d in zip(args.kwonlyargs, kw_defaults)])
    return out


def code_signature(fn) -> list[tuple[str, str, object]]:
    kinds = {inspect.Parameter.KEYWORD_ONLY: "keyword"}
    return [(p.name, kinds.get(p.kind, "positional"), p.default)
            for p in inspect.signature(fn).parameters.values()]


@pytest.fixture(scope="module")
def documented():
    return documented_signatures(API.read_text(encoding="utf-8"))


def test_every_public_loss_is_documented(documented):
    assert set(losses.__all__) - set(documented) == set(), "public but not in docs/api.md"


def test_no_documented_function_is_missing_from_the_code(documented):
    assert set(documented) - set(losses.__all__) == set(), "in docs/api.md but not public"


@pytest.mark.parametrize("name", sorted(losses.__all__))
def test_documented_signature_matches_the_code(documented, name):
    if name not in documented:
        pytest.skip("reported by test_every_public_loss_is_documented")
    assert documented[name] == code_signature(getattr(losses, name))


def test_parser_catches_a_wrong_signature():
    wrong = documented_signatures("### `dino_loss`\n\n```python\n"
                                  "dino_loss(student, teacher_logits, center)\n```\n")
    assert wrong["dino_loss"] != code_signature(losses.dino_loss)


def test_design_documents_exist_and_link_each_other():
    for name in ("methods.md", "api.md", "architecture.md"):
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert text.startswith("# "), name
        for link in re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]+)?\)", text):
            assert (ROOT / "docs" / link).resolve().exists(), f"docs/{name} links to {link}"
