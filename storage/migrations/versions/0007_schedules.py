"""schedules, their runs (claimed once across replicas by a unique key) and VM time-to-live deadlines

Revision ID: 0007_schedules
Revises: 0006_fencing
Create Date: 2026-12-07 18:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007_schedules'
down_revision = '0006_fencing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vm_name', sa.String(length=63), nullable=False),
    sa.Column('tz', sa.String(length=64), nullable=False),
    sa.Column('off_action', sa.String(length=16), nullable=True),
    sa.Column('off_at', sa.String(length=5), nullable=True),
    sa.Column('on_action', sa.String(length=16), nullable=True),
    sa.Column('on_at', sa.String(length=5), nullable=True),
    sa.Column('days', sa.String(length=32), nullable=False),
    sa.Column('skip_dates', sa.JSON(), nullable=False),
    sa.Column('skipped_runs', sa.JSON(), nullable=False),
    sa.Column('snoozes', sa.JSON(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('set_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('vm_name')
    )
    op.create_table('schedule_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vm_name', sa.String(length=63), nullable=False),
    sa.Column('run_key', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Enum('noticed', 'snoozed', 'skipped', 'started', 'missed', name='runstate', native_enum=False, length=16), nullable=False),
    sa.Column('operation_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['operation_id'], ['operations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('vm_name', 'run_key', name='uq_schedule_runs_vm_name_run_key')
    )
    op.create_table('vm_ttls',
    sa.Column('vm_name', sa.String(length=63), nullable=False),
    sa.Column('park_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('set_by', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('vm_name')
    )


def downgrade() -> None:
    op.drop_table('vm_ttls')
    op.drop_table('schedule_runs')
    op.drop_table('schedules')
