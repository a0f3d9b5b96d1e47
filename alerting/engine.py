"""The alert engine: rules over samples -> pending / firing / resolved alerts persisted in SQLite.

Model (after Prometheus / Alertmanager):

- **Identity.** An alert's labels are ``alertname`` (the rule name) + the sample's identifying tags
  (every tag except the descriptive ones in ``non_identifying_tags``, e.g. ``if_alias``) + the
  rule's ``labels``; its fingerprint (:func:`alerting.models.fingerprint`) is its identity.
- **Lifecycle.** A sample that matches a rule (measurement + tag matchers) and whose ``when`` is
  true starts a *pending* alert (``started_at`` = that sample's timestamp). When a bad sample is
  seen with ``now - started_at >= for_s`` it *fires* (``fired_at`` = now). A matching sample whose
  condition is false drops a pending alert silently and *resolves* a firing one (``resolved_at``
  = now). An unknown condition (missing / None value, see :mod:`agent.api.expressions`) changes
  nothing.
- **Staleness.** Transitions are driven by samples only: a firing alert whose series stops
  reporting (device removed, interface gone, collector failing) stays *firing* — it is neither
  resolved (we do not know it recovered) nor duplicated (same fingerprint, the active row is
  reused when the series comes back). :meth:`AlertEngine.alerts` exposes ``last_sample_at`` so a
  UI can show "stale since".
- **Inhibition.** ``collection`` samples record per (client, device, collector) whether the device
  answered. A device is *unreachable* when, among the collection statuses seen within
  ``status_ttl_s``, one is in ``unreachable_statuses`` and none says it answered (``ok``,
  ``partial``, ``error``: a device that still answers ping while SNMP fails, or whose SNMP walks
  half fail, is not unreachable). An unreachable device inhibits the alerts whose
  ``client`` and ``device`` labels are equal to it (Alertmanager ``equal: [client, device]``; a
  missing label is a non-match) and the alerts of every device whose ``parents`` chain leads to it.
  A device's own ``collection`` alerts are not inhibited by its own status (a rule never inhibits
  itself) but are by its ancestors'. Inhibition holds an alert *pending* (``inhibited_by`` set); it
  fires at its next bad sample once the inhibition is gone. An alert already firing when its
  device or parent becomes unreachable stays firing (its ticket exists already).
- **Rule inhibition.** A rule's ``inhibits`` (:class:`agent.api.rules.Inhibition`, Alertmanager's
  inhibit rule with that rule as source) holds back the alerts of a target rule on the same object:
  while an alert of the source rule is *pending or firing*, a target alert matching the
  inhibition's ``match`` whose ``equal`` labels carry the same values (a label missing on either
  side is a non-match) stays pending with ``inhibited_by = "<source rule>/<source fingerprint>"``,
  and fires at its next bad sample once no source holds it. So a Sophos PSU down fires
  ``sophos_xg_psu_failed`` and not also the generic ``sensor_critical``. As with unreachable
  devices, a target already firing stays firing. The copy of a source rule scoped to one client
  (the runner's ``client`` matcher) holds that client's alerts only, by that client's alerts: a
  client that overrides a rule's ``inhibits`` changes nothing for the others. Targets must name
  rules the engine was given (disabled ones count: disabling a target is not a typo), a rule may
  not inhibit itself and the inhibitions may not form a cycle; each batch is evaluated source
  rules first, so a target is held in the very batch its source starts in.
- **Persistence.** Everything lives in SQLite (WAL); each :meth:`evaluate` is one transaction, so
  a restart continues from the last committed cycle.
- **Threads.** :meth:`evaluate` is meant to run in a worker thread (the agent's alert lane calls it
  through ``asyncio.to_thread``, so its writes never block the event loop); it writes through one
  connection under a lock. :meth:`alerts` / :meth:`firing` / :meth:`is_unreachable` read through a
  second connection under their own lock: in WAL mode they see the last committed batch and never
  wait for an evaluation in progress.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from agent.api import Sample
from agent.api.alerts import FIRING, PENDING, RESOLVED, Alert, AlertTransition, fingerprint
from agent.api.expressions import Expression
from agent.api.rules import Inhibition, Rule, TagMatcher, inhibition_problems

log = logging.getLogger(__name__)

COLLECTION = "collection"
# `collection` statuses of a run the device answered, whatever it said (docs/METRICS.md).
ANSWERED = frozenset({"ok", "partial", "error"})
DEFAULT_NON_IDENTIFYING_TAGS = frozenset({"if_alias", "if_descr", "description", "sys_descr", "location"})

ParentMap = Mapping[tuple[str, str], str]
SILENCE_CHECK_S = 5.0  # how often the silence rules' series are looked over (at most)
# A rule with its compiled forms read once (a pydantic private attribute costs a lookup each time).
CompiledRule = tuple[Rule, tuple[TagMatcher, ...], Expression]


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: str, values: Mapping[str, Any]) -> str:
    """``{name}`` placeholders from tags/fields/labels; unknown names stay as written. No attribute
    access or format specs (unlike str.format), so a template cannot reach into objects."""

    def sub(m: re.Match[str]) -> str:
        value = values.get(m.group(1))
        return m.group(0) if value is None else str(value)

    return _PLACEHOLDER.sub(sub, template)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    rule TEXT NOT NULL,
    labels TEXT NOT NULL,
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at REAL NOT NULL,
    fired_at REAL,
    resolved_at REAL,
    last_sample_at REAL,
    inhibited_by TEXT,
    flapping INTEGER NOT NULL DEFAULT 0,
    good_since REAL,
    impacted TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_active ON alerts(fingerprint) WHERE state IN ('pending', 'firing');
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state);
CREATE INDEX IF NOT EXISTS alerts_active_rule ON alerts(rule) WHERE state IN ('pending', 'firing');
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts(fingerprint, fired_at);
CREATE TABLE IF NOT EXISTS series_seen (
    fingerprint TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    labels TEXT NOT NULL,
    last_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS device_status (
    client TEXT NOT NULL,
    device TEXT NOT NULL,
    collector TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL,
    answered_since REAL,
    PRIMARY KEY (client, device, collector)
);
"""
_ADDED_COLUMNS = {
    "alerts": {"flapping": "INTEGER NOT NULL DEFAULT 0", "good_since": "REAL", "impacted": "TEXT"},
    "device_status": {"answered_since": "REAL"},
}


class AlertEngine:
    def __init__(
        self,
        db_path: str,
        rules: Iterable[Rule],
        clock: Callable[[], float] = time.time,
        *,
        parents: ParentMap | None = None,
        non_identifying_tags: Iterable[str] = DEFAULT_NON_IDENTIFYING_TAGS,
        unreachable_statuses: Iterable[str] = ("unreachable",),
        status_ttl_s: float = 3600.0,
    ) -> None:
        # Rules arrive validated and compiled (agent.api.rules.Rule). The same name may appear several
        # times: the runner scopes one copy per client with a `client` matcher. Disabled rules are
        # not evaluated, but an inhibition may name them.
        given = list(rules)
        self.rules = [rule for rule in given if rule.enabled]
        problems = inhibition_problems(given)
        if problems:
            raise ValueError("; ".join(problems))
        # target rule name -> its inhibitions, and the order rules are applied in
        self._inhibitions = _by_target(self.rules)
        conditions = [rule for rule in self.rules if rule.absent_for_s is None]
        self._passes = [
            {measurement: [(rule, rule.matchers, rule.condition) for rule in rules] for measurement, rules in p.items()}
            for p in _passes(conditions)
        ]
        # silence rules: measurement -> the rules watching its series for a silence
        self._silences: dict[str, list[Rule]] = {}
        for rule in self.rules:
            if rule.absent_for_s is not None:
                self._silences.setdefault(rule.measurement, []).append(rule)
        self._silence_checked_at = 0.0
        self.clock = clock
        self.parents: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()  # the writing connection; evaluate() holds it for a batch
        self._read_lock = threading.Lock()
        self.set_parents(parents or {})
        self.non_identifying_tags = frozenset(non_identifying_tags)
        self.unreachable_statuses = frozenset(unreachable_statuses)
        self.status_ttl_s = status_ttl_s
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        for table, added in _ADDED_COLUMNS.items():
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, decl in added.items():
                if have and column not in have:  # a database written before the column existed
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        self._db.executescript(_SCHEMA)
        # Opened once the schema exists; in WAL mode its reads never wait for the writer.
        self._reader = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._reader.row_factory = sqlite3.Row
        self._active_counts = self._count_active()

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._reader.close()
            self._db.close()

    def set_parents(self, parents: ParentMap) -> None:
        """``{(client, device): parent_device}``. A cycle is rejected: its devices would inhibit
        each other when they are all down and no ticket would ever open."""
        parents = dict(parents)
        for client, device in parents:
            chain = [device]
            while (parent := parents.get((client, chain[-1]))) is not None:
                if parent in chain:
                    cycle = " -> ".join([*chain[chain.index(parent) :], parent])
                    raise ValueError(f"parent cycle in client {client}: {cycle}")
                chain.append(parent)
        children: dict[tuple[str, str], list[str]] = {}
        for (client, device), parent in parents.items():
            children.setdefault((client, parent), []).append(device)
        with self._lock:
            self.parents = parents
            self._children = children

    def behind(self, client: str, device: str) -> list[str]:
        """Every device whose parent chain leads to ``device``: what its outage takes down with it."""
        found: list[str] = []
        todo = list(self._children.get((client, device), ()))
        while todo:
            child = todo.pop()
            found.append(child)
            todo.extend(self._children.get((client, child), ()))
        return sorted(found)

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, samples: Sequence[Sample], now: float | None = None) -> list[AlertTransition]:
        now = self.clock() if now is None else now
        ordered = sorted(samples, key=lambda s: s.timestamp_ns)
        transitions: list[AlertTransition] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for sample in ordered:
                    if sample.measurement == COLLECTION:
                        self._record_status(sample)
                # One pass per inhibition depth: a source's alert exists before its targets are seen.
                for by_measurement in self._passes:
                    for sample in ordered:
                        for rule, matchers, condition in by_measurement.get(sample.measurement, ()):
                            if all(m.matches(sample.tags) for m in matchers):
                                self._apply(rule, condition, sample, now, transitions)
                if self._silences:
                    self._heard(ordered, now, transitions)
                    if now - self._silence_checked_at >= SILENCE_CHECK_S:
                        self._silence_checked_at = now
                        self._check_silences(now, transitions)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._active_counts = self._count_active()
                raise
        return transitions

    def _count_active(self) -> Counter[tuple[str, str, str]]:
        """(rule, client, device) -> pending or firing alerts, so that a good sample of an object
        with none (nearly every sample) costs neither a fingerprint nor a query."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for row in self._db.execute("SELECT rule, labels FROM alerts WHERE state IN ('pending', 'firing')"):
            counts[_object(row["rule"], json.loads(row["labels"]))] += 1
        return counts

    def _ended(self, alert: Alert) -> None:
        key = _object(alert.rule, alert.labels)
        self._active_counts[key] -= 1
        if self._active_counts[key] <= 0:
            del self._active_counts[key]

    def _record_status(self, sample: Sample) -> None:
        client, device = sample.tags.get("client"), sample.tags.get("device")
        status = sample.fields.get("status")
        if not client or not device or not isinstance(status, str):
            return
        answered = ",".join(f"'{s}'" for s in sorted(ANSWERED))
        down = ",".join(f"'{s}'" for s in sorted(self.unreachable_statuses))
        # answered_since: when it answered again after not answering (its children's runs that
        # began before then may still have been cut off by its outage)
        self._db.execute(
            "INSERT INTO device_status(client, device, collector, status, at) VALUES (?,?,?,?,?) "
            "ON CONFLICT(client, device, collector) DO UPDATE SET status=excluded.status, at=excluded.at, "
            f"answered_since=CASE WHEN excluded.status IN ({answered}) AND device_status.status IN ({down}) "
            f"THEN excluded.at WHEN excluded.status IN ({down}) THEN NULL ELSE device_status.answered_since END "
            "WHERE excluded.at >= device_status.at",
            (client, device, sample.tags.get("collector", ""), status, sample.timestamp_ns / 1e9),
        )

    def _labels(self, rule: Rule, sample: Sample) -> dict[str, str]:
        labels = {k: str(v) for k, v in sample.tags.items() if k not in self.non_identifying_tags}
        labels.update(rule.labels)
        labels["alertname"] = rule.name
        return labels

    def _apply(self, rule: Rule, condition: Expression, sample: Sample, now: float, out: list[AlertTransition]) -> None:
        cond = condition.evaluate(sample.fields, sample.tags)
        if cond is None:
            return
        if not cond and _object(rule.name, sample.tags) not in self._active_counts:
            return  # nothing to clear
        labels = self._labels(rule, sample)
        fp = fingerprint(labels)
        ts = sample.timestamp_ns / 1e9
        alert = self._active(fp)
        if cond:
            values = {**sample.tags, **sample.known_fields(), **labels}
            summary = render(rule.summary or rule.name, values)
            if alert is None:
                alert = Alert(fp, rule.name, labels, rule.severity, summary, PENDING, started_at=ts)
                alert.last_sample_at = ts
                alert.id = self._insert(alert)
                self._active_counts[_object(rule.name, labels)] += 1
                out.append(AlertTransition(_copy(alert), None, PENDING, now))
            else:
                alert.last_sample_at = max(ts, alert.last_sample_at or ts)
                alert.summary = summary
                alert.good_since = None  # a flapping alert's good run is over
            if alert.state == PENDING and alert.started_at > now:
                # the wall clock stepped back past the onset: the hold-down counts from its new reading,
                # not an hour (or however far it went) later
                alert.started_at = ts
            if alert.state == PENDING and now - alert.started_at >= rule.for_s:
                # the run behind this sample began this long before it was stamped
                took = sample.fields.get("duration_s") if sample.measurement == COLLECTION else None
                began = ts - (float(took) if isinstance(took, (int, float)) else 0.0)
                inhibitor = self._inhibitor(alert, rule, now, began)
                alert.inhibited_by = inhibitor
                if inhibitor is None:
                    alert.state = FIRING
                    alert.fired_at = now
                    alert.flapping = self._flaps(rule, alert, now, this_one=1)
                    if rule.measurement == COLLECTION:  # the device is down: so is what stands behind it
                        alert.impacted = self.behind(alert.client, alert.device)
                    out.append(AlertTransition(_copy(alert), PENDING, FIRING, now))
            self._update(alert)
            return
        if alert is None:
            return
        if alert.state == FIRING and self._holds_firing(rule, alert, sample, ts, now):
            alert.last_sample_at = max(ts, alert.last_sample_at or ts)
            self._update(alert)
            return
        self._end(alert, ts, now, out)

    def _end(self, alert: Alert, ts: float, now: float, out: list[AlertTransition]) -> None:
        """A good sample: a pending alert is dropped, a firing one resolved."""
        self._ended(alert)
        if alert.state == PENDING:
            self._db.execute("DELETE FROM alerts WHERE id = ?", (alert.id,))
            return
        alert.state = RESOLVED
        alert.resolved_at = now
        alert.last_sample_at = max(ts, alert.last_sample_at or ts)
        self._update(alert)
        out.append(AlertTransition(_copy(alert), FIRING, RESOLVED, now))

    # -- silences ------------------------------------------------------------------------------

    def _heard(self, samples: Sequence[Sample], now: float, out: list[AlertTransition]) -> None:
        """Note when each series the silence rules watch last reported; one that comes back ends
        its silence."""
        seen: dict[str, tuple[str, str, float]] = {}
        for sample in samples:
            for rule in self._silences.get(sample.measurement, ()):
                if not all(m.matches(sample.tags) for m in rule.matchers):
                    continue
                labels = self._labels(rule, sample)
                fp = fingerprint(labels)
                ts = sample.timestamp_ns / 1e9
                earlier = seen.get(fp)
                last = ts if earlier is None else max(ts, earlier[2])
                seen[fp] = (rule.name, json.dumps(labels, sort_keys=True), last)
                alert = self._active(fp) if _object(rule.name, labels) in self._active_counts else None
                if alert is not None:
                    self._end(alert, ts, now, out)
        self._db.executemany(
            "INSERT INTO series_seen(fingerprint, rule, labels, last_at) VALUES (?,?,?,?) "
            "ON CONFLICT(fingerprint) DO UPDATE SET last_at=max(last_at, excluded.last_at)",
            [(fp, rule, labels, at) for fp, (rule, labels, at) in seen.items()],
        )

    def _check_silences(self, now: float, out: list[AlertTransition]) -> None:
        """Fire the silence rules whose series have said nothing for their ``absent_for_s``."""
        rules = {rule.name: rule for rules in self._silences.values() for rule in rules}
        for row in self._db.execute("SELECT fingerprint, rule, labels, last_at FROM series_seen").fetchall():
            rule = rules.get(row["rule"])
            if rule is None or rule.absent_for_s is None or now - row["last_at"] < rule.absent_for_s:
                continue
            labels = json.loads(row["labels"])
            alert = self._active(row["fingerprint"])
            if alert is None:
                summary = render(rule.summary or rule.name, {**labels, "silent_s": round(now - row["last_at"])})
                # its onset: the first sample that did not come, one silence after the last that did
                alert = Alert(row["fingerprint"], rule.name, labels, rule.severity, summary, PENDING,
                              started_at=row["last_at"], last_sample_at=row["last_at"])
                alert.id = self._insert(alert)
                self._active_counts[_object(rule.name, labels)] += 1
                out.append(AlertTransition(_copy(alert), None, PENDING, now))
            if alert.state == PENDING:
                alert.inhibited_by = self._inhibitor(alert, rule, now, now)
                if alert.inhibited_by is None:
                    alert.state = FIRING
                    alert.fired_at = now
                    out.append(AlertTransition(_copy(alert), PENDING, FIRING, now))
                self._update(alert)

    def _holds_firing(self, rule: Rule, alert: Alert, sample: Sample, ts: float, now: float) -> bool:
        """Whether a firing alert stays firing on a sample where ``when`` no longer holds: its
        ``clear_when`` does not hold yet (hysteresis), or it flaps and has not been good for the
        rule's flapping window."""
        if rule.clear_condition is not None and rule.clear_condition.evaluate(sample.fields, sample.tags) is not True:
            return True
        if rule.flapping is None:
            return False
        if not alert.flapping:
            alert.flapping = self._flaps(rule, alert, now, this_one=1)
        if not alert.flapping:
            return False
        if alert.good_since is None:
            alert.good_since = ts
        return ts - alert.good_since < rule.flapping.window_s

    def _flaps(self, rule: Rule, alert: Alert, now: float, this_one: int) -> bool:
        """Whether the object fired ``rule.flapping.threshold`` times or more in its window."""
        if rule.flapping is None:
            return False
        since = now - rule.flapping.window_s
        (earlier,) = self._db.execute(
            "SELECT COUNT(*) FROM alerts WHERE fingerprint = ? AND state = ? AND fired_at >= ?",
            (alert.fingerprint, RESOLVED, since),
        ).fetchone()
        return earlier + this_one >= rule.flapping.threshold

    # -- inhibition ---------------------------------------------------------------------------

    def _inhibitor(self, alert: Alert, rule: Rule, now: float, began: float) -> str | None:
        """What holds ``alert`` back: an unreachable device (``client/device``), else an alert of
        a rule inhibiting its rule (``rule/fingerprint``), else None. ``began``: when the
        observation that would fire it began (a run's start)."""
        return self._unreachable_device(alert, rule, now, began) or self._inhibiting_alert(alert)

    def _unreachable_device(self, alert: Alert, rule: Rule, now: float, began: float) -> str | None:
        client, device = alert.labels.get("client"), alert.labels.get("device")
        if not client or not device:
            return None
        chain = [device]
        seen = {device}
        while (parent := self.parents.get((client, chain[-1]))) and parent not in seen:
            chain.append(parent)
            seen.add(parent)
        for dev in chain:
            if dev == device and rule.measurement == COLLECTION:
                continue  # a device's own reachability alert is not inhibited by itself
            if self._unreachable(self._db, client, dev, now):
                return f"{client}/{dev}"
            # a parent that answers again since this observation began: the observation may be
            # its outage's, not the child's own; the child's next one tells
            if dev != device and self._answered_since(client, dev, now) > began:
                return f"{client}/{dev}"
        return None

    def _answered_since(self, client: str, device: str, now: float) -> float:
        (since,) = self._db.execute(
            "SELECT MAX(answered_since) FROM device_status WHERE client = ? AND device = ? AND at >= ?",
            (client, device, now - self.status_ttl_s),
        ).fetchone()
        return float(since) if since is not None else float("-inf")

    def _inhibiting_alert(self, alert: Alert) -> str | None:
        """``<rule>/<fingerprint>`` of a pending or firing alert whose rule inhibits ``alert``."""
        for source, inhibition, client in self._inhibitions.get(alert.rule, ()):
            if client is not None and alert.labels.get("client") != client:
                continue  # another client's copy of the source rule declares this one
            if not inhibition.selects(alert.labels):
                continue
            # A source alert without one of the equal labels has NULL there: a non-match.
            equal = [
                *inhibition.equal,
                *(["client"] if client is not None and "client" not in inhibition.equal else []),
            ]
            same = "".join(" AND json_extract(labels, ?) = ?" for _ in equal)
            args: list[Any] = [source]
            for label in equal:
                args += [f'$."{label}"', alert.labels[label]]
            row = self._db.execute(
                "SELECT fingerprint FROM alerts WHERE rule = ? AND state IN ('pending', 'firing')"
                f"{same} ORDER BY id LIMIT 1",
                args,
            ).fetchone()
            if row is not None:
                return f"{source}/{row['fingerprint']}"
        return None

    def is_unreachable(self, client: str, device: str, at: float) -> bool:
        with self._read_lock:
            return self._unreachable(self._reader, client, device, at)

    def _unreachable(self, db: sqlite3.Connection, client: str, device: str, at: float) -> bool:
        rows = db.execute(
            "SELECT status FROM device_status WHERE client = ? AND device = ? AND at >= ?",
            (client, device, at - self.status_ttl_s),
        ).fetchall()
        statuses = {r["status"] for r in rows}
        return bool(statuses & self.unreachable_statuses) and not statuses & ANSWERED

    # -- storage ------------------------------------------------------------------------------

    def _active(self, fp: str) -> Alert | None:
        row = self._db.execute(
            "SELECT * FROM alerts WHERE fingerprint = ? AND state IN ('pending', 'firing')", (fp,)
        ).fetchone()
        return _row_to_alert(row) if row else None

    def _insert(self, alert: Alert) -> int:
        cur = self._db.execute(
            "INSERT INTO alerts(fingerprint, rule, labels, severity, summary, state, started_at, fired_at, "
            "resolved_at, last_sample_at, inhibited_by, flapping, good_since, impacted) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                alert.fingerprint,
                alert.rule,
                json.dumps(alert.labels, sort_keys=True),
                alert.severity,
                alert.summary,
                alert.state,
                alert.started_at,
                alert.fired_at,
                alert.resolved_at,
                alert.last_sample_at,
                alert.inhibited_by,
                int(alert.flapping),
                alert.good_since,
                json.dumps(alert.impacted),
            ),
        )
        return int(cur.lastrowid or 0)

    def _update(self, alert: Alert) -> None:
        self._db.execute(
            "UPDATE alerts SET started_at=?, state=?, summary=?, fired_at=?, resolved_at=?, last_sample_at=?, "
            "inhibited_by=?, flapping=?, good_since=?, impacted=? WHERE id=?",
            (
                alert.started_at,
                alert.state,
                alert.summary,
                alert.fired_at,
                alert.resolved_at,
                alert.last_sample_at,
                alert.inhibited_by,
                int(alert.flapping),
                alert.good_since,
                json.dumps(alert.impacted),
                alert.id,
            ),
        )

    def alerts(self, states: Iterable[str] | None = None, client: str | None = None) -> list[Alert]:
        """Alerts (history included unless ``states`` filters), oldest first."""
        sql = "SELECT * FROM alerts"
        args: list[Any] = []
        where = []
        if states is not None:
            states = list(states)
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        sql += (" WHERE " + " AND ".join(where)) if where else ""
        sql += " ORDER BY id"
        with self._read_lock:
            found = [_row_to_alert(r) for r in self._reader.execute(sql, args)]
        return [a for a in found if client is None or a.client == client]

    def firing(self) -> list[Alert]:
        return self.alerts(states=[FIRING])


def _object(rule: str, labels: Mapping[str, Any]) -> tuple[str, str, str]:
    return rule, str(labels.get("client", "")), str(labels.get("device", ""))


def _client_of(rule: Rule) -> str | None:
    """The client a rule's copy is scoped to (the runner's exact `client` matcher), if any."""
    raw = rule.match.get("client")
    return None if raw is None or raw.startswith(("~", "!")) else raw


def _by_target(enabled: Sequence[Rule]) -> dict[str, list[tuple[str, Inhibition, str | None]]]:
    """Target rule name -> [(source rule name, inhibition, client of the declaring copy or None)]:
    a client's copy holds back that client's alerts only."""
    by_target: dict[str, list[tuple[str, Inhibition, str | None]]] = {}
    for rule in enabled:
        for inhibition in rule.inhibits:
            entry = (rule.name, inhibition, _client_of(rule))
            if entry not in by_target.setdefault(inhibition.rule, []):
                by_target[inhibition.rule].append(entry)
    return by_target


def _passes(rules: Sequence[Rule]) -> list[dict[str, list[Rule]]]:
    """The rules by measurement, in passes: a rule inhibited by others comes in a later pass than
    every rule inhibiting it (its depth in the acyclic inhibition graph); without inhibitions, one
    pass in the rules' order."""
    sources: dict[str, set[str]] = {}
    for rule in rules:
        for inhibition in rule.inhibits:
            sources.setdefault(inhibition.rule, set()).add(rule.name)
    depth: dict[str, int] = {}

    def depth_of(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((depth_of(s) for s in sources.get(name, ())), default=-1)
        return depth[name]

    passes: list[dict[str, list[Rule]]] = [{} for _ in range(1 + max((depth_of(r.name) for r in rules), default=0))]
    for rule in rules:
        passes[depth_of(rule.name)].setdefault(rule.measurement, []).append(rule)
    return passes


def _row_to_alert(row: sqlite3.Row) -> Alert:
    return Alert(
        fingerprint=row["fingerprint"],
        rule=row["rule"],
        labels=json.loads(row["labels"]),
        severity=row["severity"],
        summary=row["summary"],
        state=row["state"],
        started_at=row["started_at"],
        fired_at=row["fired_at"],
        resolved_at=row["resolved_at"],
        last_sample_at=row["last_sample_at"],
        inhibited_by=row["inhibited_by"],
        flapping=bool(row["flapping"]),
        good_since=row["good_since"],
        impacted=json.loads(row["impacted"] or "[]"),
        id=row["id"],
    )


def _copy(alert: Alert) -> Alert:
    return Alert.from_dict(alert.to_dict())
