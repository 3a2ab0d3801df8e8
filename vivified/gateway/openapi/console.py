"""Operations that are not JSON: the console's HTML pages and forms, and the operator lane.

The console is for browsers: a session cookie (signed in at `/console/login` with an admin
token or the OIDC provider), HTML pages, form posts answered with 303 redirects, and HTML
error pages. The operator lane relays a plugin's call to another plugin's declared endpoint:
what it answers is the target's own response, or problem+json when core refuses the call.
"""

from __future__ import annotations

from vivified.gateway.openapi.components import STRING, Schema

CONSOLE_SECURITY: list[dict[str, list[str]]] = [{"consoleSession": []}]
CONSOLE_SCHEME: Schema = {
    "type": "apiKey",
    "in": "cookie",
    "name": "vivified_console",
    "description": "the console's session cookie (set by /console/login)",
}
HTML: Schema = {"text/html": {"schema": STRING}}
REDIRECT: Schema = {
    "description": "see other: the next page (or the sign-in page)",
    "headers": {"Location": {"schema": STRING}},
}
ERROR_PAGE: Schema = {
    "description": "an HTML error page",
    "content": {
        **HTML,
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
    },
}
FORM: Schema = {
    "required": False,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {"type": "object", "additionalProperties": STRING}
        }
    },
}
LANE_METHODS = ("delete", "get", "patch", "post", "put")
LANE_SUMMARY = "Operator API lane: call the `service` plugin's declared endpoint at `rest`"


def console_operation(method: str, summary: str) -> Schema:
    """A console page (GET) or form post (POST)."""
    responses: Schema = {"303": REDIRECT, "default": ERROR_PAGE}
    if method == "get":
        responses["200"] = {"description": "the page", "content": HTML}
    out: Schema = {
        "summary": summary,
        "tags": ["console"],
        "security": CONSOLE_SECURITY,
        "responses": responses,
    }
    if method == "post":
        out["requestBody"] = FORM
    return out


def lane_operation(method: str) -> Schema:
    """The operator lane: the target plugin's answer passes through unchanged."""
    out: Schema = {
        "summary": LANE_SUMMARY,
        "tags": ["operator"],
        "description": "A plugin token calls the endpoint `rest` (under /api/) that plugin "
        "`service` (an id, or a contract it provides) declares. The answer is the target's; "
        "a refusal by core is problem+json with a reason code.",
        "responses": {
            "default": {
                "description": "the target plugin's answer, or problem details from core",
                "content": {
                    "*/*": {},
                    "application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}
                    },
                },
            }
        },
    }
    if method in ("patch", "post", "put"):
        out["requestBody"] = {"required": False, "content": {"*/*": {}}}
    return out
