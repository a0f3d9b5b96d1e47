"""Syslog parsing (RFC 5424, RFC 3164 as devices send it) and RFC 6587 framing."""

from __future__ import annotations

import pytest

from collectors.syslog.parse import Framer, FramingError, SyslogError, parse


def test_rfc5424_with_structured_data_and_bom() -> None:
    m = parse(b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 '
              b'[exampleSDID@32473 iut="3" eventSource="Appl\\"ication"][examplePriority@32473 class="high"] '
              b'\xef\xbb\xbfAn application event')
    assert (m.format, m.facility_name, m.severity_name) == ("rfc5424", "local4", "notice")
    assert (m.timestamp, m.hostname, m.app, m.procid, m.msgid) == (
        "2003-10-11T22:14:15.003Z", "mymachine.example.com", "evntslog", None, "ID47")
    assert m.structured == {"exampleSDID@32473": {"iut": "3", "eventSource": 'Appl"ication'},
                            "examplePriority@32473": {"class": "high"}}
    assert m.text == "An application event"


def test_rfc5424_nil_fields_and_no_message() -> None:
    m = parse(b"<13>1 - - - - - -")
    assert (m.hostname, m.app, m.text) == (None, None, "")


def test_rfc3164_linux() -> None:
    m = parse(b"<38>Jan  5 10:00:01 web-1 sshd[1234]: Failed password for root from 10.0.0.9 port 22 ssh2\n")
    assert (m.format, m.timestamp, m.hostname, m.app, m.procid) == ("rfc3164", "Jan  5 10:00:01", "web-1", "sshd",
                                                                    "1234")
    assert m.text == "Failed password for root from 10.0.0.9 port 22 ssh2"
    assert (m.facility_name, m.severity_name) == ("auth", "info")


def test_cisco_ios_sequence_number_and_clock_in_front() -> None:
    m = parse(b"<187>158: *Mar 21 14:31:27.339: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down")
    assert m.hostname is None and m.severity_name == "err"
    assert "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down" in m.text


def test_key_value_text_right_after_the_pri_and_no_pri_at_all() -> None:
    m = parse(b'<30>device="SFW" log_component="HA" message="x"')
    assert m.text == 'device="SFW" log_component="HA" message="x"' and m.hostname is None
    bare = parse(b"just text")
    assert (bare.facility_name, bare.severity_name, bare.text) == ("user", "notice", "just text")


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"<999>hello", "outside 0..191"),
    (b"<01>hello", "outside 0..191"),
    (b"<x>hello", "bad PRI"),
    (b"<13>1 2003-10-11T22:14:15Z host", "six fields"),
    (b"<13>1 - host app - - [unclosed", "not closed"),
    (b"<13>1 - host app - - garbage", "neither"),
])
def test_what_is_no_syslog_message(raw: bytes, reason: str) -> None:
    with pytest.raises(SyslogError, match=reason):
        parse(raw)


def test_octet_counting_and_newline_framing_split_across_reads() -> None:
    framer = Framer(max_bytes=100)
    one, two = b"<13>1 - h a - - - first", b"<13>second"
    stream = f"{len(one)} ".encode() + one + two + b"\n" + b"<13>third"
    frames = [f for i in range(0, len(stream), 3) for f in framer.feed(stream[i : i + 3])]
    assert frames == [one, two]
    assert framer.flush() == [b"<13>third"]


def test_an_over_long_line_is_cut_and_the_rest_skipped_an_over_long_count_closes() -> None:
    framer = Framer(max_bytes=10)
    assert framer.feed(b"<13>" + b"x" * 30) == [b"<13>xxxxxx"]
    assert framer.feed(b"yyy\n<13>ok\n") == [b"<13>ok"]
    with pytest.raises(FramingError, match="over the 10 limit"):
        Framer(max_bytes=10).feed(b"11 ")
    with pytest.raises(FramingError, match="without its space"):
        Framer(max_bytes=10).feed(b"123456789012345")
