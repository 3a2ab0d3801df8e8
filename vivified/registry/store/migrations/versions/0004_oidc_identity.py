"""OpenID Connect admin identity and pending sign-ins

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oidc_issuer", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("oidc_subject", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("email", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("last_sign_in_at", sa.Float(), nullable=True))
        batch_op.create_index(
            "ix_admin_users_oidc_identity", ["oidc_issuer", "oidc_subject"], unique=True
        )
    op.create_table(
        "oidc_pending_logins",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("nonce", sa.String(), nullable=False),
        sa.Column("code_verifier", sa.String(), nullable=False),
        sa.Column("redirect_uri", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("oidc_pending_logins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oidc_pending_logins_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("oidc_pending_logins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_pending_logins_expires_at"))
    op.drop_table("oidc_pending_logins")
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.drop_index("ix_admin_users_oidc_identity")
        batch_op.drop_column("last_sign_in_at")
        batch_op.drop_column("email")
        batch_op.drop_column("oidc_subject")
        batch_op.drop_column("oidc_issuer")
