"""operation reports: what the end of an operation's thread says, and when it was posted

Revision ID: 0005_reports
Revises: 0004_durable
Create Date: 2026-11-25 16:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005_reports'
down_revision = '0004_durable'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('report', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('reported_at', sa.DateTime(timezone=True), nullable=True))
    # Operations that ended before this revision were reported as they ended (or not at all): none is owed.
    op.execute("UPDATE operations SET reported_at = finished_at WHERE finished_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.drop_column('reported_at')
        batch_op.drop_column('report')
