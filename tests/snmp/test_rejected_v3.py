"""SNMPv3 (pysnmp) authentication failures are named and counted (issue 7 item 7), on snmpsim."""

from __future__ import annotations

import pytest

from agent.api import CollectError, Unreachable
from collectors.snmp.client import SnmpAuth, SnmpClient
from tests.snmp.conftest import V3_USERS


@pytest.mark.parametrize(
    ("credentials", "said"),
    [
        ({"auth_key": "not-the-key"}, "Wrong SNMP PDU digest"),
        ({"user": "nobody"}, "Unknown USM user"),
        ({"priv_key": "not-the-priv-key"}, "ciphertext is broken"),
    ],
    ids=["wrong-digest", "unknown-user", "wrong-priv-key"],
)
async def test_usm_failures_are_authentication_failures(lab, credentials: dict, said: str) -> None:
    user = V3_USERS[0]
    given = {"user": user.user, "auth_key": user.auth_key, "priv_key": user.priv_key, **credentials}
    auth = SnmpAuth("3", auth_protocol="SHA", priv_protocol="AES", context="odd_agent", **given)
    client = SnmpClient(lab.host, lab.port, auth, timeout_s=1, retries=0)
    for attempt in (1, 2):
        with pytest.raises(CollectError, match=rf"{lab.host}:{lab.port}: authentication failure: .*{said}") as excinfo:
            await client.get(["1.3.6.1.2.1.1.2.0"])
        assert not isinstance(excinfo.value, Unreachable)
        assert client.rejected.auth_failures == attempt
    assert (client.rejected.malformed, client.rejected.mismatched) == (0, 0)
