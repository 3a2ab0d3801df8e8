"""vivified-sdk: what a Python plugin needs to live on a Vivified core.

Depends only on core's wire contract (HTTP routes, JWTs, CloudEvents), never on core's code.

- `Plugin`: registration from a manifest, token file and refresh, heartbeats, `call`,
  `publish`, `event_endpoint`, `middleware`, `egress_client`;
- `AssertionMiddleware` and `JwksCache`: accept only calls core vouches for;
- `EventEndpoint`: receive events (assertion, CloudEvents envelope, dedupe);
- typed errors (`CoreError` and its subclasses) for every problem+json answer.
"""

from vivified_sdk.assertion import InvalidAssertion, verify_assertion
from vivified_sdk.client import Backoff, CoreClient
from vivified_sdk.errors import (
    AuthenticationFailed,
    Conflict,
    CoreError,
    CoreUnreachable,
    InvalidRequest,
    NotFound,
    NotRegistered,
    PermissionDenied,
    ProblemItem,
    RateLimited,
    RegistrationRefused,
    ServiceUnavailable,
    VivifiedError,
)
from vivified_sdk.events import CloudEvent, EventEndpoint
from vivified_sdk.jwks import JwksCache
from vivified_sdk.middleware import AssertionMiddleware
from vivified_sdk.plugin import Plugin, Registration
from vivified_sdk.tokens import PluginToken, TokenStore

__version__ = "0.1.0"

__all__ = [
    "AssertionMiddleware",
    "AuthenticationFailed",
    "Backoff",
    "CloudEvent",
    "Conflict",
    "CoreClient",
    "CoreError",
    "CoreUnreachable",
    "EventEndpoint",
    "InvalidAssertion",
    "InvalidRequest",
    "JwksCache",
    "NotFound",
    "NotRegistered",
    "PermissionDenied",
    "Plugin",
    "PluginToken",
    "ProblemItem",
    "RateLimited",
    "Registration",
    "RegistrationRefused",
    "ServiceUnavailable",
    "TokenStore",
    "VivifiedError",
    "verify_assertion",
]
