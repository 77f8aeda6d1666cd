"""Metric index: archive_policy, archive_policy_rule, metric.

Also creates Gnocchi's four default archive policies (low, medium, high,
bool) and the rule ``default: "*" -> low`` (the tables are new, so no
policy and no rule exist yet).

Revision ID: i0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alarmer.db

revision: str = "i0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("index",)
depends_on: Sequence[str] | None = None

DT = alarmer.db.UTCDateTime

_METHODS = ["count", "max", "mean", "min", "std", "sum"]


def _item(granularity: int, points: int) -> dict[str, int]:
    return {
        "granularity": granularity,
        "points": points,
        "timespan": granularity * points,
    }


DEFAULT_POLICIES = [
    {
        "name": "bool",
        "back_window": 3600,
        "definition": [_item(1, 31536000)],
        "aggregation_methods": ["last"],
    },
    {
        "name": "high",
        "back_window": 0,
        "definition": [_item(1, 3600), _item(60, 10080), _item(3600, 8760)],
        "aggregation_methods": _METHODS,
    },
    {
        "name": "low",
        "back_window": 0,
        "definition": [_item(300, 8640)],
        "aggregation_methods": _METHODS,
    },
    {
        "name": "medium",
        "back_window": 0,
        "definition": [_item(60, 10080), _item(3600, 8760)],
        "aggregation_methods": _METHODS,
    },
]


def upgrade() -> None:
    policy = op.create_table(
        "archive_policy",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("back_window", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("aggregation_methods", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_archive_policy")),
    )
    rule = op.create_table(
        "archive_policy_rule",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("archive_policy_name", sa.String(255), nullable=False),
        sa.Column("metric_pattern", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["archive_policy_name"],
            ["archive_policy.name"],
            name=op.f(
                "fk_archive_policy_rule_archive_policy_name_archive_policy"
            ),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_archive_policy_rule")),
    )
    op.create_index(
        "ix_archive_policy_rule_archive_policy_name",
        "archive_policy_rule",
        ["archive_policy_name"],
    )
    op.create_table(
        "metric",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("archive_policy_name", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("unit", sa.String(31), nullable=True),
        sa.Column("resource_id", sa.String(36), nullable=True),
        sa.Column("creator", sa.String(255), nullable=True),
        sa.Column("created_by_user_id", sa.String(255), nullable=True),
        sa.Column("created_by_project_id", sa.String(255), nullable=True),
        sa.Column("created_at", DT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["archive_policy_name"],
            ["archive_policy.name"],
            name=op.f("fk_metric_archive_policy_name_archive_policy"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric")),
        sa.UniqueConstraint(
            "resource_id", "name", name=op.f("uq_metric_resource_id_name")
        ),
    )
    op.create_index(
        "ix_metric_archive_policy_name", "metric", ["archive_policy_name"]
    )
    op.create_index(
        "ix_metric_created_by_project_id", "metric", ["created_by_project_id"]
    )
    op.bulk_insert(policy, DEFAULT_POLICIES)
    op.bulk_insert(
        rule,
        [
            {
                "name": "default",
                "archive_policy_name": "low",
                "metric_pattern": "*",
            }
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_metric_created_by_project_id", table_name="metric")
    op.drop_index("ix_metric_archive_policy_name", table_name="metric")
    op.drop_table("metric")
    op.drop_index(
        "ix_archive_policy_rule_archive_policy_name",
        table_name="archive_policy_rule",
    )
    op.drop_table("archive_policy_rule")
    op.drop_table("archive_policy")
