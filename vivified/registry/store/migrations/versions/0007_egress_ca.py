"""The deployment's egress CA, shared by every egress replica

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "egress_cas",
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("ca_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("retired_at", sa.Float(), nullable=True),
        sa.Column("publish_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("generation"),
        sa.UniqueConstraint("ca_id"),
    )


def downgrade() -> None:
    op.drop_table("egress_cas")
