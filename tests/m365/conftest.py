"""The fake Entra ID + Graph (lab/graph_fake.py) over HTTPS on loopback with a trustme CA, one tenant
like the public body's: 504 of 505 Microsoft 365 E3 assigned, synced from its on-premises AD,
Defender licensed; collections cut in pages of 2 so every call follows @odata.nextLink."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from lab.graph_fake import GraphFake, Sku, Tenant, iso

TENANT_ID = "84841066-274d-4ec0-a5c1-276be684bdd3"
CLIENT_ID = "5e8f5c1d-2b0a-4d3e-9f1a-1c2b3d4e5f60"
CLIENT_SECRET = "lab~Q8x.fake-secret"


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        return context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("m365-pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(ca, ca_file)


def public_body_tenant() -> Tenant:
    now = time.time()
    tenant = Tenant(
        tenant_id=TENANT_ID,
        display_name="VSGP",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        skus=[Sku("SPE_E3", 504, 505), Sku("POWER_BI_STANDARD", 12, 1_000_000), Sku("EMS", 100, 100)],
        sync_enabled=True,
        defender=True,
    )
    tenant.open_incident("Microsoft Teams", now - 7200, title="Users can't join meetings")
    tenant.resolve(tenant.issues[-1]["id"], now - 3600)
    tenant.issues.append({  # as Graph's own samples write the enumerations: PascalCase
        "id": "SP555111", "title": "Search delays", "service": "SharePoint Online", "status": "ServiceDegradation",
        "classification": "Incident", "origin": "Microsoft", "isResolved": False,
        "startDateTime": iso(now - 600), "endDateTime": None, "lastModifiedDateTime": iso(now - 300),
        "impactDescription": "Search results may be delayed.",
    })
    tenant.issues.append({
        "id": "EX700001", "title": "Planned change to message trace", "service": "Exchange Online",
        "status": "serviceOperational", "classification": "advisory", "origin": "microsoft", "isResolved": False,
        "startDateTime": iso(now - 86400), "endDateTime": None, "lastModifiedDateTime": iso(now - 86400),
        "impactDescription": "Admins may notice a new layout.",
    })
    for n, (severity, status) in enumerate([("high", "new"), ("low", "resolved"), ("medium", "inProgress")]):
        tenant.security_alerts.append({
            "id": f"da63754291{n}", "title": f"Malware detected ({n})", "severity": severity, "status": status,
            "category": "Malware", "serviceSource": "microsoftDefenderForEndpoint", "detectionSource": "antivirus",
            "createdDateTime": iso(now - 3600), "lastUpdateDateTime": iso(now - 1800),
        })
    tenant.security_alerts.append({  # older than the collector's window: not asked
        "id": "da_old", "title": "Old", "severity": "high", "status": "resolved",
        "createdDateTime": iso(now - 40 * 86400), "lastUpdateDateTime": iso(now - 30 * 86400),
    })
    return tenant


@pytest.fixture
def tenant() -> Tenant:
    return public_body_tenant()


@pytest.fixture
async def fake(pki: Pki, tenant: Tenant) -> AsyncIterator[GraphFake]:
    server = GraphFake([tenant], pki.server_context(), page_size=2)
    await server.start()
    yield server
    await server.stop()
