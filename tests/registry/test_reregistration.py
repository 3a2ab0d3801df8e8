"""Who may register a new id, and who may register a known id again."""

from __future__ import annotations

import pytest

from vivified.registry.reregistration import (
    Credential,
    RegistryError,
    check_existing,
    check_new,
)

OPEN = Credential("open", "anonymous")
UNBOUND = Credential("registration_token", "regtoken:1", None, "1")
BOUND_ALPHA = Credential("registration_token", "regtoken:2", "alpha", "2")
BOUND_BETA = Credential("registration_token", "regtoken:3", "beta", "3")
ALPHA_TOKEN = Credential("plugin_token", "alpha", "alpha")
BETA_TOKEN = Credential("plugin_token", "beta", "beta")

CASES = [
    # (credential, new id allowed?, code when refused; known id allowed?, code when refused)
    pytest.param(OPEN, None, "plugin_id_taken", id="open"),
    pytest.param(UNBOUND, None, "plugin_id_taken", id="unbound-registration-token"),
    pytest.param(BOUND_ALPHA, None, None, id="registration-token-bound-to-it"),
    pytest.param(
        BOUND_BETA,
        "registration_token_bound",
        "registration_token_bound",
        id="registration-token-bound-elsewhere",
    ),
    pytest.param(ALPHA_TOKEN, "token_for_other_plugin", None, id="its-own-plugin-token"),
    pytest.param(
        BETA_TOKEN, "token_for_other_plugin", "plugin_id_taken", id="another-plugin's-token"
    ),
]


def refusal(check: object, cred: Credential) -> str | None:
    assert callable(check)
    try:
        check("alpha", cred)
    except RegistryError as exc:
        return exc.code
    return None


@pytest.mark.parametrize(("cred", "new", "known"), CASES)
def test_who_may_register_alpha(cred: Credential, new: str | None, known: str | None) -> None:
    assert refusal(check_new, cred) == new
    assert refusal(check_existing, cred) == known
