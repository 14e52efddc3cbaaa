"""durable operations: request keys, leases, step request ids, drift

Revision ID: 0004_durable
Revises: 0003_security
Create Date: 2026-11-25 12:48:28.932377
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004_durable'
down_revision = '0003_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('operation_steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=36), nullable=True))

    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_key', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_operations_request_key'), ['request_key'], unique=True)

    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('drift', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('drift_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('drift_at')
        batch_op.drop_column('drift')

    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operations_request_key'))
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('lease_owner')
        batch_op.drop_column('request_key')

    with op.batch_alter_table('operation_steps', schema=None) as batch_op:
        batch_op.drop_column('request_id')
