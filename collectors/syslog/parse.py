"""Syslog messages: RFC 5424 and RFC 3164 (BSD) parsing, and RFC 6587 framing over TCP.

Parsing is lenient where the field is (RFC 3164 is a description of practice: Cisco IOS puts a
sequence number where the timestamp goes, Sophos SFOS sends key=value text right after the PRI)
and strict where a wrong guess would mislead: a PRI that is not ``<0>``..``<191>`` is an error,
and so is an RFC 5424 header that does not have its six fields. A message without PRI is, as
RFC 3164 section 4.3.3 says, user.notice. The timestamp is kept as written, for display: the
sample is stamped when received (device clocks drift, and RFC 3164 has no year).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7",
)  # fmt: skip
DEFAULT_PRI = 13  # user.notice (RFC 3164 4.3.3)
BOM = "\ufeff"

_PRI = re.compile(r"<(\d{1,3})>")
# RFC 3164: "Mmm dd hh:mm:ss" (day space-padded), as Linux's rsyslog and most appliances send it;
# Cisco adds milliseconds and a zone, with a leading "*" when the clock is not synchronised.
_BSD_TIME = re.compile(
    r"\*?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-3]\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Z]{2,5})?"
)
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*$")
_TAG = re.compile(r"([A-Za-z0-9_./-]{1,48})(?:\[([^\]\s]{1,32})\])?:(?: |$)")
_SD_PARAM = re.compile(r' ([^= \]"]{1,32})="((?:[^"\\]|\\.)*)"')
_SD_ESCAPE = re.compile(r"\\([\"\\\]])")


class SyslogError(ValueError):
    """Not a syslog message (the reason says why)."""


@dataclass(frozen=True)
class Message:
    facility: int
    severity: int
    text: str  # the MSG part (what patterns are matched against)
    format: str  # "rfc5424" | "rfc3164"
    timestamp: str | None = None
    hostname: str | None = None
    app: str | None = None
    procid: str | None = None
    msgid: str | None = None
    structured: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def severity_name(self) -> str:
        return SEVERITIES[self.severity]

    @property
    def facility_name(self) -> str:
        return FACILITIES[self.facility] if self.facility < len(FACILITIES) else str(self.facility)


def parse(data: bytes) -> Message:
    """One message (one datagram, or one TCP frame) -> :class:`Message`."""
    text = data.decode("utf-8", "replace").rstrip("\r\n\x00")
    if not text.strip():
        raise SyslogError("empty message")
    pri = DEFAULT_PRI
    if text.startswith("<"):
        match = _PRI.match(text)
        if match is None:
            raise SyslogError(f"bad PRI in {text[:16]!r}")
        pri = int(match.group(1))
        if pri > 191 or (len(match.group(1)) > 1 and match.group(1)[0] == "0"):
            raise SyslogError(f"PRI {match.group(1)} outside 0..191")
        text = text[match.end() :]
    facility, severity = divmod(pri, 8)
    if text.startswith("1 "):
        return _rfc5424(facility, severity, text[2:])
    return _rfc3164(facility, severity, text)


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _rfc5424(facility: int, severity: int, rest: str) -> Message:
    parts = rest.split(" ", 5)
    if len(parts) < 6:
        raise SyslogError("RFC 5424 header without its six fields")
    timestamp, hostname, app, procid, msgid, tail = parts
    structured: dict[str, dict[str, str]] = {}
    if tail.startswith("-"):
        tail = tail[1:]
    elif tail.startswith("["):
        while tail.startswith("["):
            end = _sd_end(tail)
            element = tail[1:end]
            sd_id, _, params = element.partition(" ")
            structured[sd_id] = {k: _SD_ESCAPE.sub(r"\1", v) for k, v in _SD_PARAM.findall(" " + params)}
            tail = tail[end + 1 :]
    else:
        raise SyslogError("RFC 5424 STRUCTURED-DATA is neither '-' nor '[...]'")
    message = tail[1:] if tail.startswith(" ") else tail
    message = message.removeprefix(BOM)
    return Message(facility, severity, message, "rfc5424", _nil(timestamp), _nil(hostname), _nil(app), _nil(procid),
                   _nil(msgid), structured)


def _sd_end(text: str) -> int:
    """Index of the ``]`` closing the SD-ELEMENT at the start of ``text`` (escapes and quoted
    values honoured)."""
    quoted = False
    i = 1
    while i < len(text):
        char = text[i]
        if char == "\\" and quoted:
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "]" and not quoted:
            return i
        i += 1
    raise SyslogError("RFC 5424 STRUCTURED-DATA element not closed")


def _rfc3164(facility: int, severity: int, rest: str) -> Message:
    timestamp = hostname = app = procid = None
    match = _BSD_TIME.match(rest)
    if match is not None:
        timestamp = match.group(0)
        rest = rest[match.end() :].lstrip(" ")
        if rest.startswith(":"):  # Cisco: "Mar  1 00:01:02.345: %LINK-..."
            rest = rest[1:].lstrip(" ")
        else:
            host, _, after = rest.partition(" ")
            if _HOSTNAME.match(host) and not host.endswith(":"):
                hostname, rest = host, after
    tag = _TAG.match(rest)
    if tag is not None and not tag.group(1).isdigit():
        app, procid = tag.group(1), tag.group(2)
        rest = rest[tag.end() :]
    return Message(facility, severity, rest, "rfc3164", timestamp, hostname, app, procid)


class FramingError(ValueError):
    """The TCP stream cannot be split any more (an octet count past the limit): close it."""


class Framer:
    """RFC 6587 over one TCP connection: octet counting (``LEN SP MSG``) where a frame starts with a
    digit, newline-terminated otherwise (the older, non-transparent framing; a lone message may
    hold no LF). A newline frame longer than ``max_bytes`` is cut to it, the rest discarded up to
    the next LF."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._skipping = False  # inside an over-long LF-framed message

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        frames: list[bytes] = []
        while self._buffer:
            if self._skipping:
                end = self._buffer.find(b"\n")
                if end < 0:
                    self._buffer.clear()
                    break
                del self._buffer[: end + 1]
                self._skipping = False
                continue
            if self._buffer[:1].isdigit():
                space = self._buffer.find(b" ", 0, 12)
                if space < 0:
                    if len(self._buffer) >= 12:
                        raise FramingError("octet count without its space")
                    break
                count_text = bytes(self._buffer[:space])
                if not count_text.isdigit():
                    raise FramingError(f"bad octet count {count_text[:12]!r}")
                count = int(count_text)
                if count > self.max_bytes:
                    raise FramingError(f"frame of {count} bytes over the {self.max_bytes} limit")
                if len(self._buffer) < space + 1 + count:
                    break
                frames.append(bytes(self._buffer[space + 1 : space + 1 + count]))
                del self._buffer[: space + 1 + count]
                continue
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_bytes:
                    frames.append(bytes(self._buffer[: self.max_bytes]))
                    self._buffer.clear()
                    self._skipping = True
                break
            frame = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if frame.strip():
                frames.append(frame[: self.max_bytes])
        return frames

    def flush(self) -> list[bytes]:
        """What an LF-framed peer left without its LF when it closed."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return [rest[: self.max_bytes]] if rest.strip() and not self._skipping and not rest[:1].isdigit() else []
