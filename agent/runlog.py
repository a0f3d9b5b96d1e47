"""What `vigie run` tells its operator in its log, besides the start-up and shutdown lines of
agent/runner.py and the ticket lines of the dispatcher (alerting/notifier.py: opened, re-attached,
followed up, solved, failed, each naming client/device and rule).

- each alert that fires or resolves: one INFO line with client/device, rule, severity and summary
  (a new pending alert is DEBUG: most never fire);
- the first round of polls: one INFO line once every poll has run once, with how the round went and
  which devices did not answer, so an operator knows when the agent's view of the estate is whole.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from agent.api import Sample
from agent.api.alerts import FIRING, PENDING, RESOLVED, AlertTransition
from agent.inventory import Poll
from agent.scheduler import NOT_RUN_STATUSES

log = logging.getLogger(__name__)

COLLECTION = "collection"
# Devices named in the first round's line: enough to act on, few enough for one line.
NAMED_FAILURES = 5


def log_transitions(transitions: Sequence[AlertTransition]) -> None:
    for transition in transitions:
        alert = transition.alert
        who = f"{alert.client}/{alert.device or '-'} {alert.rule} ({alert.severity})"
        if transition.state == FIRING:
            log.info("alert firing: %s: %s", who, alert.summary)
        elif transition.state == RESOLVED:
            lasted = f" after {transition.at - alert.fired_at:.0f} s" if alert.fired_at is not None else ""
            log.info("alert resolved%s: %s: %s", lasted, who, alert.summary)
        elif transition.state == PENDING:
            log.debug("alert pending: %s: %s", who, alert.summary)


class FirstRound:
    """A sample listener that logs, once, when every poll has run once (a turn that did not run,
    skipped or overloaded, does not count) and how those runs went."""

    def __init__(self, polls: Sequence[Poll], clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started_at = clock()
        self._waiting = {_poll_key(poll) for poll in polls}
        self._total = len(self._waiting)
        self._statuses: Counter[str] = Counter()
        self._not_ok: list[str] = []

    @property
    def done(self) -> bool:
        return not self._waiting

    def __call__(self, samples: Sequence[Sample]) -> None:
        if self.done:
            return
        for sample in samples:
            status = sample.fields.get("status")
            if sample.measurement != COLLECTION or status in NOT_RUN_STATUSES:
                continue
            key = (sample.tags.get("client", ""), sample.tags.get("device", ""), sample.tags.get("collector", ""))
            if key not in self._waiting:
                continue
            self._waiting.discard(key)
            self._statuses[str(status)] += 1
            if status != "ok":
                self._not_ok.append(f"{key[0]}/{key[1]} {status}")
        if self.done:
            self._report()

    def _report(self) -> None:
        ordered = sorted(self._statuses.items(), key=lambda item: (item[0] != "ok", -item[1], item[0]))
        counts = ", ".join(f"{n} {status}" for status, n in ordered)
        named = ", ".join(self._not_ok[:NAMED_FAILURES])
        if len(self._not_ok) > NAMED_FAILURES:
            named += f" and {len(self._not_ok) - NAMED_FAILURES} more (vigie status)"
        log.info(
            "first poll round done in %.1f s: %d poll(s), %s%s",
            self.clock() - self.started_at,
            self._total,
            counts or "none",
            f"; not ok: {named}" if named else "",
        )


def _poll_key(poll: Poll) -> tuple[str, str, str]:
    return (poll.target.tags.get("client", ""), poll.target.name, poll.collector)


def plugin_text(kind: str, options: object) -> str:
    """A plugin as a log line names it: its kind, and where it sends things if it has a ``url``."""
    url = getattr(options, "url", None)
    return f"{kind} at {url}" if isinstance(url, str) else kind
