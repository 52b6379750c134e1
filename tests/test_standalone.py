"""The repository stands on its own: its API description, its links, its references.

- `tests/data/openai-admin-api.structure.json` is the structure of OpenAI's Admin API
  description, vendored by `scripts/vendor-openapi.py`: every `$ref` in it resolves
  inside it and it holds no prose. Where the excerpt it was made from is at hand
  ($OPENAI_OPENAPI_EXCERPT, or `openai-admin-api/openapi-excerpt.json` in a folder
  beside the repository), the script reproduces it byte for byte and its schemas accept
  and reject exactly what the excerpt's do; elsewhere those two tests are skipped.
- No tracked file refers to design notes or folders outside the repository, and every
  relative link in the Markdown files leads to a file of the repository.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "vendor-openapi.py"
SPEC = ROOT / "tests" / "data" / "openai-admin-api.structure.json"
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()
# Built by concatenation, so that this file does not contain what it looks for.
OUTSIDE_REFERENCES = ("DESIGN" + ".md", ".." + "/shared")
DOC_KEYWORDS = {"description", "summary", "title", "example", "examples", "$comment"}
JSON_MEDIA = "application~1json"


def _load_script() -> ModuleType:
    """Import scripts/vendor-openapi.py (not a package module: its name has a dash)."""
    spec = importlib.util.spec_from_file_location("vendor_openapi", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VENDOR = _load_script()


def _spec() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SPEC.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(name="excerpt", scope="module")
def _excerpt() -> Path:
    """Return the excerpt the script would read, or skip where there is none."""
    found: Path | None = VENDOR.find_excerpt(ROOT)
    if found is None:
        pytest.skip(
            f"no OpenAPI excerpt at hand (set {VENDOR.EXCERPT_ENV}, or put "
            f"{VENDOR.EXCERPT_GLOB} beside the repository): only the committed "
            "copy is checked"
        )
    return found


# -- the vendored copy, on its own ----------------------------------------------------


def test_every_ref_resolves_inside_the_copy() -> None:
    """Each `$ref` of the copy points at something in the copy."""
    doc = _spec()
    found = list(VENDOR.refs(doc))
    assert len(found) > 50, found
    assert VENDOR.dangling(doc) == []


_NAMES_NOT_PROSE = {"/x-source", "/info/title"}
"""Where the copy keeps a documentation keyword: its provenance and the API's name."""


def _doc_keywords(node: Any, where: str = "") -> Iterator[str]:
    """Yield the pointer of every documentation keyword in keyword position."""
    if isinstance(node, dict):
        for key, value in node.items():
            at = f"{where}/{key}"
            keyword = key in DOC_KEYWORDS or key.startswith("x-")
            allowed = where.endswith("/properties") or at in _NAMES_NOT_PROSE
            if keyword and not allowed:
                yield at
            yield from _doc_keywords(value, at)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _doc_keywords(value, f"{where}/{i}")


def test_the_copy_holds_no_prose_or_examples() -> None:
    """No description, summary, example or extension is left, and converting the copy
    again changes nothing."""
    assert list(_doc_keywords(_spec())) == []
    assert VENDOR.convert(SPEC.read_bytes()) == SPEC.read_bytes()


def test_the_copy_names_its_source() -> None:
    """`x-source` comes first and names the repository, commit and file."""
    doc = _spec()
    assert next(iter(doc)) == "x-source"
    source = doc["x-source"]
    assert source["repository"] == "https://github.com/openai/openai-openapi"
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert source["path"] == "openapi.yaml"


def test_the_copy_has_the_get_operations_only() -> None:
    """The excerpt's 18 GET operations, and the schemas the fake is checked with."""
    doc = _spec()
    assert len(doc["paths"]) == 18
    assert all(list(item) == ["get"] for item in doc["paths"].values())
    for name in ("UsageResponse", "CostsResult", "ProjectListResponse", "Project"):
        assert name in doc["components"]["schemas"]
    assert "TooManyRequests" in doc["components"]["responses"]
    assert set(doc["components"]["securitySchemes"]) >= {"AdminApiKeyAuth"}


def test_the_script_drops_keywords_but_keeps_fields_named_like_them() -> None:
    """A property called `description` is data; a `description` keyword is prose."""
    source = {
        "openapi": "3.1.0",
        "info": {
            "title": "T",
            "version": "1",
            "description": "prose",
            "x-source": {"repository": "r", "commit": "c", "path": "p"},
        },
        "paths": {
            "/a": {
                "get": {
                    "summary": "prose",
                    "operationId": "a",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "description": "prose",
                            "example": 3,
                            "schema": {"type": "integer", "default": 7},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "prose",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/A"},
                                    "examples": {"one": {"value": {}}},
                                }
                            },
                        }
                    },
                    "x-oaiMeta": {"examples": {"response": "{}"}},
                },
                "post": {"operationId": "b", "responses": {}},
            }
        },
        "components": {
            "schemas": {
                "A": {
                    "type": "object",
                    "description": "prose",
                    "properties": {
                        "description": {"type": "string", "description": "prose"},
                        "title": {"anyOf": [{"type": "string", "title": "x"}]},
                        "kind": {"enum": [{"description": "an enum value"}]},
                    },
                    "required": ["description"],
                    "x-stainless-const": True,
                }
            }
        },
    }
    out = json.loads(VENDOR.convert(json.dumps(source)))
    assert out["x-source"]["commit"] == "c"
    assert out["info"] == {"title": "T", "version": "1"}
    assert out["paths"] == {
        "/a": {
            "get": {
                "operationId": "a",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "default": 7},
                    }
                ],
                "responses": {
                    "200": {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/A"}
                            }
                        }
                    }
                },
            }
        }
    }
    assert out["components"]["schemas"]["A"] == {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "title": {"anyOf": [{"type": "string"}]},
            "kind": {"enum": [{"description": "an enum value"}]},
        },
        "required": ["description"],
    }


@pytest.mark.parametrize(
    "change",
    [{"unevaluatedThings": True}, {"$ref": "#/components/schemas/Missing"}],
    ids=["unknown-keyword", "dangling-ref"],
)
def test_the_script_refuses_what_it_cannot_vouch_for(change: dict[str, Any]) -> None:
    """An unknown schema keyword or a `$ref` that leads nowhere stops the script."""
    source = {
        "info": {"x-source": {"repository": "r", "commit": "c", "path": "p"}},
        "components": {"schemas": {"A": {"type": "object", **change}}},
    }
    with pytest.raises(ValueError, match=r"unknown schema keyword|unresolved"):
        VENDOR.convert(json.dumps(source))


# -- the copy against the excerpt it was made from -----------------------------------


def test_the_copy_is_what_the_script_makes_of_the_excerpt(excerpt: Path) -> None:
    """Rerunning the conversion reproduces the committed file byte for byte."""
    made: bytes = VENDOR.convert(excerpt.read_bytes())
    committed = SPEC.read_bytes()
    if made != committed:
        diff = difflib.unified_diff(
            committed.decode().splitlines(),
            made.decode().splitlines(),
            "committed",
            "regenerated",
            lineterm="",
        )
        pytest.fail(
            f"{SPEC.relative_to(ROOT)} is out of date with {excerpt}: run "
            "python3 scripts/vendor-openapi.py\n" + "\n".join(list(diff)[:40])
        )


_DELETE = object()
_REPLACEMENTS: tuple[object, ...] = (_DELETE, None, "x", 1.5, [])


def _variants(instance: Any) -> Iterator[Any]:
    """Yield the instance, then copies with one value deleted or of another type."""
    yield instance
    slots: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        keys = node.keys() if isinstance(node, dict) else range(len(node))
        for key in keys:
            slots.append((*path, key))
            if isinstance(node[key], dict | list):
                walk(node[key], (*path, key))

    if isinstance(instance, dict | list):
        walk(instance, ())
    for *parents, last in slots:
        for replacement in _REPLACEMENTS:
            variant = copy.deepcopy(instance)
            node = variant
            for key in parents:
                node = node[key]
            if replacement is _DELETE:
                del node[last]
            else:
                node[last] = replacement
            yield variant


def _checker(doc: dict[str, Any], uri: str) -> Callable[[str, Any], list[str]]:
    """Return `errors(pointer, instance)` against the schema at `#pointer` of `doc`."""
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(uri, resource)
    validators: dict[str, Draft202012Validator] = {}

    def errors(pointer: str, instance: Any) -> list[str]:
        validator = validators.get(pointer)
        if validator is None:
            validator = validators[pointer] = Draft202012Validator(
                {"$ref": f"{uri}#{pointer}"}, registry=registry
            )
        found = validator.iter_errors(instance)
        return sorted(
            f"{'/'.join(map(str, e.absolute_path))}: {e.validator}: {e.message}"
            for e in found
        )

    return errors


def _examples(doc: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Yield `(schema pointer, example)` for every example response and object."""
    for path, item in doc["paths"].items():
        text = item["get"].get("x-oaiMeta", {}).get("examples", {}).get("response")
        if text:
            escaped = path.replace("~", "~0").replace("/", "~1")
            pointer = f"/paths/{escaped}/get/responses/200/content/{JSON_MEDIA}/schema"
            yield pointer, json.loads(text)
    for name, schema in doc["components"]["schemas"].items():
        text = schema.get("x-oaiMeta", {}).get("example")
        if text:
            yield f"/components/schemas/{name}", json.loads(text)
    error = {"error": {"message": "m", "type": "t", "param": None, "code": None}}
    yield "/components/schemas/ErrorResponse", error


def test_the_copy_validates_like_the_excerpt(excerpt: Path) -> None:
    """The excerpt's examples, and every one-value change of them, get the same errors
    from the copy's schemas as from the excerpt's."""
    original = json.loads(excerpt.read_text(encoding="utf-8"))
    by_excerpt = _checker(original, "urn:test:excerpt")
    by_copy = _checker(_spec(), "urn:test:copy")
    examples = list(_examples(original))
    assert len(examples) >= 30
    checked = rejected = 0
    for pointer, example in examples:
        assert by_excerpt(pointer, example) == [], pointer
        for variant in _variants(example):
            expected = by_excerpt(pointer, variant)
            assert by_copy(pointer, variant) == expected, (pointer, variant)
            checked += 1
            rejected += bool(expected)
    assert checked > 1000
    assert rejected > checked // 4


# -- references and links ---------------------------------------------------------


def _tracked_files() -> list[str]:
    """Return the files git tracks here, or skip where this is not a git checkout."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    done = subprocess.run(
        [git, "-C", str(ROOT), "ls-files", "-z"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        pytest.skip(f"not a git checkout: {done.stderr.decode(errors='replace')}")
    return [name for name in done.stdout.decode().split("\0") if name]


def test_no_tracked_file_refers_outside_the_repository() -> None:
    """Design notes and API facts live here (docs/design.md, tests/data/)."""
    names = _tracked_files()
    assert "README.md" in names
    offenders = []
    for name in names:
        path = ROOT / name
        if name == THIS or not path.is_file():
            continue
        text = path.read_bytes()
        for needle in OUTSIDE_REFERENCES:
            for number, line in enumerate(text.splitlines(), 1):
                if needle.encode() in line:
                    offenders.append(f"{name}:{number}: {needle}")
    assert offenders == []


_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`+[^`\n]*`+")
_INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(path: Path) -> str:
    """Return a Markdown file without its code blocks and code spans."""
    return _INLINE_CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))


def _anchors(path: Path) -> set[str]:
    """Return the heading anchors GitHub makes for a Markdown file."""
    seen: dict[str, int] = {}
    anchors = set()
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    for heading in _HEADING.findall(text):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _markdown_files() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found += sorted((ROOT / "deploy").rglob("*.md"))
    return [p for p in found if p.is_file()]


@pytest.mark.parametrize(
    "doc", _markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_relative_links_lead_into_the_repository(doc: Path) -> None:
    """Every relative link (and its #anchor, in Markdown) leads to a file here."""
    text = _prose(doc)
    targets = _INLINE_LINK.findall(text) + _REFERENCE.findall(text)
    broken = []
    for target in targets:
        if _SCHEME.match(target):
            continue
        name, _, anchor = target.partition("#")
        path = (doc.parent / name).resolve() if name else doc
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.name}")
    assert broken == []
