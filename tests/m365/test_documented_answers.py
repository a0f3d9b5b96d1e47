"""Graph's own documented answers (fixtures/README.md) served by the fake, read by the collector
through MSAL and paging: what it reports for each is written out here."""

from __future__ import annotations

import json
from pathlib import Path

from lab.graph_fake import GraphFake, Tenant

from .conftest import Pki
from .helpers import collector, of, options, run, status

FIXTURES = Path(__file__).parent / "fixtures"
MAY_3_2021 = 1620000000.0
PATHS = {
    "healthOverviews": "/admin/serviceAnnouncement/healthOverviews",
    "issues": "/admin/serviceAnnouncement/issues",
    "subscribedSkus": "/subscribedSkus",
    "organization": "/organization",
    "alerts_v2": "/security/alerts_v2",
}


async def test_the_documented_answers(fake: GraphFake, pki: Pki, tenant: Tenant) -> None:
    for name, path in PATHS.items():
        tenant.recorded[path] = json.loads((FIXTURES / f"{name}.json").read_text())["value"]
    # the documented alert was last updated on 2021-05-02: the agent's clock a day later
    samples = await run(collector(options(fake, pki.ca_file), clock=lambda: MAY_3_2021))
    assert status(samples) == ("ok", None)
    assert {s.tags["service"]: (s.fields["status"], s.fields["healthy"]) for s in of(samples, "m365_service")} == {
        "Exchange Online": ("serviceOperational", True),
        "Identity Service": ("serviceRestored", True),
        "Microsoft 365 suite": ("serviceOperational", True),
    }
    (issue,) = of(samples, "m365_issue")
    assert issue.tags == {"client": "vsgp", "site": "cloud", "device": "m365", "issue_id": "EX226792",
                          "service": "Exchange Online", "classification": "incident"}
    assert issue.fields == {
        "status": "serviceRestored", "is_resolved": True,
        "title": "Limited number of users unable to send or receive email through the Exchange Online service",
        "impact": "Users may have been unable to send or receive email through the Exchange Online service.",
        "feature": "Mailflow - delayed delivery from Internet", "origin": "microsoft",
        "start": 1605301200, "end": 1605374100, "last_modified": 1605378024,
    }
    assert {s.tags["sku"]: s.fields for s in of(samples, "m365_license")} == {
        "ENTERPRISEPREMIUM": {"consumed": 14, "prepaid": 25, "available": 11, "suspended": 0, "warning": 0,
                              "capability_status": "enabled"},
        "CRMSTANDARD": {"consumed": 14, "prepaid": 0, "available": -14, "suspended": 25, "warning": 0,
                        "capability_status": "suspended"},
    }
    (sync,) = of(samples, "m365_sync")
    assert sync.fields == {"enabled": True, "last_sync": 1483228868, "last_sync_age_s": int(MAY_3_2021) - 1483228868}
    (alert,) = of(samples, "m365_security_alert")
    assert alert.tags["alert_id"] == "da637551227677560813_-961444813"
    assert alert.fields == {
        "title": "Suspicious execution of hidden file", "severity": "low", "status": "new", "is_resolved": False,
        "category": "DefenseEvasion", "service_source": "microsoftDefenderForEndpoint",
        "detection_source": "antivirus", "created": 1619525967, "last_update": 1619965141, "resolved_at": None,
    }
