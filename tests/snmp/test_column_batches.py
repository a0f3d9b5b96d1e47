"""Short columns walked several to a GETBULK (SnmpClient.walk_batches / walk_columns): the values
of the lone walks in fewer requests from an agent that answers as RFC 3416 says (snmpsim on a real
2960X walk, the scripted agent), lone walks again for an agent that answers the first OID alone,
what each column read kept when the agent goes silent half way, and the rows of a poll of every
recording the same either way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from agent.api import Target
from collectors.snmp import SnmpCollector
from collectors.snmp.client import SnmpAuth, SnmpClient
from lab.snmpsim import SnmpLab
from lab.walks import all_recordings
from tests.snmp.hostile import IF_DESCR, IF_NAME, IF_OPER, IF_SPEED, device, start

IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"  # 146 rows on the 2960X: a long column, walked alone
SHORT = [  # a 2960X's short tables (rows): CPU (1), CDP (7), envmon (3), memory pools (3), sensors (10)
    "1.3.6.1.4.1.9.9.109.1.1.1.1.2", "1.3.6.1.4.1.9.9.109.1.1.1.1.8", "1.3.6.1.4.1.9.9.13.1.3.1.3",
    "1.3.6.1.4.1.9.9.13.1.5.1.3", "1.3.6.1.4.1.9.9.13.1.4.1.3", "1.3.6.1.4.1.9.9.23.1.2.1.1.6",
    "1.3.6.1.4.1.9.9.48.1.1.1.6", "1.3.6.1.4.1.9.9.91.1.1.1.1.4",
    "1.3.6.1.4.1.9.9.13.1.2.1.3",  # voltages: none on this switch
]


@pytest.fixture(scope="module")
def lab() -> Iterator[SnmpLab]:
    with SnmpLab({"ios_2960x": "ios_2960x"}) as running:
        yield running


def counting(client: SnmpClient) -> list[int]:
    """The number of OIDs of each request ``client`` sends from now on."""
    sent: list[int] = []
    request = client._request

    async def counted(op, oids, repetitions=None):
        sent.append(len(oids))
        return await request(op, oids, repetitions)

    client._request = counted  # type: ignore[method-assign]
    return sent


async def lone_walks(client: SnmpClient, columns: list[str]) -> dict:
    walked = {column: await client.walk_column(column) for column in columns}
    assert all(found.error is None for found in walked.values())
    return {column: found.values for column, found in walked.items()}


async def test_short_columns_go_together_and_read_what_lone_walks_read(lab: SnmpLab) -> None:
    client = SnmpClient(lab.host, lab.port, SnmpAuth("2c", community="ios_2960x"))
    columns = [*SHORT, IF_OPER_STATUS]
    assert client.walk_batches(columns) == [[column] for column in columns]  # nothing known of them yet
    alone = await lone_walks(client, columns)
    assert [len(alone[column]) for column in SHORT] == [1, 1, 3, 3, 3, 7, 3, 10, 0]
    batches = client.walk_batches(columns)
    # by length, at most 25 varbinds a request: the sensors' 10 rows and the one past them alone
    expected = [[SHORT[8], *SHORT[:5]], [SHORT[6], SHORT[5]], [SHORT[7]], [IF_OPER_STATUS]]
    assert [sorted(batch) for batch in batches] == [sorted(batch) for batch in expected]
    sent = counting(client)
    together = {}
    for batch in batches:
        for column, found in (await client.walk_columns(batch)).items():
            assert found.error is None, column
            together[column] = found.values
    assert together == alone
    assert list(together[SHORT[7]]) == list(alone[SHORT[7]])  # in the agent's order
    # one request a batch of short columns, where lone walks sent one a column
    assert sent == [6, 2, 1] + [1] * 6, sent  # (the long column: 147 varbinds, 25 a request)


async def test_an_agent_answering_the_first_oid_alone_gets_lone_walks(caplog) -> None:
    transport, agent = await start(device(3))
    try:
        client = SnmpClient("127.0.0.1", agent.port, SnmpAuth("2c", community="public"), timeout_s=1.0)
        columns = [IF_DESCR, IF_SPEED, IF_OPER, IF_NAME]
        alone = await lone_walks(client, columns)
        (batch,) = client.walk_batches(columns)
        with caplog.at_level(logging.WARNING, logger="collectors.snmp.client"):
            walked = await client.walk_columns(batch)
        assert {column: found.values for column, found in walked.items()} == alone
        assert f"127.0.0.1:{agent.port}: GETBULK of 4 columns answered out of order" in caplog.text
        assert client.walk_batches(columns) == [[column] for column in columns]  # from now on
        agent.bulk_per_rfc = True  # the same agent answering as it should: together again elsewhere
        other = SnmpClient("127.0.0.1", agent.port, SnmpAuth("2c", community="public"), timeout_s=1.0)
        await lone_walks(other, columns)
        (batch,) = other.walk_batches(columns)
        sent = counting(other)
        walked = await other.walk_columns(batch)
        assert {column: found.values for column, found in walked.items()} == alone and sent == [4]
        agent.values.update({f"{column}.{index}": agent.values[f"{column}.1"] for column in columns
                             for index in (4, 5)})  # two ports more since: past the rows expected
        walked = await other.walk_columns(batch)
        assert [list(found.values) for found in walked.values()] == [["1", "2", "3", "4", "5"]] * 4
    finally:
        transport.close()


async def test_an_agent_silent_half_way_leaves_each_column_what_it_read() -> None:
    transport, agent = await start(device(6))
    agent.bulk_per_rfc = True
    try:
        client = SnmpClient("127.0.0.1", agent.port, SnmpAuth("2c", community="public"), timeout_s=0.2,
                            retries=0, max_repetitions=8)
        columns = [IF_DESCR, IF_SPEED, IF_OPER, IF_NAME]
        alone = await lone_walks(client, columns)
        agent.walk_answers = 1  # two rows of each (8 varbinds), then nothing
        walked = await client.walk_columns(columns)
        for column in columns:
            found = walked[column]
            assert found.error is not None and "127.0.0.1" in str(found.error)
            assert found.values == dict(list(alone[column].items())[:2])
    finally:
        transport.close()
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def every_walk() -> Iterator[SnmpLab]:
    with SnmpLab({name: name for name in all_recordings()}) as running:
        yield running


def content(rows) -> list:
    """Rows as sample content, less what moves between two polls of a recording (the uptime)."""
    return sorted((r.measurement, sorted(r.tags.items()),
                   sorted((k, v) for k, v in r.fields.items() if "uptime" not in k)) for r in rows)


@pytest.mark.parametrize("name", all_recordings())
async def test_a_poll_with_batched_walks_reads_what_lone_walks_read(every_walk: SnmpLab, name: str) -> None:
    """Every recording through snmpsim, polled twice (the second poll batches the short columns
    the first counted) by two collectors, one kept to lone walks: the same rows."""
    target = Target(name, every_walk.host, every_walk.port, {"community": name})
    batched, lone = SnmpCollector(), SnmpCollector()
    lone._client_for(target)._together = False
    for collector in (batched, lone):
        await collector.poll(target)
    client = batched._client_for(target)
    assert any(len(batch) > 1 for batch in client.walk_batches(client._rows_seen))
    assert content(await batched.poll(target)) == content(await lone.poll(target))
    assert client._together  # snmpsim answers a GETBULK of several OIDs as RFC 3416 says
