"""a VM's whole shape and image family; which disk each image holds, and when vmbot deleted that disk and made it again

Revision ID: 0008_vm_shape
Revises: 0007_schedules
Create Date: 2026-12-07 18:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008_vm_shape'
down_revision = '0007_schedules'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shape', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('family', sa.String(length=63), nullable=True))
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device_name', sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column('disk_name', sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column('disk_deleted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('disk_restored_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('disk_restored_at')
        batch_op.drop_column('disk_deleted_at')
        batch_op.drop_column('disk_name')
        batch_op.drop_column('device_name')
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('family')
        batch_op.drop_column('shape')
