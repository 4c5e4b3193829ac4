"""The store-history data contract: one declarative description of every table.

Validation (``features.contract.validation``), the synthetic marketplace (``features.synth``)
and the feature builder all read column names and types from here, so the contract is
written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["string", "int", "float", "bool", "timestamp"]

# DuckDB type each contract kind is cast to in the typed views.
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}


@dataclass(frozen=True)
class Column:
    """One contract column.

    Attributes:
        name: Fixed column name.
        kind: Logical type; see ``DUCKDB_TYPES``.
        nullable: Whether nulls are allowed.
        allowed: The only values allowed (categorical columns), if restricted.
        rule: A SQL predicate over the typed column that every non-null value must satisfy,
            e.g. ``"price > 0"``.
        rule_text: The rule in words, used in error messages.
    """

    name: str
    kind: ColumnKind
    nullable: bool = False
    allowed: tuple[str | int, ...] | None = None
    rule: str | None = None
    rule_text: str | None = None


@dataclass(frozen=True)
class ForeignKey:
    """A column whose non-null values must exist in another table's key column."""

    column: str
    table: str
    ref_column: str


@dataclass(frozen=True)
class Table:
    """One contract table: its columns, key and foreign keys."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        """Names of the contract columns, in contract order."""
        return [c.name for c in self.columns]

    @property
    def timestamp_columns(self) -> list[str]:
        """Names of the timestamp columns."""
        return [c.name for c in self.columns if c.kind == "timestamp"]

    def column(self, name: str) -> Column:
        """Return the column called ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name!r} has no contract column {name!r}")


STOREFRONT_TEMPLATES = ("basic", "custom")
DISPUTE_REASONS = ("counterfeit", "not_as_described", "not_received", "other")
LABEL_SOURCES = ("test_buy", "rights_holder", "complaint", "police")

CONTRACT: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "stores",
            (
                Column("store_id", "string"),
                Column("seller_id", "string"),
                Column("opened_at", "timestamp"),
                Column("category", "string"),
                Column("storefront_template", "string", allowed=STOREFRONT_TEMPLATES),
                Column(
                    "storefront_modules",
                    "int",
                    rule="storefront_modules >= 0",
                    rule_text="must be >= 0",
                ),
                Column("declared_region", "string"),
                Column("identity_verified", "bool"),
            ),
            key=("store_id",),
        ),
        Table(
            "listings",
            (
                Column("listing_id", "string"),
                Column("store_id", "string"),
                Column("listed_at", "timestamp"),
                Column("brand", "string", nullable=True),
                Column("title", "string"),
                Column("price", "float", rule="price > 0", rule_text="must be > 0"),
                Column(
                    "reference_price",
                    "float",
                    nullable=True,
                    rule="reference_price > 0",
                    rule_text="must be > 0",
                ),
                Column("stock", "int", rule="stock >= 0", rule_text="must be >= 0"),
                Column("image_text", "string", nullable=True),
            ),
            key=("listing_id",),
            foreign_keys=(ForeignKey("store_id", "stores", "store_id"),),
        ),
        Table(
            "orders",
            (
                Column("order_id", "string"),
                Column("store_id", "string"),
                Column("listing_id", "string"),
                Column("buyer_id", "string"),
                Column("ordered_at", "timestamp"),
                Column("amount", "float", rule="amount > 0", rule_text="must be > 0"),
                Column("ship_from_region", "string"),
                Column("delivered_at", "timestamp", nullable=True),
                Column("returned", "bool"),
            ),
            key=("order_id",),
            foreign_keys=(
                ForeignKey("store_id", "stores", "store_id"),
                ForeignKey("listing_id", "listings", "listing_id"),
            ),
        ),
        Table(
            "reviews",
            (
                Column("review_id", "string"),
                Column("store_id", "string"),
                Column("order_id", "string", nullable=True),
                Column("buyer_id", "string"),
                Column("created_at", "timestamp"),
                Column("rating", "int", rule="rating BETWEEN 1 AND 5", rule_text="must be 1-5"),
                Column("text", "string"),
            ),
            key=("review_id",),
            foreign_keys=(
                ForeignKey("store_id", "stores", "store_id"),
                ForeignKey("order_id", "orders", "order_id"),
            ),
        ),
        Table(
            "disputes",
            (
                Column("dispute_id", "string"),
                Column("store_id", "string"),
                Column("order_id", "string"),
                Column("opened_at", "timestamp"),
                Column("reason", "string", allowed=DISPUTE_REASONS),
            ),
            key=("dispute_id",),
            foreign_keys=(
                ForeignKey("store_id", "stores", "store_id"),
                ForeignKey("order_id", "orders", "order_id"),
            ),
        ),
        Table(
            "logins",
            (
                Column("store_id", "string"),
                Column("logged_at", "timestamp"),
                Column("ip", "string"),
                Column("device_id", "string"),
                Column("wifi_id", "string", nullable=True),
            ),
            key=(),
            foreign_keys=(ForeignKey("store_id", "stores", "store_id"),),
        ),
        Table(
            "labels",
            (
                Column("store_id", "string"),
                Column("labeled_at", "timestamp"),
                Column("is_counterfeit", "int", allowed=(0, 1)),
                Column("source", "string", allowed=LABEL_SOURCES),
            ),
            key=("store_id", "labeled_at"),
            foreign_keys=(ForeignKey("store_id", "stores", "store_id"),),
        ),
    )
}

# Tables that record events in time, with the column that says when; used for time ranges
# and event counts.
EVENT_TIME_COLUMNS: dict[str, str] = {
    "listings": "listed_at",
    "orders": "ordered_at",
    "reviews": "created_at",
    "disputes": "opened_at",
    "logins": "logged_at",
}
