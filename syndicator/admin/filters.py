"""List filters the stock admin lacks: a date range (presets and custom dates) for the delivery log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

PRESETS = {"today": ("Today", 0), "7d": ("Past 7 days", 6), "30d": ("Past 30 days", 29)}


class DateRangeFilter(admin.ListFilter):
    """Created today, in the past 7 or 30 days, or between two dates (both included).

    The values live in the query string (``period``, ``created_from``, ``created_to``), so a
    filtered list can be bookmarked and the CSV export reads the same range.
    """

    title = "date"
    template = "admin/syndicator/date_range_filter.html"
    field = "created_at"
    period_param, from_param, to_param = "period", "created_from", "created_to"

    def __init__(
        self, request: HttpRequest, params: dict[str, list[str]], model: Any, model_admin: Any
    ) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.expected_parameters():
            if name in params:
                value = params.pop(name)
                # The admin passes lists since Django 5.0; the last value wins as in SimpleListFilter.
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value
        ours = set(self.expected_parameters()) | {"p"}
        self.hidden_params = [(k, v) for k, values in request.GET.lists() if k not in ours for v in values]

    def expected_parameters(self) -> list[str | None]:
        return [self.period_param, self.from_param, self.to_param]

    def has_output(self) -> bool:
        return True

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The chosen range as [start, end) instants in the current time zone; None is open."""
        today = timezone.localdate()
        if preset := PRESETS.get(self._param(self.period_param)):
            return _midnight(today - timedelta(days=preset[1])), None
        start, end = (
            _day(self._param(self.from_param)),
            _day(self._param(self.to_param)),
        )
        return (
            _midnight(start) if start else None,
            _midnight(end + timedelta(days=1)) if end else None,
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        start, end = self.bounds()
        if start:
            queryset = queryset.filter(**{f"{self.field}__gte": start})
        if end:
            queryset = queryset.filter(**{f"{self.field}__lt": end})
        return queryset

    def choices(self, changelist: Any) -> Iterator[dict[str, object]]:
        period = self.used_parameters.get(self.period_param)
        custom = not period and (
            self.from_param in self.used_parameters or self.to_param in self.used_parameters
        )
        everything: list[dict[str, object]] = [
            {
                "selected": not period and not custom,
                "query_string": changelist.get_query_string(remove=self.expected_parameters()),
                "display": "Any date",
            }
        ]
        everything += [
            {
                "selected": period == key,
                "query_string": changelist.get_query_string(
                    {self.period_param: key}, [self.from_param, self.to_param]
                ),
                "display": label,
            }
            for key, (label, _days) in PRESETS.items()
        ]
        # An iterator, as ListFilter.choices is typed (the admin's filter tag takes list() of it).
        return iter(everything)

    @property
    def date_from(self) -> str:
        return self._param(self.from_param)

    @property
    def date_to(self) -> str:
        return self._param(self.to_param)

    def _param(self, name: str) -> str:
        # ListFilter types used_parameters as dict[str, object]; __init__ stores query-string strings.
        value = self.used_parameters.get(name, "")
        return value if isinstance(value, str) else ""


def _day(value: str | None) -> date | None:
    """A YYYY-MM-DD date, or None for anything else (a bad date filters nothing rather than failing)."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))
