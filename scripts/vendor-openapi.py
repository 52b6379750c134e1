#!/usr/bin/env python3
"""Vendor the structure of OpenAI's Admin API description into tests/data/.

Reads an excerpt of OpenAI's OpenAPI description (JSON, the GET operations the pusher
reads plus every schema they reach) and writes a structure-only copy: paths, GET
operations, parameters, request and response schemas, types, required fields, enums,
formats, defaults, `$ref`s, components and security schemes. Documentation is
dropped: every `description`, `summary` and `title`, `example`/`examples`, tags,
`externalDocs`, `$comment`, contact and terms of service, and every `x-` extension
(`x-oaiMeta` holds the examples). Keywords are dropped only where they are keywords:
a schema property called `description` is a field of the API and is kept. A keyword
the script does not know stops it, so nothing unreviewed slips into the copy.

The copy keeps the source's key order and is written deterministically, so running
the script again reproduces it byte for byte (tests/test_standalone.py checks that
where an excerpt is at hand).

Where the excerpt is read from: the SOURCE argument; else $OPENAI_OPENAPI_EXCERPT;
else the first match of `<repo>/../*/openai-admin-api/openapi-excerpt.json`.

Usage: python3 scripts/vendor-openapi.py [SOURCE] [--output PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "data" / "openai-admin-api.structure.json"
EXCERPT_ENV = "OPENAI_OPENAPI_EXCERPT"
EXCERPT_GLOB = "*/openai-admin-api/openapi-excerpt.json"
PROVENANCE_KEYS = ("repository", "commit", "path", "blob")

Json = Any
Converter = Callable[[Json, str], Json]


class UnknownKeyword(ValueError):
    """The source holds a key this script has no rule for."""


# -- what counts as documentation --------------------------------------------------

DOC_KEYWORDS = frozenset(
    {
        "description",
        "summary",
        "title",
        "example",
        "examples",
        "externalDocs",
        "$comment",
        "tags",
        "termsOfService",
        "contact",
    }
)
"""Documentation keywords, dropped wherever they stand in keyword position."""

# -- JSON Schema 2020-12 (with OpenAPI 3.1's additions) ----------------------------

_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_SCHEMA_ONE = frozenset(
    {
        "additionalProperties",
        "unevaluatedProperties",
        "propertyNames",
        "items",
        "additionalItems",
        "unevaluatedItems",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "contentSchema",
    }
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_LITERALS = frozenset(
    {
        "$schema",
        "$id",
        "$ref",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$vocabulary",
        "type",
        "enum",
        "const",
        "default",
        "format",
        "required",
        "dependentRequired",
        "multipleOf",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minContains",
        "maxContains",
        "minProperties",
        "maxProperties",
        "contentEncoding",
        "contentMediaType",
        "deprecated",
        "readOnly",
        "writeOnly",
        "nullable",
        "discriminator",
        "xml",
    }
)
"""Keywords whose values are data, not subschemas: copied unchanged."""


def _dropped(key: str) -> bool:
    return key in DOC_KEYWORDS or key.startswith("x-")


def _pointer(where: str, key: str | int) -> str:
    text = str(key).replace("~", "~0").replace("/", "~1")
    return f"{where}/{text}"


def _expect_object(node: Json, where: str) -> Mapping[str, Json]:
    if not isinstance(node, dict):
        msg = f"{where or '/'}: expected an object, got {type(node).__name__}"
        raise UnknownKeyword(msg)
    return node


def _expect_list(node: Json, where: str) -> list[Json]:
    if not isinstance(node, list):
        msg = f"{where or '/'}: expected an array, got {type(node).__name__}"
        raise UnknownKeyword(msg)
    return node


def schema(node: Json, where: str) -> Json:
    """Return a JSON Schema without its documentation keywords."""
    if isinstance(node, bool):
        return node
    out: dict[str, Json] = {}
    for key, value in _expect_object(node, where).items():
        at = _pointer(where, key)
        if _dropped(key):
            continue
        if key in _SCHEMA_MAPS:
            out[key] = _each_value(schema)(value, at)
        elif key in _SCHEMA_ONE and isinstance(value, list):  # draft-04 tuple items
            out[key] = _each_item(schema)(value, at)
        elif key in _SCHEMA_ONE:
            out[key] = schema(value, at)
        elif key in _SCHEMA_LISTS:
            out[key] = _each_item(schema)(value, at)
        elif key in _SCHEMA_LITERALS:
            out[key] = value
        else:
            raise UnknownKeyword(f"{at}: unknown schema keyword")
    return out


def _each_value(convert: Converter) -> Converter:
    def each(node: Json, where: str) -> Json:
        return {
            name: convert(value, _pointer(where, name))
            for name, value in _expect_object(node, where).items()
        }

    return each


def _each_item(convert: Converter) -> Converter:
    def each(node: Json, where: str) -> Json:
        return [
            convert(v, _pointer(where, i))
            for i, v in enumerate(_expect_list(node, where))
        ]

    return each


def _copy(node: Json, where: str) -> Json:
    return node


def _object(
    rules: Mapping[str, Converter], *, skip: frozenset[str] = frozenset()
) -> Converter:
    """Return a converter for an object whose keys follow `rules`.

    A key with a rule is kept (`info.title` is a name, not prose); other documentation
    keys and the keys in `skip` are dropped; any other key is an error.
    """

    def convert(node: Json, where: str) -> Json:
        out: dict[str, Json] = {}
        for key, value in _expect_object(node, where).items():
            at = _pointer(where, key)
            rule = rules.get(key)
            if rule is not None:
                out[key] = rule(value, at)
            elif not (_dropped(key) or key in skip):
                raise UnknownKeyword(f"{at}: unknown key")
        return out

    return convert


# -- OpenAPI 3.1 objects -----------------------------------------------------------

_server = _object({"url": _copy, "variables": _copy})
_content = _each_value(_object({"schema": schema}))
_header = _object(
    {
        "$ref": _copy,
        "required": _copy,
        "deprecated": _copy,
        "style": _copy,
        "explode": _copy,
        "schema": schema,
        "content": _content,
    }
)
_parameter = _object(
    {
        "$ref": _copy,
        "name": _copy,
        "in": _copy,
        "required": _copy,
        "deprecated": _copy,
        "allowEmptyValue": _copy,
        "style": _copy,
        "explode": _copy,
        "allowReserved": _copy,
        "schema": schema,
        "content": _content,
    }
)
_request_body = _object({"$ref": _copy, "required": _copy, "content": _content})
_response = _object(
    {"$ref": _copy, "headers": _each_value(_header), "content": _content}
)
_operation = _object(
    {
        "operationId": _copy,
        "security": _copy,
        "deprecated": _copy,
        "servers": _each_item(_server),
        "parameters": _each_item(_parameter),
        "requestBody": _request_body,
        "responses": _each_value(_response),
    }
)
_OTHER_METHODS = frozenset(
    {"put", "post", "delete", "options", "head", "patch", "trace"}
)
_path_item = _object(
    {
        "$ref": _copy,
        "servers": _each_item(_server),
        "parameters": _each_item(_parameter),
        "get": _operation,
    },
    skip=_OTHER_METHODS,
)
_security_scheme = _object(
    {
        "type": _copy,
        "scheme": _copy,
        "bearerFormat": _copy,
        "in": _copy,
        "name": _copy,
        "openIdConnectUrl": _copy,
    }
)
_components = _object(
    {
        "schemas": _each_value(schema),
        "responses": _each_value(_response),
        "parameters": _each_value(_parameter),
        "requestBodies": _each_value(_request_body),
        "headers": _each_value(_header),
        "securitySchemes": _each_value(_security_scheme),
    }
)
_info = _object({"title": _copy, "version": _copy, "license": _copy})
_document = _object(
    {
        "openapi": _copy,
        "jsonSchemaDialect": _copy,
        "info": _info,
        "servers": _each_item(_server),
        "security": _copy,
        "paths": _each_value(_path_item),
        "components": _components,
    },
    skip=frozenset({"webhooks"}),
)


# -- provenance, references, output ------------------------------------------------


def provenance(doc: Mapping[str, Json]) -> dict[str, str]:
    """Return where the excerpt comes from: repository, commit, file and blob.

    The excerpt records it in `info.x-source`; a copy written by this script records
    it in its top-level `x-source`, so converting a copy again gives the same copy.
    """
    info = doc.get("info")
    source = doc.get("x-source") or (
        info.get("x-source") if isinstance(info, dict) else None
    )
    if not isinstance(source, dict):
        msg = "the excerpt has no info.x-source naming its repository and commit"
        raise UnknownKeyword(msg)
    missing = [k for k in PROVENANCE_KEYS[:3] if not isinstance(source.get(k), str)]
    if missing:
        msg = f"the excerpt's x-source lacks {', '.join(missing)}"
        raise UnknownKeyword(msg)
    return {k: source[k] for k in PROVENANCE_KEYS if isinstance(source.get(k), str)}


def structure(doc: Json) -> dict[str, Json]:
    """Return the structure-only copy of an OpenAPI document, `x-source` first."""
    body = _document(doc, "")
    source: dict[str, Json] = {
        **provenance(doc),
        "generated_by": "scripts/vendor-openapi.py",
        "content": (
            "Structure only: the GET operations of the excerpt with their parameters, "
            "responses and security, and every schema, response and security scheme "
            "they use, with types, required fields, enums, formats, defaults and $refs "
            "copied unchanged, in the source's key order."
        ),
        "dropped": [
            "operations other than GET",
            "description, summary, title: the prose",
            "example, examples and x-oaiMeta: the examples",
            "tags, externalDocs, $comment, contact, termsOfService",
            "every other x- extension",
        ],
    }
    return {"x-source": source, **body}


def refs(node: Json, where: str = "") -> Iterator[tuple[str, str]]:
    """Yield `(pointer, target)` for every `$ref` string in `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            at = _pointer(where, key)
            if key == "$ref" and isinstance(value, str):
                yield at, value
            else:
                yield from refs(value, at)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, _pointer(where, i))


def resolve(doc: Json, ref: str) -> Json:
    """Return what a local `$ref` (`#/a/b`) points at; raise KeyError if nothing."""
    if not ref.startswith("#/"):
        raise KeyError(ref)
    node = doc
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            raise KeyError(ref)
    return node


def dangling(doc: Json) -> list[str]:
    """Return every `$ref` in `doc` that does not resolve inside it."""
    bad = []
    for at, ref in refs(doc):
        try:
            resolve(doc, ref)
        except KeyError:
            bad.append(f"{at}: {ref}")
    return bad


def render(doc: Json) -> bytes:
    """Return the file's bytes: indent 1, key order kept, UTF-8, final newline."""
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def convert(text: str | bytes) -> bytes:
    """Return the structure-only copy of the excerpt `text`; raise if it is unsound."""
    copy = structure(json.loads(text))
    bad = dangling(copy)
    if bad:
        msg = "unresolved $ref in the copy: " + "; ".join(bad)
        raise UnknownKeyword(msg)
    return render(copy)


def find_excerpt(
    root: Path = ROOT, environ: Mapping[str, str] = os.environ
) -> Path | None:
    """Return the excerpt to read: $OPENAI_OPENAPI_EXCERPT, else one beside the repo.

    When the variable is set, only its file counts (set it to a missing path to hide
    every other excerpt). Otherwise the first match, in sorted order, of
    `<root>/../*/openai-admin-api/openapi-excerpt.json`.
    """
    named = environ.get(EXCERPT_ENV)
    if named is not None:
        path = Path(named)
        return path if path.is_file() else None
    found = sorted(p for p in root.resolve().parent.glob(EXCERPT_GLOB) if p.is_file())
    return found[0] if found else None


def main(argv: list[str] | None = None) -> int:
    """Write the structure-only copy (or compare it, with --check); return the code."""
    parser = argparse.ArgumentParser(
        description="Write a structure-only copy of the Admin API OpenAPI excerpt."
    )
    parser.add_argument("source", nargs="?", type=Path, help="the excerpt (JSON)")
    parser.add_argument(
        "--output",
        type=Path,
        default=TARGET,
        help=f"default: {TARGET.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the output file differs"
    )
    args = parser.parse_args(argv)
    source: Path | None = args.source or find_excerpt()
    if source is None:
        print(
            f"no excerpt found: pass its path, set {EXCERPT_ENV}, or put it at "
            f"{ROOT.parent}/{EXCERPT_GLOB}",
            file=sys.stderr,
        )
        return 2
    try:
        data = convert(source.read_bytes())
    except (OSError, ValueError) as exc:
        print(f"{source}: {exc}", file=sys.stderr)
        return 2
    output: Path = args.output
    if args.check:
        if output.is_file() and output.read_bytes() == data:
            return 0
        print(
            f"{output} differs from what {source} gives: rerun without --check",
            file=sys.stderr,
        )
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    print(
        f"{output}: {len(data)} bytes from {source} ({source.stat().st_size} bytes)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
