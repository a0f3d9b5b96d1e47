"""InfluxStore against a fake InfluxDB v2 write endpoint on loopback (aiohttp)."""

import pytest
from aiohttp import web

from agent.api import Sample
from agent.stores import StoreError
from agent.stores.influx import InfluxStore

T0 = 1_700_000_000_000_000_000


class FakeInflux:
    """Answers /api/v2/write with the queued (status, body) replies, then 204."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.bodies: list[str] = []
        self.encodings: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        # aiohttp has already inflated the gzip'd body; the header shows it was sent compressed.
        self.encodings.append(request.headers.get("Content-Encoding"))
        self.bodies.append((await request.read()).decode())
        if self.replies:
            status, body = self.replies.pop(0)
            return web.json_response(body, status=status)
        return web.Response(status=204)


@pytest.fixture
async def fake_influx():
    servers = []

    async def start(replies):
        fake = FakeInflux(replies)
        app = web.Application()
        app.router.add_post("/api/v2/write", fake.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        servers.append(runner)
        port = runner.addresses[0][1]
        return fake, f"http://127.0.0.1:{port}"

    yield start
    for runner in servers:
        await runner.cleanup()


def sample(i: int) -> Sample:
    return Sample("cpu", {"client": "c", "device": "d"}, {"load": float(i), "unknown": None}, T0 + i)


class RecordingSleep:
    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_400_names_url_and_server_message_and_is_not_retried(fake_influx):
    fake, url = await fake_influx([(400, {"code": "invalid", "message": "unable to parse 'cpu load=': bad"})])
    sleep = RecordingSleep()
    store = InfluxStore(url, "org", "vigie", "tok", sleep=sleep)
    with pytest.raises(StoreError) as caught:
        await store.write([sample(1)])
    await store.close()
    error = caught.value
    assert error.status == 400 and not error.retryable and error.data_rejected
    assert url in str(error) and "unable to parse 'cpu load=': bad" in str(error)
    assert len(fake.bodies) == 1 and sleep.delays == []


async def test_401_is_final_but_not_a_data_rejection(fake_influx):
    fake, url = await fake_influx([(401, {"code": "unauthorized", "message": "unauthorized access"})])
    store = InfluxStore(url, "org", "vigie", "bad-token", sleep=RecordingSleep())
    with pytest.raises(StoreError, match="unauthorized access") as caught:
        await store.write([sample(1)])
    await store.close()
    assert not caught.value.retryable and not caught.value.data_rejected
    assert len(fake.bodies) == 1


async def test_429_and_5xx_are_retried_with_backoff_then_sent_gzipped_in_batches(fake_influx):
    fake, url = await fake_influx([(429, {"message": "slow down"}), (503, {"message": "busy"})])
    sleep = RecordingSleep()
    store = InfluxStore(url, "org", "vigie", "tok", batch_size=2, backoff_s=1, sleep=sleep)
    await store.write([sample(i) for i in range(3)])
    await store.close()
    assert sleep.delays == [1, 2]
    assert set(fake.encodings) == {"gzip"}
    # Two failed tries of the first batch, then both batches; None fields are not sent.
    assert fake.bodies[2:] == [
        f"cpu,client=c,device=d load=0.0 {T0}\ncpu,client=c,device=d load=1.0 {T0 + 1}",
        f"cpu,client=c,device=d load=2.0 {T0 + 2}",
    ]


async def test_retries_run_out_with_the_last_server_message(fake_influx):
    fake, url = await fake_influx([(500, {"message": f"internal {i}"}) for i in range(4)])
    sleep = RecordingSleep()
    store = InfluxStore(url, "org", "vigie", "tok", max_retries=3, backoff_s=1, max_backoff_s=3, sleep=sleep)
    with pytest.raises(StoreError, match="internal 3") as caught:
        await store.write([sample(1)])
    await store.close()
    assert caught.value.retryable and caught.value.status == 500
    assert sleep.delays == [1, 2, 3]


async def test_connection_refused_names_the_url(unused_tcp_port):
    url = f"http://127.0.0.1:{unused_tcp_port}"
    store = InfluxStore(url, "org", "vigie", "tok", max_retries=1, sleep=RecordingSleep())
    with pytest.raises(StoreError) as caught:
        await store.write([sample(1)])
    await store.close()
    assert url in str(caught.value) and caught.value.retryable and caught.value.status is None


async def test_unrepresentable_fields_are_counted_once_sent_not_per_attempt(fake_influx):
    fake, url = await fake_influx([(400, {"code": "invalid", "message": "refused"})])
    store = InfluxStore(url, "org", "vigie", "tok", sleep=RecordingSleep())
    nan = Sample("cpu", {"device": "d"}, {"load": float("nan"), "ok": 1.0}, T0)
    with pytest.raises(StoreError):
        await store.write([nan])
    assert store.unrepresentable_fields == 0
    await store.write([nan])
    await store.close()
    assert store.unrepresentable_fields == 1
    assert fake.bodies == [f"cpu,device=d ok=1.0 {T0}"] * 2
