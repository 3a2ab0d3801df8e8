"""`vivified new plugin NAME`: a FastAPI plugin project on the SDK, valid out of the box.

It writes manifest.json, app.py (health, one `/api/` endpoint, the SDK's Plugin in the FastAPI
lifespan, AssertionMiddleware, an event endpoint when it subscribes), main.py, docs.md, a
Dockerfile, a README, pyproject.toml and offline tests, from the templates in
`vivified/devkit/templates/` (`{{name}}` placeholders). The manifest is checked with
`vivified validate` before anything is written.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
CONTRACT_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
EVENT_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")

# template -> where it goes in the project
FILES: Mapping[str, str] = {
    "app.py.tmpl": "app.py",
    "main.py.tmpl": "main.py",
    "docs.md.tmpl": "docs.md",
    "README.md.tmpl": "README.md",
    "Dockerfile.tmpl": "Dockerfile",
    "pyproject.toml.tmpl": "pyproject.toml",
    "gitignore.tmpl": ".gitignore",
    "conftest.py.tmpl": "tests/conftest.py",
    "test_app.py.tmpl": "tests/test_app.py",
}

HANDLER = '''
    async def on_event(event: CloudEvent) -> None:
        """Each event once (the SDK skips redeliveries); raise to have core retry it."""
        log.info("received %s %s from %s", event.type, event.id, event.publisher)
'''
EVENT_ROUTE = """    # CloudEvents deliveries from core: assertion and envelope checked by the SDK
    app.router.add_route(
        "/events", plugin.event_endpoint(on_event), methods=["POST"], include_in_schema=False
    )
"""
EVENT_TEST = """

def test_event_endpoint_refuses_deliveries_without_cores_assertion() -> None:
    event = {"specversion": "1.0", "id": "e1", "source": "x", "type": "{{first_event}}"}
    r = request("POST", "/events", json=event)
    assert r.status_code == 401
    assert r.json()["reason"] == "invalid_assertion"
"""


class ScaffoldError(ValueError):
    """The project cannot be made as asked (the message says why)."""


def _event_classes() -> dict[str, str]:
    """Canonical event type -> classification, from core's catalogue ({} if not found)."""
    for module in ("vivified.registry.event_catalogue", "vivified.registry.event_types"):
        with contextlib.suppress(ImportError, AttributeError):
            catalogue = importlib.import_module(module).CATALOGUE
            return {str(t.type): str(t.classification) for t in catalogue}
    return {}


def title_of(name: str) -> str:
    return " ".join(part.capitalize() for part in name.split("-")) + " Plugin"


def contract_of(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-")) + "Plugin"


def build_manifest(
    name: str,
    *,
    contract: str | None = None,
    publishes: Iterable[str] = (),
    subscribes: Iterable[str] = (),
    sensitive: Iterable[str] = (),
) -> dict[str, Any]:
    """The project's manifest: traits and classification follow the events it handles
    (their classes from core's catalogue, plus `sensitive` ones such as "pii")."""
    pubs, subs = sorted(set(publishes)), sorted(set(subscribes))
    classes = _event_classes()
    levels = {classes.get(e, "internal") for e in (*pubs, *subs)} | set(sensitive)
    traits = ["audit_required"]
    classification = ["internal"]
    hipaa: list[str] = []
    audit_level = "basic"
    if "phi" in levels:
        traits.insert(0, "handles_phi")
        classification.append("phi")
        hipaa, audit_level = ["164.312(b)"], "detailed"
    if "pii" in levels:
        traits.insert(0, "handles_pii")
        classification.append("pii")
        audit_level = "detailed"
    if "confidential" in levels:
        classification.append("confidential")
    endpoints = {"health": "/health", "item": "/api/items/{id}"}
    if subs:
        endpoints["events"] = "/events"
    manifest: dict[str, Any] = {
        "id": name,
        "name": title_of(name),
        "version": "0.1.0",
        "description": f"{title_of(name)}: describe what it does",
        "docs": "/docs.md",  # served by app.py; core shows it in the console
        "contracts": [contract or contract_of(name)],
        "traits": traits,
        "dependencies": [],
        "allowed_domains": [],
        "endpoints": endpoints,
        "security": {"authentication_required": True, "data_classification": classification},
        "compliance": {"hipaa_controls": hipaa, "audit_level": audit_level},
    }
    if pubs or subs:
        manifest["events"] = {"publishes": pubs, "subscribes": subs}
    return manifest


def validate(manifest: Mapping[str, Any]) -> list[str]:
    """Every problem `vivified validate` finds in `manifest` (as `path: message [code]`)."""
    from vivified.cli import main as vivified

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.json"
        path.write_text(json.dumps(manifest))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            vivified(["validate", "--json", str(path)])
    report = json.loads(out.getvalue())["files"][0]
    return [f"{e['path']}: {e['message']} [{e['code']}]" for e in report["errors"]]


def _check_args(name: str, contract: str | None, events: Iterable[str]) -> None:
    if not ID_RE.fullmatch(name) or not 3 <= len(name) <= 63:
        raise ScaffoldError(
            f"{name!r} is not a plugin id: 3-63 lower-case letters, digits and single hyphens"
        )
    if contract is not None and not CONTRACT_RE.fullmatch(contract):
        raise ScaffoldError(f"{contract!r} is not a contract name such as NotificationPlugin")
    for event in events:
        if not EVENT_RE.fullmatch(event):
            raise ScaffoldError(f"{event!r} is not an event type such as UserCreated")


def render(template: str, values: Mapping[str, str]) -> str:
    text = files("vivified.devkit").joinpath("templates", template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    leftover = re.search(r"\{\{[a-z_]+\}\}", text)
    if leftover:  # a template bug, not a user error
        raise RuntimeError(f"{template}: unfilled placeholder {leftover.group()}")
    return text


def _values(manifest: Mapping[str, Any]) -> dict[str, str]:
    events = manifest.get("events") or {}
    pubs, subs = events.get("publishes", []), events.get("subscribes", [])
    lines = []
    if pubs:
        lines.append(
            "Publishes " + ", ".join(f"`{e}`" for e in pubs)
            + ': `await plugin.publish("' + pubs[0] + '", data)` (data as in `GET /events/types`).'
        )  # fmt: skip
    if subs:
        lines.append(
            "Receives " + ", ".join(f"`{e}`" for e in subs)
            + " at `POST /events` (CloudEvents 1.0, delivered at least once)."
        )  # fmt: skip
    return {
        "name": str(manifest["id"]),
        "title": str(manifest["name"]),
        "description": str(manifest["description"]),
        "classification": ", ".join(manifest["security"]["data_classification"]),
        "traits": ", ".join(manifest["traits"]),
        "sdk_imports": "CloudEvent, " if subs else "",
        "handler": HANDLER if subs else "",
        "event_route": EVENT_ROUTE if subs else "",
        "publish_route": "",
        "event_test": EVENT_TEST.replace("{{first_event}}", subs[0]) if subs else "",
        "event_rows": "| `POST /events` | event deliveries from core |\n" if subs else "",
        "events_text": "\n\n".join(lines)
        or "None yet: declare them under `events` in the manifest.",
    }


def scaffold(
    name: str,
    target: Path | None = None,
    *,
    contract: str | None = None,
    publishes: Iterable[str] = (),
    subscribes: Iterable[str] = (),
    force: bool = False,
) -> Path:
    """Write the project to `target` (default ./NAME); returns its folder."""
    publishes, subscribes = list(publishes), list(subscribes)
    _check_args(name, contract, [*publishes, *subscribes])
    target = (target or Path(name)).resolve()
    if target.exists() and any(target.iterdir()) and not force:
        raise ScaffoldError(f"{target} exists and is not empty (--force writes into it)")
    for sensitive in ((), ("pii",), ("pii", "phi")):  # the least the events need
        manifest = build_manifest(
            name, contract=contract, publishes=publishes, subscribes=subscribes, sensitive=sensitive
        )
        problems = validate(manifest)
        if not any("[event_not_covered]" in p for p in problems):
            break
    if problems:
        raise ScaffoldError("the manifest would not validate:\n  " + "\n  ".join(problems))
    values = _values(manifest)
    (target / "tests").mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for template, dest in FILES.items():
        (target / dest).write_text(render(template, values))
    return target
