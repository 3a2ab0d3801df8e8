"""The Admin Console at `/console`: server-rendered pages (Jinja2) with htmx, no build step.

Sessions live in the registry (any replica accepts them), every form carries the session's
CSRF token, every response a strict Content-Security-Policy, and every route checks the
admin's scopes on the server whatever the page showed.
"""

from vivified.gateway.console.routes import mount

__all__ = ["mount"]
