"""A member's display preferences that are not about mail: their time zone."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, UTCDateTime


class MemberPreference(Base):
    """The IANA time zone a member reads dates in (``hub.i18n.dates``). Kept apart from
    ``member_emails``, which exists only for members who gave an address."""

    __tablename__ = "member_preferences"

    username: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    #: An IANA zone name (``Asia/Shanghai``), checked against the tz database when saved.
    time_zone: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
