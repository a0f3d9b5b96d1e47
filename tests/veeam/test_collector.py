"""The veeam collector against the fake Veeam B&R REST API over HTTPS: what it reads in both enum
casings, paging, the vendor's errors (each named in the collection status), tokens, TLS."""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

import httpx
import pytest

from agent.api import CollectorContext
from alerting.engine import AlertEngine
from collectors.veeam import PLUGIN, VeeamCollector
from lab.veeam_fake import VeeamFake

from .conftest import PASSWORD, RESTORER, RESTORER_PASSWORD, USER, make_fake, of, runner, status

JOBS = "/api/v1/jobs/states"
REPOSITORIES = "/api/v1/backupInfrastructure/repositories/states"


@pytest.mark.parametrize("revision", ["1.1-rev0", "1.2-rev1", "1.3-rev1"])
async def test_jobs_repositories_and_server_in_each_revisions_casing(
    fake: VeeamFake, ca_file: Path, revision: str
) -> None:
    samples = await runner(fake, ca_file, api_version=revision).run()
    assert status(samples)["status"] == "ok", status(samples)
    jobs = of(samples, "veeam_job")
    assert set(jobs) == {job.name for job in fake.jobs}
    backup = jobs["Sauvegarde VM Siège"]
    assert backup.tags["job_type"] == ("VSphereBackup" if revision.startswith("1.3") else "Backup")
    assert backup.tags["job_kind"] == "backup" and backup.tags["workload"] == "vm"
    assert backup.fields["last_result"] == "success" and backup.fields["running"] is False
    assert 0 <= backup.fields["last_success_age_s"] < 86400
    assert backup.fields["last_run_end"] == backup.fields["last_success_end"]
    replica = jobs["Réplication PRA Clamart"]
    assert replica.tags["job_kind"] == "replica" and replica.fields["last_result"] == "success"
    # a backup copy always working: jobs/states says lastResult None, the last finished copy says success
    copy = jobs["Copie de sauvegarde vers PRA"]
    assert copy.tags["job_type"] == "BackupCopy" and copy.tags["job_kind"] == "backup_copy"
    assert copy.fields["running"] is True and copy.fields["last_result"] == "success"
    assert copy.fields["progress_percent"] == 37 and copy.fields["running_sessions"] == 1
    archived = jobs["Sauvegarde Exchange (archivée)"]
    assert archived.fields["disabled"] is True and archived.fields["last_result"] == "none"
    assert archived.fields["last_success_age_s"] is None  # unknown, never 0
    repos = of(samples, "veeam_repository")
    siege = repos["DDBoost Siège"]
    assert siege.fields["capacity_bytes"] == 40960 * 1024**3 and siege.fields["free_bytes"] == 14336 * 1024**3
    assert siege.fields["used_pct"] == 65.0 and siege.fields["online"] is True
    assert siege.fields["out_of_date"] is (False if revision.startswith("1.3") else None)
    (server,) = of(samples, "veeam_server").values()
    assert server.fields["jobs"] == 5 and server.fields["running_jobs"] == 1 and server.fields["failed_jobs"] == 0
    assert server.fields["build_version"] == "12.3.1.1139" and server.fields["repositories"] == 3


async def test_every_request_carries_the_api_version_and_a_missing_one_is_refused(
    fake: VeeamFake, ca_file: Path
) -> None:
    samples = await runner(fake, ca_file, api_version="1.2-rev1").run()
    assert status(samples)["status"] == "ok"
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca_file))) as http:
        answer = await http.post(f"{fake.url}/api/oauth2/token", data={"grant_type": "password"})
    assert answer.status_code == 400 and "x-api-version" in answer.json()["message"]
    refused = await runner(fake, ca_file, api_version="1.9-rev0").run()
    assert status(refused)["status"] == "error"
    assert "POST /api/oauth2/token: HTTP 400 UnexpectedContent: user" in status(refused)["error"]


async def test_collections_are_read_over_several_pages(ca, ca_file: Path) -> None:
    fake = make_fake(ca, max_page=2)  # the server caps pages below the asked limit
    await fake.start()
    try:
        samples = await runner(fake, ca_file, page_size=3).run()
    finally:
        await fake.stop()
    assert status(samples)["status"] == "ok"
    assert len(of(samples, "veeam_job")) == 5 and len(of(samples, "veeam_repository")) == 3
    pages = [(q["skip"], q["limit"]) for method, path, q in fake.requests if path == JOBS]
    assert pages == [("0", "3"), ("2", "3"), ("4", "3")]
    sweeps = [q["skip"] for _, path, q in fake.requests if path == "/api/v1/sessions" and "createdAfterFilter" in q]
    assert len(sweeps) > 5 and sweeps == [str(2 * n) for n in range(len(sweeps))]


async def test_a_429_is_waited_out_as_retry_after_says(fake: VeeamFake, ca_file: Path) -> None:
    run = runner(fake, ca_file, max_retry_wait_s=7)
    fake.rate_limit(2, 7, path=JOBS)
    samples = await run.run()
    assert status(samples)["status"] == "ok" and run.sleeps == [7, 7]
    fake.rate_limit(10, 1, path=JOBS)  # a storm: three waits, then the run says why it stopped
    storm = status(await run.run())
    assert storm["status"] == "error" and run.sleeps == [7, 7, 1, 1, 1]
    assert f"GET {JOBS}: HTTP 429 UnknownError: Too many requests. (Retry-After 1; 3 waits" in storm["error"]
    fake.programmed.clear()
    fake.rate_limit(1, 120, path=REPOSITORIES)  # longer than max_retry_wait_s: not waited, said
    samples = await run.run()
    assert status(samples)["status"] == "partial"
    error = status(samples)["error"]
    assert f"repositories: GET {REPOSITORIES}: HTTP 429" in error and "Retry-After 120" in error
    assert of(samples, "veeam_job")  # the jobs were read all the same


async def test_an_expired_token_is_refreshed_and_a_refused_refresh_logs_in_again(
    fake: VeeamFake, ca_file: Path
) -> None:
    run = runner(fake, ca_file)
    assert status(await run.run())["status"] == "ok"
    assert (fake.logins, fake.refreshes) == (1, 0)
    assert status(await run.run())["status"] == "ok"
    assert (fake.logins, fake.refreshes) == (1, 0)  # the token is kept between runs
    fake.expire_tokens()  # the server says ExpiredToken before the client's clock does
    assert status(await run.run())["status"] == "ok"
    assert (fake.logins, fake.refreshes) == (1, 1)
    fake.expire_tokens()
    fake.revoke_refresh_tokens()  # the refresh is refused: a new password login
    assert status(await run.run())["status"] == "ok"
    assert (fake.logins, fake.refreshes) == (2, 1)


async def test_a_token_near_its_end_is_refreshed_before_use(fake: VeeamFake, ca_file: Path) -> None:
    now = [time.time()]
    run = runner(fake, ca_file, clock=lambda: now[0])
    assert status(await run.run())["status"] == "ok"
    now[0] += 900 - 10  # 15 minutes: inside the margin, the client refreshes first
    before = len(fake.requests)
    assert status(await run.run())["status"] == "ok"
    assert fake.refreshes == 1
    asked = [path for _, path, _ in list(fake.requests)[before:]]
    assert asked[0] == "/api/oauth2/token"  # no request was sent with the old token


async def test_a_wrong_password_is_named_and_never_shown(fake: VeeamFake, ca_file: Path) -> None:
    samples = await runner(fake, ca_file, credentials={"username": USER, "password": "not-the-password"}).run()
    result = status(samples)
    assert result["status"] == "error"
    assert "POST /api/oauth2/token: HTTP 401 AccessDenied: user 'VSGP\\\\svc-vigie' refused" in result["error"]
    assert "check the device's veeam credentials" in result["error"]
    assert "not-the-password" not in result["error"]
    assert fake.refused_logins == 1


async def test_a_refused_password_is_not_tried_again_before_login_retry_s(fake: VeeamFake, ca_file: Path) -> None:
    now = [time.time()]
    wrong = {"username": USER, "password": "not-the-password"}
    run = runner(fake, ca_file, credentials=wrong, clock=lambda: now[0], login_retry_s=600)
    assert status(await run.run())["status"] == "error"
    again = status(await run.run())
    assert again["status"] == "error" and "not tried again before" in again["error"]
    assert "HTTP 401 AccessDenied" in again["error"]  # still the server's own answer
    assert fake.refused_logins == 1  # a lockout policy saw one failure, not one a minute
    now[0] += 601
    assert status(await run.run())["status"] == "error" and fake.refused_logins == 2
    run.use_credentials({"username": USER, "password": PASSWORD})
    assert status(await run.run())["status"] == "ok"  # the secret fixed: logged in at once


async def test_missing_credentials_are_named(fake: VeeamFake, ca_file: Path) -> None:
    missing = await runner(fake, ca_file, credentials={"username": USER}).run()
    assert status(missing)["error"] == "the device's veeam credentials: missing or invalid password"


async def test_a_user_without_the_rights_is_told_which_role_it_has_and_needs(fake: VeeamFake, ca_file: Path) -> None:
    samples = await runner(fake, ca_file, credentials={"username": RESTORER, "password": RESTORER_PASSWORD}).run()
    result = status(samples)
    assert result["status"] == "error"
    assert f"GET {JOBS}: HTTP 403 AccessDenied" in result["error"]
    assert "Veeam Restore Operator role" in result["error"]  # the server's words: the role it has
    assert "needs the Veeam Backup Viewer" in result["error"]  # ours: the role it needs


async def test_server_errors(fake: VeeamFake, ca_file: Path) -> None:
    run = runner(fake, ca_file)
    fake.inject(500, 1, path=JOBS)
    result = status(await run.run())
    assert result["status"] == "error" and f"GET {JOBS}: HTTP 500 UnknownError: Injected error 500." in result["error"]
    fake.inject(503, 1, path=JOBS)  # one 503: retried once, the run goes through
    assert status(await run.run())["status"] == "ok" and run.sleeps == [1.0]
    fake.inject(503, 2, path=JOBS)
    result = status(await run.run())
    assert result["status"] == "error" and "HTTP 503 ServiceUnavailable" in result["error"]


async def test_malformed_json(fake: VeeamFake, ca_file: Path) -> None:
    run = runner(fake, ca_file)
    fake.malformed(1, path=JOBS)
    result = status(await run.run())
    assert result["status"] == "error"
    assert f"GET {JOBS}: HTTP 200 answer is not JSON" in result["error"]
    fake.malformed(1, path=REPOSITORIES)
    samples = await run.run()
    assert status(samples)["status"] == "partial"
    assert f"repositories: GET {REPOSITORIES}: HTTP 200 answer is not JSON" in status(samples)["error"]
    assert len(of(samples, "veeam_job")) == 5 and not of(samples, "veeam_repository")


async def test_a_slow_answer_is_cut_by_the_call_timeout(fake: VeeamFake, ca_file: Path) -> None:
    fake.slow(1.0, 1, path=JOBS)
    started = time.monotonic()
    result = status(await runner(fake, ca_file, timeout_s=0.2).run())
    assert time.monotonic() - started < 0.9
    assert result["status"] == "unreachable" and f"GET {JOBS}: no answer in time (ReadTimeout)" in result["error"]


async def test_a_server_down_is_unreachable_then_back(fake: VeeamFake, ca_file: Path) -> None:
    run = runner(fake, ca_file)
    await fake.set_down(True)
    result = status(await run.run())
    assert result["status"] == "unreachable" and "POST /api/oauth2/token" in result["error"]
    await fake.set_down(False)
    assert status(await run.run())["status"] == "ok"


async def test_the_certificate_is_verified_with_the_ca_bundle_never_silently_skipped(
    fake: VeeamFake, ca_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trusted = runner(fake, ca_file)
    refused = status(await runner(fake, ca_file, ca_bundle=None).run())
    assert refused["status"] == "error"
    assert "certificate verify failed: unable to get local issuer certificate" in refused["error"]
    assert "(ca_bundle: the server's CA certificate)" in refused["error"]
    assert status(await trusted.run())["status"] == "ok"
    missing = status(await runner(fake, ca_file, ca_bundle=str(tmp_path / "nowhere.pem")).run())
    assert missing["status"] == "error" and missing["error"].startswith(f"ca_bundle {tmp_path / 'nowhere.pem'}:")
    with caplog.at_level(logging.WARNING, logger="collectors.veeam"):
        insecure = runner(fake, ca_file, ca_bundle=None, verify_tls=False)
    assert "TLS verification disabled by verify_tls: false" in caplog.text
    assert status(await insecure.run())["status"] == "ok"


async def test_the_lab_faults_raise_the_default_rules(fake: VeeamFake, ca_file: Path, tmp_path: Path) -> None:
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=time.time)
    run = runner(fake, ca_file)
    samples = await run.run()
    assert engine.evaluate(samples, time.time()) == []  # a healthy server: nothing fires
    fake.fail_job("Sauvegarde VM Siège")
    fake.stall_job(30, "Réplication PRA Clamart")  # nothing failed: only its age says something
    fake.fill_repository(97, "DDBoost PRA")
    samples = await run.run()
    engine.evaluate(samples, time.time())
    firing = sorted((a.rule, a.labels["job"] if "job" in a.labels else a.labels["repository"], a.severity, a.summary)
                    for a in engine.firing())
    assert firing == [
        ("veeam_backup_overdue", "Réplication PRA Clamart", "major",
         "veeam: Veeam job Réplication PRA Clamart (replica): no successful run for "
         f"{of(samples, 'veeam_job')['Réplication PRA Clamart'].fields['last_success_age_h']} h"),
        ("veeam_job_failed", "Sauvegarde VM Siège", "major",
         "veeam: Veeam job Sauvegarde VM Siège (backup) failed: Error: Failed to connect to host "
         "esx-siege-1.vsgp.local: the operation has timed out"),
        ("veeam_repository_full", "DDBoost PRA", "critical", "veeam: Veeam repository DDBoost PRA is 97.0 % full"),
    ]
    stale = of(samples, "veeam_job")["Réplication PRA Clamart"].fields
    assert stale["last_result"] == "success" and 30 * 3600 <= stale["last_success_age_s"] < 35 * 3600
    assert of(samples, "veeam_server")[""].fields["failed_jobs"] == 1
    engine.close()


async def test_a_failed_job_is_one_alert_not_also_an_overdue_one(
    fake: VeeamFake, ca_file: Path, tmp_path: Path
) -> None:
    engine = AlertEngine(str(tmp_path / "alerts.db"), PLUGIN.default_rules(), clock=time.time)
    fake.stall_job(40, "Sauvegarde AD et fichiers")
    fake.fail_job("Sauvegarde AD et fichiers")  # its last run, 40 h ago, failed: both conditions hold
    samples = await runner(fake, ca_file).run()
    fields = of(samples, "veeam_job")["Sauvegarde AD et fichiers"].fields
    assert fields["last_result"] == "failed" and fields["last_success_age_s"] > fields["max_success_age_s"]
    engine.evaluate(samples, time.time())
    assert [(a.rule, a.labels["job"]) for a in engine.firing()] == [("veeam_job_failed", "Sauvegarde AD et fichiers")]
    engine.close()


def test_options_are_checked_without_io(tmp_path: Path) -> None:
    context = CollectorContext("vsgp", "veeam", tmp_path / "never-created", lambda ref: "")
    # a CA bundle that does not exist yet (the lab writes it at start): building reads nothing
    VeeamCollector(PLUGIN.options.model_validate({"ca_bundle": str(tmp_path / "later.pem")}), context)
    assert not (tmp_path / "never-created").exists()
    for bad, field in [({"url": "http://127.0.0.1:9419"}, "url"), ({"url": "https://h:9419/api/v1"}, "url"),
                       ({"api_version": "v1"}, "api_version"), ({"page_size": True}, "page_size"),
                       ({"max_success_age_h": 0}, "max_success_age_h"), ({"verify": False}, "verify")]:
        with pytest.raises(ValueError, match=field):
            PLUGIN.options.model_validate(bad)
