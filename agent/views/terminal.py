"""The views drawn for a terminal (rich), 80 columns and up.

Names are never cut: client, device, rule and receiver names sit on their own or wrap at a space,
so each appears whole on one line. Tables keep their short columns (severity, state, times) at
their width and give the rest of the line, some 45 columns of 80, to one column holding the names
and the free text on as many lines as it needs; only a single name wider than that would be folded.
A URL or a path is never folded: one longer than the line is left to the terminal, so that it can
still be copied whole.

Times are the operator's local time: of the day when on the same day as ``now``, else with the date.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from agent.api import DeviceMessage
from agent.views.alerts import AlertRow
from agent.views.status import DOWN, UNKNOWN, UNREACHABLE, UP, CollectorStatus, DeviceStatus
from agent.views.tickets import BUILT_IN_RECEIVER, TicketPlace, TicketRow, TransmissionRow

STATE_STYLES = {UP: "green", DOWN: "bold red", UNREACHABLE: "yellow", UNKNOWN: "dim"}
SEVERITY_STYLES = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "yellow"}
ALERT_STATE_STYLES = {"firing": "bold", "pending": "", "resolved": "dim"}
TICKET_STATUS_STYLES = {"open": "bold", "solved": "dim", "failed": "bold red", "opening": "yellow", "solving": "",
                        "transmitted": "bold", "transmitting": "yellow", "transmission failed": "bold red"}


def when(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    local = datetime.fromtimestamp(at).astimezone()
    if local.date() == datetime.fromtimestamp(now).astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


TIME_COLUMNS = ("since", "last poll", "received")


def _table(*short: str, wide: str) -> Table:
    """Short columns kept whole, then the wide one taking the rest of the line. A time with its
    date wraps onto two lines (date, then time) rather than widening its column."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in short:
        if name in TIME_COLUMNS:
            table.add_column(name, max_width=len("2024-01-01"))
        else:
            table.add_column(name, no_wrap=True)
    table.add_column(wide, ratio=1, overflow="fold")
    return table


# -- status ------------------------------------------------------------------------------------


def status_view(devices: Sequence[DeviceStatus], now: float, installed: frozenset[str] | None = None) -> Group:
    """``installed``: the collectors installed here, to say why a device is never polled."""
    if not devices:
        return Group(Text("no devices: none in the config, and no agent has polled one with this state directory"))
    table = _table("state", "last poll", wide="device / collectors")
    for device in devices:
        lines = [Text(f"{device.client}/{device.device}", style="bold")]
        if device.behind:
            lines.append(Text(f"behind {device.behind} (down)"))
        if device.firing:
            lines.append(Text(f"{device.firing} alert(s) firing", style="red"))
        lines.extend(_collector_line(c, installed) for c in device.collectors)
        table.add_row(
            Text(device.state, style=STATE_STYLES.get(device.state, "")),
            when(device.last_poll_at, now),
            Text("\n").join(lines),
        )
    counts = Counter(d.state for d in devices)
    summary = ", ".join(f"{counts[state]} {state}" for state in (UP, DOWN, UNREACHABLE, UNKNOWN) if counts[state])
    clients = sorted({d.client for d in devices})
    return Group(Text(f"{len(devices)} device(s) of {', '.join(clients)}: {summary}"), table)


def _collector_line(turn: CollectorStatus, installed: frozenset[str] | None) -> Text:
    if turn.status is None:
        why = "collector not installed" if installed is not None and turn.collector not in installed else "never polled"
        return Text(f"{turn.collector}: {why}", style="dim")
    details = []
    if turn.samples is not None:
        details.append(f"{turn.samples} samples")
    if turn.duration_s is not None:
        details.append(f"{turn.duration_s:.1f} s")
    line = Text(f"{turn.collector} {turn.status}")
    if details:
        line.append(f" ({', '.join(details)})")
    if turn.error:
        line.append(f": {turn.error}", style="red" if turn.status != "ok" else "")
    return line


# -- alerts ------------------------------------------------------------------------------------


def alerts_view(alerts: Sequence[AlertRow], now: float) -> RenderableType:
    if not alerts:
        return Text("no alerts")
    table = _table("severity", "state", "since", wide="alert")
    for alert in alerts:
        lines = [Text(f"{alert.client}/{alert.device or '-'} {alert.rule}", style="bold"), Text(alert.summary)]
        if alert.inhibited_by:
            lines.append(Text(f"inhibited by {alert.inhibited_by}", style="yellow"))
        table.add_row(
            Text(alert.severity, style=SEVERITY_STYLES.get(alert.severity, "")),
            Text(alert.state, style=ALERT_STATE_STYLES.get(alert.state, "")),
            when(alert.since, now),
            Text("\n").join(lines),
        )
    return table


def messages_view(messages: Sequence[DeviceMessage], now: float) -> RenderableType:
    """The raw messages kept about a device, newest first, under its alerts."""
    if not messages:
        return Text("no message kept for this device (a syslog receiver keeps them: collectors/syslog)")
    table = _table("received", "from", "severity", wide="message")
    for message in messages:
        text = Text(message.text)
        if message.event:
            text = Text.assemble((f"[{message.event}] ", "bold"), text)
        table.add_row(when(message.at, now), Text(f"{message.origin} {message.source}"),
                      Text(message.severity or "-"), text)
    return table


# -- tickets -----------------------------------------------------------------------------------


def tickets_view(tickets: Sequence[TicketRow], places: Sequence[TicketPlace], now: float,
                 transmissions: Sequence[TransmissionRow] = ()) -> Group:
    """Each ticket as a block: its id, status and names on one line, then its times, title, URL
    and last error indented, each wrapping at 80 columns; then the alerts of the clients' own
    equipment passed on to their contacts instead; then where each client's tickets are."""
    parts: list[RenderableType] = []
    for ticket in tickets:
        head = Text()
        ticket_ref = f"{ticket.receiver}#{ticket.ticket_id}" if ticket.ticket_id else (ticket.receiver or "no ticket")
        head.append(ticket_ref, style="bold")
        head.append(" ")
        head.append(ticket.status, style=TICKET_STATUS_STYLES.get(ticket.status, ""))
        head.append(f"  {ticket.client}/{ticket.device or '-'}  {ticket.rule}")
        times = f"opened {when(ticket.opened_at, now)}" if ticket.opened_at is not None else "not opened yet"
        if ticket.taken_at is not None:
            times += f", taken in charge {when(ticket.taken_at, now)}"
        elif ticket.opened_at is not None and ticket.solved_at is None:
            times += ", not taken in charge yet"
        if ticket.solved_at is not None:
            times += f", solved {when(ticket.solved_at, now)}"
        parts.append(head)
        parts.append(_indented(Text(f"{times}\n{ticket.title}")))
        if ticket.url:
            parts.append(_whole(ticket.url))
        if ticket.error:
            parts.append(_indented(Text(f"last error: {ticket.error}")))
    if not tickets:
        parts.append(Text("no tickets"))
    for sent in transmissions:
        head = Text()
        head.append(f"to {sent.contact} by {sent.channel}", style="bold")
        head.append(" ")
        head.append(sent.status, style=TICKET_STATUS_STYLES.get(sent.status, ""))
        head.append(f"  {sent.client}/{sent.device or '-'}  {sent.rule}")
        times = f"delivered {when(sent.sent_at, now)}" if sent.sent_at is not None else \
            f"passed on {when(sent.queued_at, now)}, not delivered yet ({sent.attempts} attempt(s))"
        parts.append(head)
        parts.append(_indented(Text(f"the client's own equipment, no ticket: {times}, {sent.address}\n{sent.title}")))
        if sent.error:
            parts.append(_indented(Text(f"last error: {sent.error}")))
    for place in places:
        if place.receiver == BUILT_IN_RECEIVER:
            parts.append(Text(f"{place.client}: tickets in the built-in log (all listed here)", style="dim"))
            continue
        parts.append(Text(f"{place.client}: tickets in {place.receiver}" + (":" if place.where else ""), style="dim"))
        if place.where:
            parts.append(_whole(place.where))
    return Group(*parts)


def _indented(text: Text) -> Padding:
    return Padding(text, (0, 0, 0, 2), expand=False)


def _whole(text: str) -> Text:
    """A URL or path on a line of its own, indented, never wrapped nor folded: one longer than the
    line is left to the terminal (a padded renderable would crop it)."""
    return Text(f"  {text}", overflow="ignore")
