"""The syslog receiver: a service plugin (``agent.services.syslog``). See README.md."""

from __future__ import annotations

from agent.api import PluginSpec
from collectors.syslog.receiver import SyslogOptions, SyslogReceiver, syslog_rules
from collectors.syslog.store import device_messages

__all__ = ["PLUGIN", "SyslogOptions", "SyslogReceiver"]

PLUGIN = PluginSpec(
    name="syslog",
    kind="service",
    factory=SyslogReceiver,
    options=SyslogOptions,
    default_rules=syslog_rules,
    device_messages=device_messages,
    description="syslog receiver (UDP, TCP; RFC 5424, RFC 3164): raw messages kept, patterns made events",
)
