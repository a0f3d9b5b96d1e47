"""InfluxStore against a fake InfluxDB v2 write endpoint on loopback (aiohttp)."""

import asyncio

import pytest
from aiohttp import web

from agent.api import Sample
from agent.stores import StoreError
from agent.stores.influx import InfluxStore
from tests.agent.helpers import SAFETY_S

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
    store = InfluxStore(url, "org", "vigie", "tok", batch_size=2, max_in_flight=1, backoff_s=1, sleep=sleep)
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


class HoldingInflux:
    """Holds every write until ``hold`` of them are in the server at once, then answers them all;
    ``refuse`` maps a line's load to the (status, message) its batch gets."""

    def __init__(self, hold: int, refuse: dict[str, tuple[int, str]] | None = None):
        self.hold = hold
        self.refuse = refuse or {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.bodies: list[str] = []
        self.enough = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self.hold:
            self.enough.set()
        try:
            # Bounded: a store that sent fewer at once than ``hold`` fails on the count below, not by hanging.
            async with asyncio.timeout(SAFETY_S):
                await self.enough.wait()
        except TimeoutError:
            pass
        finally:
            self.in_flight -= 1
        for load, (status, message) in self.refuse.items():
            if f"load={load} " in body:
                return web.json_response({"message": message}, status=status)
        self.bodies.append(body)
        return web.Response(status=204)


async def holding_server(holding: HoldingInflux):
    app = web.Application()
    app.router.add_post("/api/v2/write", holding.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_batches_are_sent_up_to_max_in_flight_at_once_and_all_arrive():
    holding = HoldingInflux(hold=3)
    runner, url = await holding_server(holding)
    try:
        store = InfluxStore(url, "org", "vigie", "tok", batch_size=1, max_in_flight=3, gzip_level=None)
        await store.write([sample(i) for i in range(8)])
        await store.close()
    finally:
        await runner.cleanup()
    assert holding.most_in_flight == 3
    assert sorted(holding.bodies) == sorted(f"cpu,client=c,device=d load={float(i)} {T0 + i}" for i in range(8))


async def test_an_outage_of_one_batch_outranks_refused_data_of_another_and_the_rest_is_sent():
    holding = HoldingInflux(hold=3, refuse={"0.0": (400, "unable to parse"), "1.0": (503, "busy")})
    runner, url = await holding_server(holding)
    try:
        store = InfluxStore(url, "org", "vigie", "tok", batch_size=1, max_in_flight=3, max_retries=0)
        with pytest.raises(StoreError) as caught:
            await store.write([sample(i) for i in range(6)])
        await store.close()
    finally:
        await runner.cleanup()
    # The spool must wait and resend rather than bisect: the 503 is what the call reports.
    assert caught.value.status == 503 and caught.value.retryable and not caught.value.data_rejected
    # The batch in flight beside the failed ones was taken (when the failures reach the store
    # decides whether the next batches start: their fate is the caller's resend).
    assert f"cpu,client=c,device=d load=2.0 {T0 + 2}" in holding.bodies
    assert not any("load=0.0 " in body or "load=1.0 " in body for body in holding.bodies)


@pytest.mark.parametrize("level", [None, 0, 1, 9])
async def test_every_gzip_level_sends_the_same_lines(fake_influx, level):
    fake, url = await fake_influx([])
    store = InfluxStore(url, "org", "vigie", "tok", gzip_level=level)
    await store.write([sample(1)])
    await store.close()
    assert fake.bodies == [f"cpu,client=c,device=d load=1.0 {T0 + 1}"]
    assert fake.encodings == [None if level is None else "gzip"]


@pytest.mark.parametrize(("option", "value"), [("max_in_flight", 0), ("gzip_level", 10)])
def test_bad_concurrency_or_gzip_level_is_a_clear_error(option, value):
    with pytest.raises(ValueError, match=option):
        InfluxStore("http://tsdb:8086", "org", "vigie", "tok", **{option: value})


@pytest.fixture
async def https_influx(tmp_path):
    """The fake write endpoint over TLS, its certificate from a private CA (trustme)."""
    import ssl

    import trustme

    authority = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_path))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_tls)
    fake = FakeInflux([])
    app = web.Application()
    app.router.add_post("/api/v2/write", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    yield fake, f"https://127.0.0.1:{runner.addresses[0][1]}", ca_path
    await runner.cleanup()


def influx_store_from_config(tmp_path, **options):
    from agent.api import StoreContext
    from agent.stores.plugins import INFLUXDB

    validated = INFLUXDB.options.model_validate({"org": "noc", "bucket": "vigie", "token": {"secret": "t"},
                                                 "spool_dir": str(tmp_path / "spool"), **options})
    return INFLUXDB.factory(validated, StoreContext(tmp_path, lambda ref: "tok"))


async def test_an_https_tsdb_with_a_private_ca_is_trusted_through_ca_bundle_only(https_influx, tmp_path):
    fake, url, ca_path = https_influx
    store = influx_store_from_config(tmp_path / "a", url=url, ca_bundle=str(ca_path))
    await store.inner.write([sample(1)])
    await store.close()
    assert fake.bodies == [f"cpu,client=c,device=d load=1.0 {T0 + 1}"]

    untrusted = influx_store_from_config(tmp_path / "b", url=url)  # the system's CAs do not know it
    with pytest.raises(StoreError, match="127.0.0.1"):
        await untrusted.inner.write([sample(2)])
    await untrusted.close()
    assert len(fake.bodies) == 1


async def test_verify_tls_false_is_explicit_and_logged(https_influx, tmp_path, caplog):
    fake, url, _ = https_influx
    with caplog.at_level("WARNING"):
        store = influx_store_from_config(tmp_path, url=url, verify_tls=False)
    assert f"TLS verification of {url} disabled by verify_tls: false" in caplog.text
    await store.inner.write([sample(3)])
    await store.close()
    assert len(fake.bodies) == 1


def test_an_unreadable_ca_bundle_is_refused_naming_it(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ca_bundle"):
        influx_store_from_config(tmp_path, url="https://tsdb:8086", ca_bundle=str(tmp_path / "missing.pem"))
