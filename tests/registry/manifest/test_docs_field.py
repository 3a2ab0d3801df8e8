"""The optional manifest field `docs`: a path under `base_url` to the plugin's Markdown page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from support.manifests import simple

from vivified.registry.manifest.schema import manifest_json_schema
from vivified.registry.manifest.validator import validate_manifest


def problems(docs: object) -> list[tuple[str, str]]:
    result = validate_manifest(simple("documented", docs=docs))
    return [(p.path, p.code) for p in result.errors]


VALID = [
    pytest.param("/docs.md", id="root-file"),
    pytest.param("/static/help/README.md", id="nested"),
    pytest.param("/docs", id="no-extension"),
    pytest.param("/docs.md?lang=en", id="query"),
    pytest.param("/" + "a" * 255, id="256-chars"),
    pytest.param("/my.docs.v2.md", id="single-dots"),
]


@pytest.mark.parametrize("docs", VALID)
def test_valid_docs_paths_are_kept(docs: str) -> None:
    result = validate_manifest(simple("documented", docs=docs))
    assert result.errors == (), result.errors
    assert result.manifest is not None
    assert result.manifest["docs"] == docs


def test_docs_is_optional() -> None:
    result = validate_manifest(simple("undocumented"))
    assert result.ok
    assert result.manifest is not None
    assert "docs" not in result.manifest


INVALID = [
    pytest.param(42, "invalid_type", id="number"),
    pytest.param(None, "invalid_type", id="null"),
    pytest.param(["/docs.md"], "invalid_type", id="list"),
    pytest.param("", "invalid_docs_path", id="empty"),
    pytest.param("docs.md", "invalid_docs_path", id="relative"),
    pytest.param("https://evil.example/docs.md", "invalid_docs_path", id="absolute-url"),
    pytest.param("javascript:alert(1)", "invalid_docs_path", id="javascript-scheme"),
    pytest.param("//evil.example/docs.md", "invalid_docs_path", id="scheme-relative-host"),
    pytest.param("/\\evil.example/docs.md", "invalid_docs_path", id="backslash-host"),
    pytest.param("/../secrets.md", "invalid_docs_path", id="dot-dot"),
    pytest.param("/a/%2e%2e/b.md", "invalid_docs_path", id="encoded-dot-dot"),
    pytest.param("/a/%2E%2e/b.md", "invalid_docs_path", id="encoded-dot-dot-upper"),
    pytest.param("/redirect?to=http://evil.example", "invalid_docs_path", id="scheme-in-query"),
    pytest.param("/docs .md", "invalid_docs_path", id="whitespace"),
    pytest.param("/docs\n.md", "invalid_docs_path", id="newline"),
    pytest.param("/docs.md#intro", "invalid_docs_path", id="fragment"),
    pytest.param("/" + "a" * 256, "invalid_docs_path", id="257-chars"),
]


@pytest.mark.parametrize(("docs", "code"), INVALID)
def test_invalid_docs_paths_are_refused_with_a_pointer(docs: object, code: str) -> None:
    result = validate_manifest(simple("documented", docs=docs))
    assert [(p.path, p.code) for p in result.errors] == [("/docs", code)]
    assert result.manifest is None
    assert result.errors[0].message  # a fix-it sentence


def test_the_schema_describes_docs() -> None:
    schema: dict[str, Any] = manifest_json_schema()
    docs = schema["properties"]["docs"]
    assert docs["type"] == "string"
    assert docs["maxLength"] == 256
    assert "docs" not in schema["required"]
    pattern = re.compile(docs["pattern"])
    for param in VALID:
        assert pattern.search(param.values[0]), param.id
    for param in INVALID:
        value = param.values[0]
        if isinstance(value, str) and len(value) <= 256:
            assert not pattern.search(value), param.id
