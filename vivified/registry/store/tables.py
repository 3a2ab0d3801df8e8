"""SQLModel tables of the registry (times are UTC epoch seconds as floats)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, Text
from sqlmodel import Field, SQLModel


class Plugin(SQLModel, table=True):
    """A registered plugin: its manifest, lifecycle status and token generation."""

    __tablename__ = "plugins"

    id: str = Field(primary_key=True, max_length=63)
    name: str
    version: str
    manifest: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="registered", index=True)  # registered | active | disabled
    gen: int = 1  # token generation; bumped on disable, unregister, re-register
    owner: str = ""  # credential that first registered the id (registration token id)
    base_url: str = ""
    base_url_override: str | None = None
    risk: str = "low"  # low | medium | high | critical
    risk_score: int = 0
    # A widening re-registration waits here for approval: {"manifest": ..., "diff": ...}.
    pending: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    egress_domains: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    egress_mode: str = "enforce"  # enforce | report
    egress_version: int = 0
    health_state: str = "unknown"
    health_checked_at: float | None = None
    health_failures: int = 0
    # {"history": [...recent transitions], "metrics": {...}, "last_heartbeat": t,
    #  "unhealthy_at": [...times it turned unhealthy]}
    health_detail: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )
    created_at: float
    updated_at: float


class RegistrationToken(SQLModel, table=True):
    """An admin-issued registration credential, stored as a hash."""

    __tablename__ = "registration_tokens"

    id: str = Field(primary_key=True)
    token_hash: str = Field(index=True, unique=True)
    plugin_id: str | None = None
    uses_left: int = 1
    expires_at: float
    created_by: str = ""
    created_at: float
    revoked: bool = False


class AdminUser(SQLModel, table=True):
    """A human or automation identity for the admin surfaces."""

    __tablename__ = "admin_users"
    __table_args__ = (
        Index("ix_admin_users_oidc_identity", "oidc_issuer", "oidc_subject", unique=True),
    )

    id: str = Field(primary_key=True)
    name: str = Field(unique=True)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    disabled: bool = False
    created_at: float
    # An OpenID Connect user is keyed by its provider's `iss` + `sub`; its scopes come from the
    # provider at every sign-in (its `scopes` stay empty). `email` is for display only.
    oidc_issuer: str | None = None
    oidc_subject: str | None = None
    email: str | None = None
    last_sign_in_at: float | None = None


class AdminToken(SQLModel, table=True):
    """An admin API token: `vva_<id>_<secret>`; only the secret's hash is stored."""

    __tablename__ = "admin_tokens"

    id: str = Field(primary_key=True)
    user_id: str = Field(index=True, foreign_key="admin_users.id")
    name: str = ""
    token_hash: str
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


class SigningKey(SQLModel, table=True):
    """An Ed25519 signing key; retired keys stay published until `publish_until`."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True)
    private_pem: str = Field(sa_column=Column(Text, nullable=False))
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: float
    retired_at: float | None = None
    publish_until: float | None = None


class AuditRecord(SQLModel, table=True):
    """One audit record; `hash` chains over every column and the previous record's hash."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_time", "time"),
        # each ends in `id`: a filtered page is read newest first from the index, not sorted
        Index("ix_audit_records_actor_id", "actor", "id"),
        Index("ix_audit_records_target_id", "target", "id"),
        Index("ix_audit_records_lane_decision_id", "lane", "decision", "id"),
    )

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    time: float
    actor: str
    lane: str
    action: str
    target: str
    decision: str  # allow | deny | report
    reason: str
    request_id: str
    status: int
    latency_ms: float
    bytes_in: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_out: int = Field(sa_column=Column(BigInteger, nullable=False))
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str
    hash: str


class AuditChainHead(SQLModel, table=True):
    """The single row that serialises chain appends across processes."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=1, primary_key=True)
    last_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    last_hash: str = ""


class AuditQuarantine(SQLModel, table=True):
    """A record the store refused, outside the chain (`vivified.registry.audit.quarantine`):
    `record` is its ASCII JSON; the chain's stand-in names this row in `detail.quarantine_id`."""

    __tablename__ = "audit_quarantine"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    time: float
    quarantined_at: float
    lane: str
    action: str
    decision: str
    request_id: str
    refused: str  # the store's refusal: a SQLSTATE or an exception class, never a value
    record: str = Field(sa_column=Column(Text, nullable=False))


class Grant(SQLModel, table=True):
    """An admin grant letting `caller` use `target` on the operator lane."""

    __tablename__ = "grants"

    id: str = Field(primary_key=True)
    caller: str = Field(index=True)
    target: str
    methods: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    paths: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: str = ""
    created_at: float


class ContractChoice(SQLModel, table=True):
    """The admin's pick of the plugin that answers a contract alias."""

    __tablename__ = "contract_choices"

    contract: str = Field(primary_key=True)
    plugin_id: str


class ConfigDocument(SQLModel, table=True):
    """A versioned config object by name (e.g. `egress`)."""

    __tablename__ = "config_documents"

    name: str = Field(primary_key=True)
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    version: int = 1
    updated_at: float
    updated_by: str = ""


class ConfigRevision(SQLModel, table=True):
    """Who changed which config object, when, from what to what, and why."""

    __tablename__ = "config_revisions"

    id: int | None = Field(default=None, primary_key=True)
    time: float
    actor: str
    object: str
    before: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    comment: str = ""


class Lease(SQLModel, table=True):
    """A time-bounded claim on a piece of work (e.g. polling one plugin) by one replica."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True)
    holder: str
    expires_at: float


class ConsoleSession(SQLModel, table=True):
    """An Admin Console sign-in; `id` is the SHA-256 of the random session id in the cookie."""

    __tablename__ = "console_sessions"

    id: str = Field(primary_key=True)
    admin_user_id: str = Field(index=True, foreign_key="admin_users.id")
    token_id: str = Field(foreign_key="admin_tokens.id")  # re-verified on every request
    csrf_secret: str
    created_at: float
    last_seen: float


class SignInFailure(SQLModel, table=True):
    """A failed Admin Console sign-in from a client address: in the registry, so that every
    gateway process and replica counts the same failures (`registry.identity.sign_in_failures`)."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_client_at", "client", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    client: str = Field(max_length=64)
    at: float = Field(index=True)


class OidcPendingLogin(SQLModel, table=True):
    """An OpenID Connect sign-in between the redirect to the provider and its callback; `id`
    is the SHA-256 of the random value in the short-lived `vivified_oidc` cookie. Single use."""

    __tablename__ = "oidc_pending_logins"

    id: str = Field(primary_key=True)
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    created_at: float
    expires_at: float = Field(index=True)


class PluginDoc(SQLModel, table=True):
    """The cached documentation page of a plugin (manifest `docs`), fetched by core from the
    plugin's base URL. `fingerprint` names the manifest and base URL it was fetched for;
    `state` is `ok` or `error` (then `error` holds the reason code and the last good page, if
    any, stays)."""

    __tablename__ = "plugin_docs"

    plugin_id: str = Field(primary_key=True, max_length=63)
    fingerprint: str
    source: str  # the URL it came from
    state: str = "ok"  # ok | error
    error: str = ""
    markdown: str = Field(default="", sa_column=Column(Text, nullable=False))
    html: str = Field(default="", sa_column=Column(Text, nullable=False))
    toc: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    renderer: str = ""
    size: int = 0
    fetched_at: float


class EgressCA(SQLModel, table=True):
    """The egress proxy's certificate authority, one per deployment. A rotation adds the next
    `generation` (the highest one signs); an older one stays in the published bundle until
    `publish_until`. The private key is sealed (AES-GCM) under the deployment's key-encryption
    key, never stored in clear."""

    __tablename__ = "egress_cas"

    generation: int = Field(primary_key=True)  # unique: racing creators, one winner
    ca_id: str = Field(unique=True, max_length=32)  # the id in "Vivified egress CA <id>"
    name: str
    cert_pem: str = Field(sa_column=Column(Text, nullable=False))
    key_sealed: str = Field(sa_column=Column(Text, nullable=False))
    created_at: float
    retired_at: float | None = None
    publish_until: float | None = None


class RegistryRevision(SQLModel, table=True):
    """One row: a counter every committed change the snapshots carry raises before it is
    answered (`registry.store.revision`), so a process can tell its snapshot is behind."""

    __tablename__ = "registry_revision"

    id: int = Field(default=1, primary_key=True)
    value: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
