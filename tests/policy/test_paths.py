"""Operator-lane paths: raw-path refusals, endpoint templates, grant patterns."""

from __future__ import annotations

import pytest

from vivified.policy.paths import (
    MAX_PATH_BYTES,
    check_raw_path,
    compile_endpoints,
    match_endpoint,
    match_path_pattern,
)

ATTACKS = [
    ("/a/../b", "dot_segment"),
    ("/a/..", "dot_segment"),
    ("/a/./b", "dot_segment"),
    ("/a/.", "dot_segment"),
    ("/a/%2e%2e/b", "dot_segment"),
    ("/a/%2E%2E/b", "dot_segment"),
    ("/a/%2e%2E/b", "dot_segment"),
    ("/a/.%2e/b", "dot_segment"),
    ("/a/%2e./b", "dot_segment"),
    ("/a/%2e/b", "dot_segment"),
    ("/a/%252e%252e/b", "dot_segment"),
    ("/a/%252E%252E/b", "dot_segment"),
    ("/a/..;x=1/b", "dot_segment"),
    ("/a/%2e%2e;/b", "dot_segment"),
    ("/a/b%2fc", "encoded_slash"),
    ("/a/b%2Fc", "encoded_slash"),
    ("/a/b%252fc", "encoded_slash"),
    ("/a/..%2fb", "dot_segment"),
    ("/a/b%5cc", "encoded_slash"),
    ("/a/b%5Cc", "encoded_slash"),
    ("/a/b%255cc", "encoded_slash"),
    ("/a/b\\c", "backslash"),
    ("/a/b\x00c", "control_character"),
    ("/a/b\tc", "control_character"),
    ("/a/b\x7fc", "control_character"),
    ("/a/b%00c", "control_character"),
    ("/a/b%0ac", "control_character"),
    ("/a/b%0D%0Ac", "control_character"),
    ("/a/b%7fc", "control_character"),
    ("/a/b%2500c", "control_character"),
    ("/a/b%zzc", "bad_encoding"),
    ("/a/b%2", "bad_encoding"),
    ("/a/%c0%ae%c0%ae/b", "bad_encoding"),
    ("/a/%25c0%25ae%25c0%25ae/b", "bad_encoding"),
    ("/a/%ff", "bad_encoding"),
    ("/a/%", "bad_encoding"),
    ("/a/%2E%2e%5C..", "encoded_slash"),
    ("/a/%252E", "dot_segment"),
    ("/a//b", "empty_segment"),
    ("//a/b", "empty_segment"),
    ("a/b", "not_absolute"),
    ("/" + "a" * MAX_PATH_BYTES, "path_too_long"),
]


@pytest.mark.parametrize(("path", "reason"), [pytest.param(p, r, id=p[:40]) for p, r in ATTACKS])
def test_unsafe_paths_are_refused(path: str, reason: str) -> None:
    verdict = check_raw_path(path.encode("latin-1"))
    assert not verdict
    assert verdict.reason == reason


def test_raw_non_utf8_bytes_are_refused() -> None:
    assert check_raw_path(b"/a/\xff\xfe").reason == "bad_encoding"


SAFE = [
    "/identity/users/42",
    "/identity/users/%E2%9C%93",
    "/x/a-b_c~d",
    "/x/a%20b",
    "/x/file.txt",
    "/x/.well-known",
    "/x/..hidden",
    "/x/a.b.c/",
    "/x/%25",
    "/x/a;b=c",
    "/x/users/caf\u00e9",
    "/",
    "/x/...",
]


@pytest.mark.parametrize("path", SAFE)
def test_ordinary_paths_pass(path: str) -> None:
    verdict = check_raw_path(path.encode("utf-8"))
    assert verdict, verdict
    assert verdict.reason == "path_ok"


ENDPOINTS = {
    "health": "/health",
    "user": "/api/users/{id}",
    "me": "/api/users/me",
    "files": "/api/files/{rest:path}",
    "list": "/api/users",
    "slash": "/api/dir/",
    "broken": "/api/{unclosed",
    "pct-literal": "/api/a%20b",
    "glued": "/api/u{id}",
    "middle-path": "/api/{p:path}/x",
    "dots": "/api/../admin",
}


@pytest.mark.parametrize(
    ("path", "template"),
    [
        pytest.param("/api/users/42", "/api/users/{id}", id="param"),
        pytest.param("/api/users/me", "/api/users/me", id="static-beats-param"),
        pytest.param("/api/users", "/api/users", id="exact"),
        pytest.param("/api/users/", None, id="trailing-slash-not-declared"),
        pytest.param("/api/users/42/extra", None, id="too-many-segments"),
        pytest.param("/api/files/a/b/c.txt", "/api/files/{rest:path}", id="path-param"),
        pytest.param("/api/files/x", "/api/files/{rest:path}", id="path-param-one"),
        pytest.param("/api/files/", None, id="path-param-empty"),
        pytest.param("/api/dir/", "/api/dir/", id="trailing-slash-declared"),
        pytest.param("/api/dir", None, id="trailing-slash-required"),
        pytest.param("/health", None, id="non-api-ignored"),
        pytest.param("/api/admin", None, id="dot-template-skipped"),
        pytest.param("/api/q/x", None, id="invalid-templates-skipped"),
        pytest.param("/api/a b", None, id="percent-literal-template-skipped"),
        pytest.param("/api/u42", None, id="glued-param-template-skipped"),
        pytest.param("/api/users/%2e%2e", "/api/users/{id}", id="param-is-opaque"),
    ],
)
def test_endpoint_matching(path: str, template: str | None) -> None:
    route = match_endpoint(compile_endpoints(ENDPOINTS), path)
    assert (route.template if route else None) == template


@pytest.mark.parametrize(
    ("pattern", "path", "ok"),
    [
        pytest.param("/api/users/*", "/api/users/42", True, id="star-one"),
        pytest.param("/api/users/*", "/api/users/42/x", False, id="star-only-one"),
        pytest.param("/api/users/*", "/api/users", False, id="star-not-zero"),
        pytest.param("/api/**", "/api/a/b/c", True, id="globstar-many"),
        pytest.param("/api/users/**", "/api/users", True, id="globstar-zero"),
        pytest.param("/api/**/x", "/api/a/b/x", True, id="globstar-middle"),
        pytest.param("/api/**/x", "/api/a/b/y", False, id="globstar-middle-miss"),
        pytest.param("/api/users", "/api/users", True, id="literal"),
        pytest.param("/api/users", "/api/user", False, id="literal-miss"),
        pytest.param("/api/users/*", "/api/users/", False, id="star-not-empty"),
        pytest.param("/api/*/items", "/api/x/items", True, id="star-middle"),
        pytest.param("/api/a**", "/api/abc", False, id="globstar-only-whole-segment"),
    ],
)
def test_grant_patterns(pattern: str, path: str, ok: bool) -> None:
    assert match_path_pattern(pattern, path) is ok
