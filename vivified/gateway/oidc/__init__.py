"""Admin sign-in with OpenID Connect (authlib), and the provider's access tokens on `/admin/`.

How the pieces fit:

- `provider.py` discovers the issuer at start (`serve_gateway` calls `start_oidc`): an
  unreachable issuer, a discovery document without `jwks_uri` or for another issuer, or JWKS
  that cannot be read stop the gateway with one line, never the first login.
- `flow.py` runs the authorization code flow with authlib's Starlette client
  (`authlib.integrations.starlette_client.OAuth`): authlib builds the authorization URL
  (PKCE S256, `state`, `nonce`) and exchanges the code. We do *not* use its
  `authorize_redirect`/`authorize_access_token`, which keep the pending login in
  `request.session` and so need Starlette's SessionMiddleware and a cookie-signing secret that
  every replica would have to share. The pending login (state, nonce, code verifier) is stored
  server-side in the registry (`oidc_pending_logins`, `pending.py`), keyed by the SHA-256 of a
  random value in a short-lived HttpOnly `SameSite=Lax` cookie (Lax: the provider's redirect
  back is a cross-site top-level GET), and consumed once: any replica finishes any sign-in.
- `validation.py` checks ID tokens and access tokens itself with `authlib.jose`: the algorithm
  pinned to asymmetric ones (`none` and HS* refused), the signature against the issuer's
  JWKS (`jwks.py`: an unknown `kid` refetches the JWKS, rate limited), `iss`, `aud`, `azp`,
  `exp`, `iat`, `nbf` and the `nonce`, each refusal with a stable reason code.
- `claims.py` maps the configured claim to admin scopes at every sign-in (`[oidc_scopes]`)
  and checks the email domain. Nothing is stored as a permanent grant.
- The console session is created through the console's own `open_session`, with a session
  token of the OIDC user (`vivified.registry.identity.oidc_admins`).
"""

from vivified.gateway.oidc.provider import OidcConfigError
from vivified.gateway.oidc.service import Oidc, oidc_of, start_oidc

__all__ = ["Oidc", "OidcConfigError", "oidc_of", "start_oidc"]
