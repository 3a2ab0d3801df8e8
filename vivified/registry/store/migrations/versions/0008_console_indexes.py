"""Audit indexes for the console's filters: newest first per actor, per target, per lane and
decision (each ends in `id`, so a filtered page is read in id order, not sorted)

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_records_actor_id", "audit_records", ["actor", "id"])
    op.create_index("ix_audit_records_target_id", "audit_records", ["target", "id"])
    op.create_index(
        "ix_audit_records_lane_decision_id", "audit_records", ["lane", "decision", "id"]
    )
    # (actor, id) and (target, id) answer everything the single-column indexes did.
    op.drop_index("ix_audit_records_actor", table_name="audit_records")
    op.drop_index("ix_audit_records_target", table_name="audit_records")
    if op.get_bind().dialect.name == "postgresql":
        # fresh statistics, or the planner may still sort a bitmap scan instead of reading
        # the new indexes backwards (seen with 1,000,000 records)
        op.execute("ANALYZE audit_records")


def downgrade() -> None:
    op.create_index("ix_audit_records_target", "audit_records", ["target"])
    op.create_index("ix_audit_records_actor", "audit_records", ["actor"])
    op.drop_index("ix_audit_records_lane_decision_id", table_name="audit_records")
    op.drop_index("ix_audit_records_target_id", table_name="audit_records")
    op.drop_index("ix_audit_records_actor_id", table_name="audit_records")
