"""The measurements the reports read, in one table: when a collector renames one, align it here.

Each source names the collector (or probe) that emits it, so a report can say "not supervised for
this client" when no device of the client has that collector, instead of showing an empty table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    measurement: str
    collector: str  # the plugin that emits it (a device's `collectors:` key)
    key_tag: str  # the tag naming one item (a job, a datastore, a licence SKU)


# Whether a device answered, per (device, collector): availability. Written by the scheduler for
# every collector, hence no collector of its own.
COLLECTION = Source("collection", "", "collector")
COLLECTION_STATUS = "status"
# `collection.status` values: answered, did not answer; anything else (skipped, overloaded: the
# agent did not run the turn) or no value is unknown, never counted as down.
UP_STATUSES = frozenset({"ok", "partial", "error"})
DOWN_STATUSES = frozenset({"unreachable", "timeout"})

BACKUP_JOBS = Source("veeam_job", "veeam", "job")
BACKUP_RESULT, BACKUP_SUCCESS_AGE, BACKUP_MAX_AGE = "last_result", "last_success_age_s", "max_success_age_s"
BACKUP_DISABLED = "disabled"  # a disabled job is left out, as its rules leave it
BACKUP_RESULTS = ("success", "warning", "failed", "none")


@dataclass(frozen=True)
class CapacitySource:
    """A used share (percent) read from a percent field, or from used/free against a size."""

    source: Source
    kind: str  # disk | datastore | repository | licence
    size_field: str  # capacity (bytes, or licence units)
    pct_field: str | None = None
    used_field: str | None = None
    free_field: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for f in (self.pct_field, self.used_field, self.free_field, self.size_field) if f)

    def used_pct(self, values: dict[str, object]) -> float | None:
        if self.pct_field is not None:
            return number(values.get(self.pct_field))
        size = number(values.get(self.size_field))
        if not size:
            return None
        if self.used_field is not None:
            used = number(values.get(self.used_field))
            return None if used is None else 100.0 * used / size
        free = number(values.get(self.free_field or ""))
        return None if free is None else 100.0 * (size - free) / size


CAPACITY: tuple[CapacitySource, ...] = (
    CapacitySource(Source("snmp_storage", "snmp", "storage"), "disk", "total_bytes", pct_field="usage_percent"),
    CapacitySource(Source("vsphere_datastore", "vsphere", "datastore"), "datastore", "capacity_bytes",
                   pct_field="used_pct"),
    CapacitySource(Source("veeam_repository", "veeam", "repository"), "repository", "capacity_bytes",
                   pct_field="used_pct"),
    CapacitySource(Source("m365_license", "m365", "sku"), "licence", "prepaid", used_field="consumed"),
)

TLS_CERTIFICATES = Source("tls_certificate", "tls", "server_name")
DOMAINS = Source("rdap_domain", "rdap", "domain")
EXPIRES_IN_DAYS = "expires_in_days"

M365_ISSUES = Source("m365_issue", "m365", "issue_id")
M365_SERVICE_TAG = "service"
M365_STATUS, M365_RESOLVED, M365_TITLE, M365_MODIFIED = "status", "is_resolved", "title", "last_modified"

# The configuration archive of the CLI collector (running-config backup and diff). `changed` is
# true in the one sample reporting a new version, so the latest value cannot tell a day's changes:
# they come from the alerts of the rules on this measurement (time, summary), else from the daily
# rollup of `versions` (how many new versions a day).
CONFIG_CHANGES = Source("cisco_cli_config", "cisco_cli", "device")
CONFIG_VERSIONS = "versions"


def number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
