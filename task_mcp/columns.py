"""Column types the tables share: workspace keys and UTC datetimes on every database."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Column, DateTime, TypeDecorator
from sqlmodel import Field

KEY_LENGTH = 300  # a workspace key: a user id (up to 255 characters) or "org:" + an organization id


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        """SQLite keeps the text `2026-11-27 09:00:00.000000`: one `fromisoformat` of it with the
        UTC offset appended reads it, eight times faster than parsing it and then `replace`-ing
        the zone in (a page of tasks reads seven of these per row)."""
        if dialect.name == "sqlite":
            return _sqlite_utc
        return super().result_processor(dialect, coltype)


def _sqlite_utc(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value + "+00:00")


def utc_column(nullable: bool) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))
