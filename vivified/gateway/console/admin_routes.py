"""The routes of the console's admin pages (egress, allowlists, grants, revisions, audit
export, admins, events, keys, manifest check); `routes.py` mounts them before the plugin
actions' catch-all `/plugins/{plugin_id}/{action}`."""

from __future__ import annotations

from starlette.routing import Route

from vivified.gateway.console import (
    admins,
    egress,
    events,
    export,
    grants,
    keys,
    manifest_check,
    plugin_extras,
    revisions,
)

ROUTES = [
    Route("/plugins/{plugin_id}/allowlist", plugin_extras.save_allowlist, methods=["POST"]),
    Route("/egress", egress.egress_page, methods=["GET"]),
    Route("/egress", egress.save_egress, methods=["POST"]),
    Route("/grants", grants.grants_page, methods=["GET"]),
    Route("/grants", grants.create, methods=["POST"]),
    Route("/grants/explain", grants.explain, methods=["GET"]),
    Route("/grants/{grant_id}/delete", grants.delete, methods=["POST"]),
    Route("/contracts/{contract}", grants.choose, methods=["POST"]),
    Route("/revisions", revisions.revisions_page, methods=["GET"]),
    Route("/revisions/{rev}", revisions.revision_page, methods=["GET"]),
    Route("/revisions/{rev}/revert", revisions.revert, methods=["POST"]),
    Route("/audit/export", export.export, methods=["GET"]),
    Route("/admins", admins.admins_page, methods=["GET"]),
    Route("/admins", admins.create_user, methods=["POST"]),
    Route("/admins/{user_id}", admins.user_page, methods=["GET"]),
    Route("/admins/{user_id}/tokens", admins.create_token, methods=["POST"]),
    Route("/admin-tokens/{token_id}/revoke", admins.revoke_token, methods=["POST"]),
    Route("/events", events.events_page, methods=["GET"]),
    Route("/events/dead-letters/{seq}/replay", events.replay, methods=["POST"]),
    Route("/events/dead-letters/{seq}/discard", events.discard, methods=["POST"]),
    Route("/keys", keys.keys_page, methods=["GET"]),
    Route("/keys/rotate", keys.rotate_action, methods=["POST"]),
    Route("/manifest", manifest_check.manifest_page, methods=["GET"]),
    Route("/manifest", manifest_check.check, methods=["POST"]),
]
