"""Resources: the resource type, attribute and resource tables.

Creates resource_type, resource_type_attribute, resource and
resource_attribute, and the ``generic`` type.

``metric.resource_id`` (index branch) stays a plain column covered by the
``(resource_id, name)`` unique index: deleting a resource deletes its
metrics in the same transaction, so no cross-branch foreign key is needed.

Revision ID: r0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alarmer.db

revision: str = "r0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("resources",)
depends_on: Sequence[str] | None = None

DT = alarmer.db.UTCDateTime


def upgrade() -> None:
    rtype = op.create_table(
        "resource_type",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_resource_type")),
    )
    op.create_table(
        "resource_type_attribute",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(255), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_type"],
            ["resource_type.name"],
            name=op.f(
                "fk_resource_type_attribute_resource_type_resource_type"
            ),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_type_attribute")),
        sa.UniqueConstraint(
            "resource_type",
            "name",
            name=op.f("uq_resource_type_attribute_resource_type_name"),
        ),
    )
    op.create_table(
        "resource",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("original_resource_id", sa.String(255), nullable=False),
        sa.Column("creator", sa.String(255), nullable=True),
        sa.Column("created_by_user_id", sa.String(255), nullable=True),
        sa.Column("created_by_project_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("started_at", DT(), nullable=False),
        sa.Column("ended_at", DT(), nullable=True),
        sa.Column("revision_start", DT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["type"],
            ["resource_type.name"],
            name=op.f("fk_resource_type_resource_type"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource")),
    )
    op.create_index(
        "ix_resource_type_started_at", "resource", ["type", "started_at"]
    )
    op.create_index("ix_resource_project_id", "resource", ["project_id"])
    op.create_index(
        "ix_resource_created_by_project_id",
        "resource",
        ["created_by_project_id"],
    )
    op.create_index(
        "ix_resource_original_resource_id",
        "resource",
        ["original_resource_id"],
    )
    op.create_table(
        "resource_attribute",
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("attribute_id", sa.Integer(), nullable=False),
        sa.Column("value_str", sa.String(255), nullable=True),
        sa.Column("value_num", sa.Double(), nullable=True),
        sa.Column("value_dt", DT(), nullable=True),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["resource.id"],
            name=op.f("fk_resource_attribute_resource_id_resource"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["attribute_id"],
            ["resource_type_attribute.id"],
            name=op.f(
                "fk_resource_attribute_attribute_id_resource_type_attribute"
            ),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "resource_id", "attribute_id", name=op.f("pk_resource_attribute")
        ),
    )
    for column in ("str", "num", "dt"):
        op.create_index(
            f"ix_resource_attribute_{column}",
            "resource_attribute",
            ["attribute_id", f"value_{column}", "resource_id"],
        )
    op.bulk_insert(rtype, [{"name": "generic", "state": "active"}])


def downgrade() -> None:
    op.drop_table("resource_attribute")
    op.drop_table("resource")
    op.drop_table("resource_type_attribute")
    op.drop_table("resource_type")
