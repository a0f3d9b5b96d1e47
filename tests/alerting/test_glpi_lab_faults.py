"""The lab's GLPI faults that play a GLPI set up wrong, seen through the real connector."""

from __future__ import annotations

import pytest

from alerting.ticketing.glpi import GlpiConfigError, GlpiConnector
from lab.glpi_service import GlpiService, Instance
from lab.services import Fault, FaultError

from .helpers import firing_alert


@pytest.fixture
async def service():
    service = GlpiService([Instance("127.0.0.1", 0, "app", {"tok": 2}, ["vsgp"], [])])
    await service.start()
    yield service
    await service.stop()


def fault(kind, *args):
    return Fault(kind, "vsgp", args, 0.0)


async def test_configuration_faults_apply_and_clear(service):
    (instance,) = service.instances
    conn = GlpiConnector(instance.url(), "app", "tok")
    await service.apply_faults([fault("glpi-right-missing", "change-priority"), fault("glpi-auth-dropped")])
    ref = await conn.open(firing_alert("critical"))
    assert instance.fake.tickets[int(ref.id)]["priority"] == 5 and conn.token_in_query
    await service.apply_faults([fault("glpi-mandatory-category")])
    with pytest.raises(GlpiConfigError, match="Please correct: Category"):
        await conn.open(firing_alert("critical", fp="1111111111111111"))
    await service.apply_faults([])  # cleared: GLPI as vigie needs it again
    ref = await conn.open(firing_alert("critical", fp="2222222222222222"))
    assert instance.fake.tickets[int(ref.id)]["priority"] == 6
    await conn.close()


def test_fault_arguments_are_checked(service):
    with pytest.raises(FaultError, match="give one of change-priority, create, update, followup"):
        service.check_fault(fault("glpi-right-missing", "delete"))
    with pytest.raises(FaultError, match="takes no argument"):
        service.check_fault(fault("glpi-auth-dropped", "x"))
    assert "no update right" in service.check_fault(fault("glpi-right-missing", "update"))


async def test_the_lab_plays_a_v2_client_from_its_estate(tmp_path):
    import argparse

    import yaml

    from alerting.ticketing.glpi_v2 import GlpiV2Connector
    from lab.estate import Estate
    from lab.services import Context

    estate = {"clients": [{
        "name": "ofdt",
        "sites": [{"name": "hq", "devices": []}],
        "ticketing": {"kind": "glpi", "api": "v2", "url": "${VIGIE_OFDT_GLPI_URL:-http://127.0.0.1:1/api.php}",
                      "client_id": "vigie-ofdt", "client_secret": {"secret": "ofdt-oauth"}, "username": "noc",
                      "password": {"secret": "ofdt-noc"}, "entity_id": 0},
    }]}
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(estate))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"ofdt-oauth": "s3", "ofdt-noc": "pw"}))
    secrets.chmod(0o600)
    context = Context(Estate.load(str(path), environ={}, secrets_path=secrets), argparse.Namespace(glpi_port=0), {},
                      tmp_path / "rt")
    service = GlpiService.for_estate(context)
    await service.start()
    try:
        url = service.environment()["VIGIE_OFDT_GLPI_URL"]
        assert url.endswith("/api.php") and "api: v2" in service.endpoints()[0]
        conn = GlpiV2Connector(url, "vigie-ofdt", "s3", username="noc", password="pw")
        ref = await conn.open(firing_alert())
        assert service.instances[0].fake.tickets[int(ref.id)]["name"].startswith("[vigie:")
        await conn.close()
    finally:
        await service.stop()


async def test_the_lab_technician_takes_tickets_in_charge(service):
    import datetime as dt
    from zoneinfo import ZoneInfo

    from agent.api.tickets import TicketRef

    (instance,) = service.instances
    conn = GlpiConnector(instance.url(), "app", "tok")
    assert "taken in charge 0 s after it opened" in service.check_fault(fault("glpi-technician", "0"))
    with pytest.raises(FaultError, match="glpi-technician: give the SECONDS"):
        service.check_fault(fault("glpi-technician", "soon"))
    ref = await conn.open(firing_alert("critical"))
    assert await conn.taken_in_charge(ref) is None  # nobody in the lab takes tickets by default
    await service.apply_faults([fault("glpi-technician", "0")])
    taken = await conn.taken_in_charge(ref)
    opened = dt.datetime.strptime(instance.fake.tickets[int(ref.id)]["date"], "%Y-%m-%d %H:%M:%S")
    assert taken == opened.replace(tzinfo=ZoneInfo("Europe/Paris")).timestamp()  # 0 s after it opened
    assert instance.fake.tickets[int(ref.id)]["status"] == 2
    await service.apply_faults([fault("glpi-technician", "600")])
    assert await conn.taken_in_charge(TicketRef("glpi", ref.id)) == taken  # recorded once
    await conn.close()
