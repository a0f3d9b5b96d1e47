"""Graph's objects -> the m365 samples' tags and fields: pure functions, no I/O.

A value Graph left out or sent in the wrong type is ``None`` (unknown), never 0 or "".
Graph's enumerations are camelCase in its schema and PascalCase in some of its own samples
(``ServiceOperational``, ``Incident``): they are compared, and emitted, lower-cased first letter.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

# Service health statuses where nothing is wrong for the tenant (serviceHealthStatus).
HEALTHY_STATUSES = frozenset({"serviceOperational", "serviceRestored", "postIncidentReviewPublished", "falsePositive"})


def _enum(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[0].lower() + value[1:]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def epoch(value: Any) -> int | None:
    """An ISO 8601 date-time of Graph (``2024-05-01T09:00:00Z``, fractions allowed) -> epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # Graph's date-times are UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def service(item: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]] | None:
    """A serviceHealth -> (tags, fields) of ``m365_service``; None without a service name."""
    name = _text(item.get("service"))
    if name is None:
        return None
    status = _enum(item.get("status"))
    return {"service": name}, {
        "service_id": _text(item.get("id")),
        "status": status,
        "healthy": None if status is None else status in HEALTHY_STATUSES,
    }


def issue(item: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]] | None:
    """A serviceHealthIssue -> (tags, fields) of ``m365_issue``; None without an id and a service."""
    issue_id, name = _text(item.get("id")), _text(item.get("service"))
    if issue_id is None or name is None:
        return None
    return {"issue_id": issue_id, "service": name, "classification": _enum(item.get("classification")) or ""}, {
        "status": _enum(item.get("status")),
        "is_resolved": _bool(item.get("isResolved")),
        "title": _text(item.get("title")),
        "impact": _text(item.get("impactDescription")),
        "feature": _text(item.get("feature")),
        "origin": _enum(item.get("origin")),
        "start": epoch(item.get("startDateTime")),
        "end": epoch(item.get("endDateTime")),
        "last_modified": epoch(item.get("lastModifiedDateTime")),
    }


def license_(item: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]] | None:
    """A subscribedSku -> (tags, fields) of ``m365_license``: licences bought and enabled
    (``prepaidUnits.enabled``) against those assigned (``consumedUnits``)."""
    sku = _text(item.get("skuPartNumber"))
    if sku is None:
        return None
    prepaid_units = item.get("prepaidUnits") if isinstance(item.get("prepaidUnits"), dict) else {}
    consumed, prepaid = _int(item.get("consumedUnits")), _int(prepaid_units.get("enabled"))
    return {"sku": sku}, {
        "consumed": consumed,
        "prepaid": prepaid,
        "available": None if consumed is None or prepaid is None else prepaid - consumed,
        "suspended": _int(prepaid_units.get("suspended")),
        "warning": _int(prepaid_units.get("warning")),
        "capability_status": _enum(item.get("capabilityStatus")),
    }


def sync(organization: dict[str, Any], now: float) -> dict[str, Any]:
    """The tenant (``/organization``) -> fields of ``m365_sync``: Entra Connect's last sync.
    ``enabled`` is None for a tenant that never synced (Graph's null), False once sync was turned off."""
    last = epoch(organization.get("onPremisesLastSyncDateTime"))
    return {
        "enabled": _bool(organization.get("onPremisesSyncEnabled")),
        "last_sync": last,
        "last_sync_age_s": None if last is None else max(0, int(now) - last),
    }


def security_alert(item: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]] | None:
    """A Defender alert (``/security/alerts_v2``) -> (tags, fields) of ``m365_security_alert``."""
    alert_id = _text(item.get("id"))
    if alert_id is None:
        return None
    status = _enum(item.get("status"))
    return {"alert_id": alert_id}, {
        "title": _text(item.get("title")),
        "severity": _enum(item.get("severity")),
        "status": status,
        "is_resolved": None if status is None else status == "resolved",
        "category": _text(item.get("category")),
        "service_source": _enum(item.get("serviceSource")),
        "detection_source": _enum(item.get("detectionSource")),
        "created": epoch(item.get("createdDateTime")),
        "last_update": epoch(item.get("lastUpdateDateTime")),
        "resolved_at": epoch(item.get("resolvedDateTime")),
    }
