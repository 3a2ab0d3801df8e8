"""Dependency cycles: warned with their path at registration and by `vivified validate`."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.manifests import simple
from support.procs import ADMIN_TOKEN, CoreProcess, register, registration_token

from vivified.registry.manifest.cli import validate_files
from vivified.registry.manifest.cycles import cycle_path, cycle_warnings


@pytest.mark.parametrize(
    ("graph", "members", "path"),
    [
        pytest.param({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c"], "a b c a", id="three"),
        pytest.param({"b": ["a"], "a": ["b"]}, ["a", "b"], "a b a", id="two"),
        pytest.param({"a": ["c"], "c": ["b"], "b": ["a"]}, ["a", "b", "c"], "a c b a", id="order"),
    ],
)
def test_cycle_path(graph: dict[str, list[str]], members: list[str], path: str) -> None:
    assert cycle_path(graph, members) == path.split()


def test_only_cycles_through_the_plugin_are_warned() -> None:
    graph = {"a": ["b"], "b": ["a"], "x": ["y"], "y": ["x"], "z": ["a"]}
    assert [w.message for w in cycle_warnings(graph, only="x")] == [
        "circular dependency: x → y → x"
    ]
    assert cycle_warnings(graph, only="z") == []


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[httpx.Client]:
    proc = CoreProcess("gateway", tmp_path / "gw").start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30, trust_env=False) as c:
            yield c
    finally:
        proc.stop()


def test_a_cycle_of_three_warns_on_the_third_registration(gw: httpx.Client) -> None:
    codes = []
    for pid, dep in (("ring-a", "ring-b"), ("ring-b", "ring-c"), ("ring-c", "ring-a")):
        r = register(gw, simple(pid, dependencies=[dep]), registration_token(gw))
        assert r.status_code == 201, r.text
        codes.append([w for w in r.json()["warnings"] if w["code"] == "dependency_cycle"])
    assert codes[:2] == [[], []]
    assert codes[2] == [
        {
            "path": "/dependencies",
            "code": "dependency_cycle",
            "message": "circular dependency: ring-a → ring-b → ring-c → ring-a",
        }
    ]


def test_validate_warns_about_a_cycle_among_the_files(tmp_path: Path) -> None:
    paths = []
    for pid, dep in (("p-a", "p-b"), ("p-b", "p-a"), ("p-c", "p-a")):
        path = tmp_path / f"{pid}.json"
        path.write_text(json.dumps(simple(pid, dependencies=[dep])))
        paths.append(str(path))
    out = io.StringIO()
    assert validate_files(paths, as_json=True, out=out) == 0
    files = json.loads(out.getvalue())["files"]
    cycles = [
        [w["message"] for w in f["warnings"] if w["code"] == "dependency_cycle"] for f in files
    ]
    assert cycles == [
        ["circular dependency: p-a → p-b → p-a"],
        ["circular dependency: p-a → p-b → p-a"],
        [],
    ]


def test_console_plugin_page_shows_the_cycle(gw: httpx.Client) -> None:
    for pid, dep in (("loop-a", "loop-b"), ("loop-b", "loop-a")):
        r = register(gw, simple(pid, dependencies=[dep]), registration_token(gw))
        assert r.status_code == 201, r.text
    r = gw.post("/console/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"].split(";", 1)[0]
    page = gw.get("/console/plugins/loop-b", headers={"Cookie": cookie})
    assert page.status_code == 200, page.text
    assert "Dependency cycles" in page.text
    assert "circular dependency: loop-a → loop-b → loop-a" in page.text
