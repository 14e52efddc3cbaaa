"""sweeps and leases: the dirty-image sweeper's record, and one sweep at a time across processes

Revision ID: 0002_sweeps
Revises: 0001
Create Date: 2026-11-25 12:48:13.118600
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002_sweeps'
down_revision = '0001'
branch_labels = None
depends_on = None

SWEEP_FK = 'fk_images_deleted_by_sweep_id_sweeps'


def upgrade() -> None:
    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('orphans', sa.Integer(), nullable=False),
    sa.Column('freed_bytes', sa.BigInteger(), nullable=False),
    sa.Column('completed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_by_sweep_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('delete_error', sa.Text(), nullable=True))
        # id joins the index so the sweeper's keyset pages on (dirty_since, id) are one index range each.
        batch_op.drop_index('ix_images_state_dirty_since')
        batch_op.create_index('ix_images_state_dirty_since', ['state', 'dirty_since', 'id'], unique=False)
        batch_op.create_foreign_key(SWEEP_FK, 'sweeps', ['deleted_by_sweep_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_constraint(SWEEP_FK, type_='foreignkey')
        batch_op.drop_index('ix_images_state_dirty_since')
        batch_op.create_index('ix_images_state_dirty_since', ['state', 'dirty_since'], unique=False)
        batch_op.drop_column('delete_error')
        batch_op.drop_column('deleted_by_sweep_id')

    op.drop_table('sweeps')
    op.drop_table('leases')
