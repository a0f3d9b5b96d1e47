"""The recorded answers (Veeam's own examples, fixtures/README.md) parsed by the collector's models,
and the fake checked against them: it answers every key Veeam documents, in the same types."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from collectors.veeam import job_fields, repository_fields
from collectors.veeam.client import BadAnswer
from collectors.veeam.models import JobState, Repository, Session, parse_all
from lab.veeam_fake import VeeamFake

from .conftest import PASSWORD, USER

FIXTURES = Path(__file__).parent / "fixtures"


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_the_recorded_answers_parse() -> None:
    (job,) = parse_all(JobState, recorded("jobs_states_1.2-rev1.json")["data"], "/api/v1/jobs/states")
    assert (job.name, job.type, job.status, job.last_result, job.workload) == (
        "Exchange Backup", "Backup", "inactive", "warning", "vm")
    assert job.last_run == dt.datetime(2024, 2, 20, 3, 53, 17, 747000, dt.UTC).timestamp()
    assert job.next_run is None and job.repository == "Default Backup Repository" and job.objects == 1
    (session,) = parse_all(Session, recorded("sessions_1.2-rev1.json")["data"], "/api/v1/sessions")
    assert (session.state, session.result, session.running) == ("stopped", "failed", False)
    assert session.ended == dt.datetime(2023, 12, 4, 5, 15, 0, 617000, dt.UTC).timestamp()
    (repo,) = parse_all(Repository, recorded("repositories_states_1.2-rev1.json")["data"], "/x")
    fields = repository_fields(repo)
    assert fields["capacity_bytes"] == int(99.4 * 1024**3) and fields["free_bytes"] == int(16.4 * 1024**3)
    assert fields["used_pct"] == 83.5 and fields["online"] is True and fields["out_of_date"] is None
    # the session of another job says nothing about this one
    evaluated = job_fields(job, [], None, job.last_run + 3600, 26 * 3600)
    assert evaluated["last_result"] == "warning" and evaluated["last_success_age_s"] is None


def test_a_required_field_missing_is_named() -> None:
    item = recorded("jobs_states_1.2-rev1.json")["data"][0]
    del item["name"]
    with pytest.raises(BadAnswer, match=r"GET /api/v1/jobs/states: data\[0\]: name is None"):
        parse_all(JobState, [item], "/api/v1/jobs/states")
    item = recorded("sessions_1.2-rev1.json")["data"][0]
    item["endTime"] = "yesterday"
    with pytest.raises(BadAnswer, match=r"data\[0\].endTime: 'yesterday' is not a date-time"):
        parse_all(Session, [item], "/api/v1/sessions")


def _types(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _types(value) for key, value in node.items()}
    return type(node).__name__


@pytest.mark.parametrize(
    ("fixture", "path"),
    [("jobs_states_1.2-rev1.json", "/api/v1/jobs/states"), ("sessions_1.2-rev1.json", "/api/v1/sessions"),
     ("repositories_states_1.2-rev1.json", "/api/v1/backupInfrastructure/repositories/states")],
)
async def test_the_fake_answers_what_veeam_documents(fake: VeeamFake, ca_file: Path, fixture: str, path: str) -> None:
    headers = {"x-api-version": "1.2-rev1"}
    async with httpx.AsyncClient(base_url=fake.url, verify=ssl.create_default_context(cafile=str(ca_file))) as http:
        token = await http.post("/api/oauth2/token", headers=headers,
                                data={"grant_type": "Password", "username": USER, "password": PASSWORD})
        assert set(token.json()) >= set(recorded("token_1.2-rev1.json"))
        answer = (await http.get(path, headers={**headers, "Authorization": f"Bearer {token.json()['access_token']}"},
                                 params={"limit": 50})).json()
    documented = recorded(fixture)
    assert set(answer) == set(documented) and set(answer["pagination"]) == set(documented["pagination"])
    expected = _types(documented["data"][0])
    for item in answer["data"]:
        # every documented key, with the documented type (a null date of a running session aside)
        got = {key: value for key, value in _types(item).items() if key in expected}
        assert {k for k in expected if k not in got} == set()
        assert {k: v for k, v in got.items() if v != expected[k] and "NoneType" not in (v, expected[k])} == {}
