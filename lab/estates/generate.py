"""Generate the VSGP estates (full and demo) and the lab secrets file of every estate.

    python -m lab.estates.generate        # rewrites vsgp.yaml, vsgp-demo.yaml, secrets.yaml

VSGP's CCTP (seeds/004) gives totals, not a device list: 147 switches by model (§2.1.1), two
Firepower 2120 (§2.1.5), three VxRail P570F per server room (§2.1.8), seven UPSes (§2.1.8),
Veeam with a Data Domain (§2.1.9), and the sites of annex 7.2.1. Which switch sits on which site
is decided here, deterministically, so the full estate keeps the real counts without 180
hand-written entries. tests/config checks that the committed files equal this output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.ssh_hosts import LAB_USER, lab_login_key_pem

ESTATES = Path(__file__).resolve().parent
CLIENT = "vsgp"

# Annex 7.2.1, in its order: (slug, site name as written, address, city).
SITES: list[tuple[str, str, str | None, str]] = [
    ("antony-conservatoire", "Conservatoire Darius Milhaud", "140 avenue de la Division Leclerc", "Antony"),
    ("antony-gip-emploi", "GIP Emploi", "42 avenue Aristide Briand", "Antony"),
    ("antony-piscine-terray", "Piscine Lionel Terray", "164 bis avenue du Président Kennedy", "Antony"),
    ("antony-piscine-pajaud", "Piscine Pajaud", "96 rue Adolphe Pajaud", "Antony"),
    ("antony-espace-cirque", "Théâtre - Espace Cirque", "Rue Georges Suant", "Antony"),
    ("antony-theatre-gemier", "Théâtre Firmin Gémier", "Rue Maurice Labrousse", "Antony"),
    ("bagneux-clic", "CLIC", None, "Bagneux"),
    ("bagneux-conservatoire", "Conservatoire", "4 rue Etienne Dolet", "Bagneux"),
    ("bagneux-hotel-de-ville", "Hôtel de Ville (intervention éventuelle)", "57 avenue Henri Ravera", "Bagneux"),
    ("bagneux-maison-emploi", "Maison de l'Emploi", "1-3 allée du parc de Garlande", "Bagneux"),
    ("bagneux-mediatheque", "Médiathèque Louis Aragon", "2 avenue Gabriel Péri", "Bagneux"),
    ("bagneux-piscine", "Piscine", "1 avenue de Stalingrad", "Bagneux"),
    ("bagneux-theatre-hugo", "Théâtre et Cinéma - Victor Hugo", "14 avenue Victor Hugo", "Bagneux"),
    ("blr-conservatoire", "Conservatoire de Bourg-la-Reine / Sceaux", "11 boulevard Carnot", "Bourg-la-Reine"),
    ("chatenay-conservatoire", "Conservatoire", "254 avenue de la Division Leclerc", "Châtenay-Malabry"),
    (
        "chatenay-theatre-piscine",
        "Théâtre Firmin Gémier - La Piscine",
        "254 avenue de la Division Leclerc",
        "Châtenay-Malabry",
    ),
    ("chatillon-conservatoire", "Conservatoire", "5 rue Paul Bert", "Châtillon"),
    ("chatillon-stade-nautique", "Stade Nautique", "57 rue Jean Bouin", "Châtillon"),
    ("clamart-bib-fourche", "Bibliothèque de la Fourche", "216 avenue Jean Jaurès", "Clamart"),
    ("clamart-bib-jardin", "Bibliothèque du Jardin parisien", "20 rue du parc", "Clamart"),
    ("clamart-clic", "CLIC", "55 avenue Jean Jaurès", "Clamart"),
    ("clamart-conservatoire", "Conservatoire Henri Dutilleux", "Place Hunebelle", "Clamart"),
    ("clamart-hotel-de-ville", "Hôtel de Ville (intervention éventuelle)", "Place Maurice Gunsbourg", "Clamart"),
    ("clamart-mediatheque-buanderie", "Médiathèque Buanderie/Anne Capezzuoli", "Place Ferrari", "Clamart"),
    ("clamart-mediatheque-mitterrand", "Médiathèques François Mitterrand", "Rue d'Auvergne", "Clamart"),
    ("clamart-piscine", "Piscines du Bois", "37 rue du docteur Roux", "Clamart"),
    ("clamart-cinema-moreau", "Cinéma Jeanne Moreau", "22 rue Paul Vaillant Couturier", "Clamart"),
    ("clamart-theatre-arp", "Théâtre Jean Arp", "22 rue Paul Vaillant Couturier", "Clamart"),
    ("far-clic", "CLIC", "10 rue Jean Jaurès", "Fontenay-aux-Roses"),
    ("far-cri", "CRI", "10 place du Général-De-Gaulle", "Fontenay-aux-Roses"),
    ("far-hotel-de-ville", "Hôtel de Ville (intervention éventuelle)", "75 rue Boucicaut", "Fontenay-aux-Roses"),
    ("far-maison-entrepreneurs", "Maison des Entrepreneurs", "23 avenue Lombard", "Fontenay-aux-Roses"),
    ("far-mediatheque", "Médiathèque", "6, place du Château Sainte-Barbe", "Fontenay-aux-Roses"),
    ("far-piscine", "Piscine", "22 rue Jean Jaurès", "Fontenay-aux-Roses"),
    ("siege", "Siège VSGP", "28 rue de la Redoute", "Fontenay-aux-Roses"),
    ("far-cinema-scarron", "Cinéma Le Scarron", "9 avenue Jeanne Dolivet", "Fontenay-aux-Roses"),
    ("far-theatre-sources", "Théâtre des Sources", "9 avenue Jeanne Dolivet", "Fontenay-aux-Roses"),
    ("plessis-piscine-hameau", "Piscine du Hameau", "5 rue Blaise Pascal", "Le Plessis-Robinson"),
    ("malakoff-cinema-pagnol", "Cinéma Marcel Pagnol", "17 rue Béranger", "Malakoff"),
    ("malakoff-clic", "CLIC", "3 place du 14 Juillet", "Malakoff"),
    ("malakoff-conservatoire", "Conservatoire", "66-68 boulevard Gabriel Péri", "Malakoff"),
    ("malakoff-hotel-de-ville", "Hôtel de Ville (intervention éventuelle)", "1 place du 11 novembre 1918", "Malakoff"),
    ("malakoff-mediatheque", "Médiathèque Pablo Neruda", "24 rue Béranger", "Malakoff"),
    ("malakoff-theatre-71", "Théâtre 71", "3 Place du 11 novembre 1918", "Malakoff"),
    ("malakoff-fabrique-arts", "Théâtre La Fabrique des arts", "21 ter boulevard Stalingrad", "Malakoff"),
    ("montrouge-aquapol", "Aquapol", "rue Henri Ginoux", "Montrouge"),
    ("montrouge-collecte-dechets", "Collecte des déchets", "Rue Paul Bert", "Montrouge"),
    ("sceaux-piscine-blagis", "Piscine des Blagis", "5 rue de l'Yser", "Sceaux"),
    ("sceaux-theatre-gemeaux", "Théâtre les Gémeaux", "49 avenue Georges Clémenceau", "Sceaux"),
]
# §2.1.8: the disaster-recovery server room is "sur un site distant (Clamart)", not in the annex.
PRA = ("pra-clamart", "Salle informatique de secours (PRA)", None, "Clamart")

# §2.1.1 "2 sites nœuds principaux et 10 fédérateurs": the two server rooms hold the C9407R; which
# ten sites are the fédérateurs is our assumption (the largest buildings, spread over the loops).
FEDERATEURS = [
    "antony-theatre-gemier",
    "bagneux-hotel-de-ville",
    "chatenay-theatre-piscine",
    "chatillon-stade-nautique",
    "clamart-hotel-de-ville",
    "clamart-mediatheque-mitterrand",
    "malakoff-theatre-71",
    "montrouge-aquapol",
    "sceaux-theatre-gemeaux",
    "far-hotel-de-ville",
]

# §2.1.1 access-switch models with their counts, minus those placed by hand in the server rooms.
ACCESS_MODELS: list[tuple[str, int, str]] = [
    ("C9200L-24P-4G", 58, "iosxe_c9200l"),
    ("C9200L-24P-4X", 2, "iosxe_c9200l"),
    ("C9200L-48P-4G", 42 - 5, "iosxe_c9200l"),
    ("C9200L-48P-4X", 4, "iosxe_c9200l"),
    ("WS-C2960L-16PS-LL", 2, "ios_2960x"),
    ("WS-C2960L-8PS-LL", 5, "ios_2960x"),
    ("TP-SG24-28P", 17, "jetstream_t1600g-28ts"),
]

# Annex 7.2.1 postal codes, by city.
POSTCODES = {
    "Antony": "92160",
    "Bagneux": "92220",
    "Bourg-la-Reine": "92340",
    "Châtenay-Malabry": "92290",
    "Châtillon": "92320",
    "Clamart": "92140",
    "Fontenay-aux-Roses": "92260",
    "Le Plessis-Robinson": "92350",
    "Malakoff": "92240",
    "Montrouge": "92120",
    "Sceaux": "92330",
}

# Devices no recording plays (vCenter, the cloud APIs) point at loopback too, where their lab fakes
# answer once written: a lab estate never reaches a vendor's real host (vcenter.vsgp.example.org,
# api.meraki.com, login.microsoftonline.com in production).
LOOPBACK = "127.0.0.1"
# The tenant's app registration, played by lab/graph_fake.py over HTTPS (its CA committed in lab/graph_tls/).
M365_URL = "${VIGIE_LAB_M365_URL:-https://127.0.0.1:8445}"
M365 = {
    "tenant_id": "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
    "client_id": "0b7e4a52-6c1d-4f3e-8a29-5d6e7f801003",
    "authority_url": M365_URL,
    "graph_url": M365_URL,
    "ca_bundle": "lab/graph_tls/ca.pem",
    "security_alerts": False,  # no Defender licence in the tenant
}
# The backup server's REST API, played by lab/veeam_fake.py over HTTPS with the lab's certificate
# (the CA committed in lab/graph_tls/, as for M365).
VEEAM = {
    "url": "${VIGIE_VSGP_VEEAM_URL:-https://127.0.0.1:9419}",
    "ca_bundle": "lab/graph_tls/ca.pem",
    "api_version": "1.2-rev1",  # VBR 12.3.1
}
# The Dashboard API of VSGP's Meraki organization, played by lab/meraki_fake.py (lab/meraki_service.py).
MERAKI = {"organization_id": "549236", "base_url": "${VIGIE_LAB_MERAKI_URL:-http://127.0.0.1:8096/api/v1}"}
# §2.1.2 Wi-Fi: 115 cloud-managed Meraki APs (MR33/MR36/MR44). Where they hang is our assumption:
# two per site of the annex, the rest at the siège, each on one of its site's access switches.
MERAKI_APS = 115
MERAKI_MODELS = ("MR36", "MR44", "MR33")

# VSGP's vCenter 7 (§2.1.8: two VxRail clusters of three nodes, 54 VMs), played by govmomi's
# simulator (lab/vcsim) with the lab's server certificate (lab/graph_tls, the CA ca_bundle names).
VSPHERE = {"port": "${VIGIE_LAB_VCSIM_PORT:-8989}", "ca_bundle": "lab/graph_tls/ca.pem"}
# What the simulator holds (x-lab.vcsim): the estate's ESXi hosts; of the 54 VMs (27 per cluster,
# our assumption) those that are inventory devices too (their vSphere samples go there), the
# vCenter appliance itself, then vm-siege-04... vm-pra-27.
VCSIM = {
    "datacenter": "VSGP",
    "clusters": {f"vxrail-{room}": [f"esx-{room}-{i}" for i in (1, 2, 3)] for room in ("siege", "pra")},
    "vms_per_cluster": 27,
    "vms": {"vxrail-siege": ["vcenter", "dc1", "veeam"], "vxrail-pra": ["dc2"]},
    "datastores": ["vsan-siege", "vsan-pra"],
}

UPS_WALKS = ["apc_smt750x-nmc2", "apc_smtl1000-nmc3", "eaton-mgeups_9pxle", "netmanplus_mct20"]

# vsgp-demo.yaml: the devices `make demo` plays (closed under `parent`).
DEMO_DEVICES = [
    "fw-siege",
    "core-siege",
    "dist-siege",
    "sw-siege-01",
    "sw-siege-02",
    "ups-siege-1",
    "core-pra",
    "fw-pra",
    "fed-far-hotel-de-ville",
    "sw-far-cri-01",
]


# The Catalyst switches the lab also plays on the CLI (not in the demo: it stays SNMP only).
CISCO_CLI_DEVICES = ("sw-siege-03", "sw-siege-04", "sw-pra-01")
CISCO_CLI_PORT = 2401


@dataclass
class Device:
    name: str
    site: str
    walk: str | None
    tags: dict[str, str]
    parent: str | None = None
    address: str | None = None
    collectors: dict[str, dict[str, Any]] = field(default_factory=lambda: {"snmp": {}})
    login: bool = False  # a credentials secret for a collector other than SNMP
    # collector -> a secret of its own beside SNMP's: `credentials: {snmp: lab-vsgp-veeam, veeam: NAME}`
    own_logins: dict[str, str] = field(default_factory=dict)
    lab: dict[str, Any] = field(default_factory=dict)  # x-lab keys besides the walk


def vsgp_devices() -> list[Device]:
    devices: list[Device] = []

    def add(name: str, site: str, walk: str | None, parent: str | None, **tags: str) -> Device:
        devices.append(Device(name, site, walk, tags, parent))
        return devices[-1]

    # Server rooms (§2.1.5 one Firepower per room, active/passive; §2.1.8 VxRail, UPSes)
    add("fw-siege", "siege", "ftd_ftd1150", None, role="core", model="FPR-2120", ha="active")
    add("core-siege", "siege", "iosxe_c9400-svl", "fw-siege", role="core", model="C9407R")
    add("dist-siege", "siege", "iosxe_c9300", "core-siege", role="core", model="C9300-24P")
    add("core-pra", "pra-clamart", "iosxe_c9400-svl", "core-siege", role="core", model="C9407R")
    add("fw-pra", "pra-clamart", "ftd_ftd1150", "core-pra", role="core", model="FPR-2120", ha="standby")
    for room, core in (("siege", "core-siege"), ("pra-clamart", "core-pra")):
        short = room.split("-")[0]
        for i in (1, 2):
            add(f"tor-{short}-{i}", room, "dell-os10", core, role="core", model="S5212F-ON")
        for i in (1, 2, 3):
            add(
                f"idrac-vxrail-{short}-{i}",
                room,
                "drac_r640",
                f"tor-{short}-{1 + (i - 1) % 2}",
                role="server-hw",
                model="VxRail-P570F",
            )
            add(
                f"esx-{short}-{i}",
                room,
                "vmware-esxi",
                f"tor-{short}-{1 + (i - 1) % 2}",
                role="hypervisor",
                model="VxRail-P570F",
            )
    for i in range(1, 8):  # seven UPSes "répartis entre les deux salles serveurs": 4 + 3
        room, core = ("siege", "core-siege") if i <= 4 else ("pra-clamart", "core-pra")
        add(f"ups-{room.split('-')[0]}-{i if i <= 4 else i - 4}", room, UPS_WALKS[i % len(UPS_WALKS)], core, role="ups")
    # Access switches of the server rooms: the five C9200L-48P-4G kept out of ACCESS_MODELS.
    for i in range(1, 5):
        add(f"sw-siege-{i:02d}", "siege", "iosxe_c9200l", "dist-siege", role="access", model="C9200L-48P-4G")
    add("sw-pra-01", "pra-clamart", "iosxe_c9200l", "core-pra", role="access", model="C9200L-48P-4G")
    # §2.1.3 configuration backups: three of them also on the CLI (cisco_cli), each played by
    # lab/ios_service.py on a port of its own, with an SSH login beside the SNMP community.
    for n, switch in enumerate(d for d in devices if d.name in CISCO_CLI_DEVICES):
        variable = f"VIGIE_LAB_IOS_{switch.name.upper().replace('-', '_')}_PORT"
        switch.collectors = {"snmp": {}, "cisco_cli": {"port": f"${{{variable}:-{CISCO_CLI_PORT + n}}}"}}
        switch.own_logins = {"cisco_cli": f"lab-{CLIENT}-{switch.name}-cli"}

    # Backbone: ten fédérateurs (C9500-16X, routed), half per collection loop.
    for i, site in enumerate(FEDERATEURS):
        add(f"fed-{site}", site, "iosxe_c9300", "core-siege" if i < 5 else "core-pra", role="core", model="C9500-16X")

    # Access switches dealt round-robin over the other sites; each site hangs off a fédérateur.
    sites = [slug for slug, *_ in SITES if slug != "siege"]
    models = [(model, walk) for model, count, walk in ACCESS_MODELS for _ in range(count)]
    per_site: dict[str, int] = {}
    for n, (model, walk) in enumerate(models):
        site = sites[n % len(sites)]
        per_site[site] = per_site.get(site, 0) + 1
        uplink = f"fed-{site}" if site in FEDERATEURS else f"fed-{FEDERATEURS[sites.index(site) % 10]}"
        add(f"sw-{site}-{per_site[site]:02d}", site, walk, uplink, role="access", model=model)

    # Servers and platforms (§2.1.8-2.1.11, §2.1.17)
    veeam = add("veeam", "siege", "windows_svr_2019_1809", "tor-siege-1", role="backup")
    veeam.collectors = {"snmp": {}, "veeam": VEEAM}  # the backup jobs come from the Veeam API
    veeam.own_logins = {"veeam": f"lab-{CLIENT}-veeam-api"}
    add("ddboost", "siege", "linux_lsi", "tor-siege-2", role="backup", model="Dell-DDBoost")
    add("dnac", "siege", "linux_lsi", "dist-siege", role="management", model="DNA-Center")
    add("dc1", "siege", "windows_svr_2019_1809", "tor-siege-1", role="directory", os="windows")
    add("dc2", "pra-clamart", "windows_svr_2019_1809", "tor-pra-1", role="directory", os="windows")
    devices.append(
        Device(
            "vcenter",
            "siege",
            None,
            {"role": "management"},
            "tor-siege-1",
            address=LOOPBACK,
            collectors={"vsphere": VSPHERE},
            login=True,
            lab={"vcsim": VCSIM},
        )
    )
    devices.append(
        Device(
            "m365", "cloud", None, {"role": "saas"}, None, address=LOOPBACK, collectors={"m365": M365}, login=True,
            # lab/graph_fake.py's tenant: 504 of 505 Microsoft 365 E3 assigned, synced from the on-premises AD
            lab={"licences": {"SPE_E3": [504, 505]}, "sync": True},
        )
    )
    devices.append(
        Device("meraki", "cloud", None, {"role": "wifi"}, None, address=LOOPBACK, collectors={"meraki": MERAKI},
               login=True)
    )
    devices.extend(meraki_aps(devices))
    return devices


def meraki_aps(devices: list[Device]) -> list[Device]:
    """The Meraki APs as inventory devices (no collector: the Dashboard reports them, through the
    `meraki` device), each the child of an access switch of its site, so a dead switch holds back
    its APs' offline alerts. `x-lab.meraki` tells the lab's fake Dashboard their serial and model."""
    sites = [slug for slug, *_ in SITES if slug != "siege"]
    placed = [*(site for site in sites for _ in range(2)), *["siege"] * (MERAKI_APS - 2 * len(sites))]
    aps: list[Device] = []
    per_site: dict[str, int] = {}
    for n, site in enumerate(sorted(placed, key=lambda s: (s != "siege", s)), start=1):
        switches = [d.name for d in devices if d.site == site and d.tags.get("role") == "access"]
        per_site[site] = index = per_site.get(site, 0) + 1
        model = MERAKI_MODELS[n % len(MERAKI_MODELS)]
        aps.append(
            Device(
                f"ap-{site}-{index:02d}", site, None, {"role": "wifi", "model": model},
                switches[(index - 1) % len(switches)], address=LOOPBACK, collectors={},
                lab={"meraki": {"serial": f"Q2MD-VSGP-{n:04d}", "model": model}},
            )
        )
    return aps


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


HEADER = """\
# Vallée Sud - Grand Paris (VSGP) — the public body. GENERATED by lab/estates/generate.py from its
# CCTP (seeds/004): do not edit by hand, edit the generator and rerun it.
{what}
# Lab convention (docs/CONFIGURATION.md "Lab"): every SNMP device takes `<<: *lab` (loopback
# address, port ${{VIGIE_LAB_SNMP_PORT:-1161}}), `x-lab.walk` names the recording that plays it,
# and `credentials: lab-<client>-<device>` is a secret in lab/estates/secrets.yaml whose community
# is `<client>/<device>` (here `vsgp/core-siege`, ...).
# Closest recordings: Firepower 2120 -> ftd_ftd1150, C9407R -> iosxe_c9400-svl, C9500-16X ->
# iosxe_c9300, S5212F-ON -> dell-os10, TP-Link switches -> jetstream_t1600g-28ts, VxRail P570F
# (PowerEdge R640 inside) -> drac_r640 + vmware-esxi, Data Domain and DNA Center -> linux_lsi.
# vCenter, Veeam, Meraki (115 cloud-managed APs) and M365 need collectors not written yet: they load
# with a warning, not an error. Every device points at loopback, those too (their lab fakes to come).

x-lab: &lab {{address: 127.0.0.1, port: "${{VIGIE_LAB_SNMP_PORT:-1161}}"}}

agent:
  state_dir: "${{VIGIE_STATE_DIR:-var/vsgp}}"
  threads: 8
  store: {{kind: compact, raw_retention_days: 30, retention_days: 400}}

defaults:
  interval_s: 60
  timeout_s: 10
  jitter_s: 10
  collectors:
    snmp: {{profile: auto}}

clients:
  - name: vsgp
    display_name: Vallée Sud - Grand Paris
    timezone: Europe/Paris
    # §4.2.1.1 offers several amplitudes; we quote "8h-18h lundi au samedi hors jours fériés"
    # (pools, theatres and libraries open on Saturdays). Annex 7.4 KPI 3: an alert taken in 5 min.
    service_hours: {{days: [mon, tue, wed, thu, fri, sat], start: "08:00", end: "18:00"}}
    holidays: [fr]
    contacts:
      # Role addresses on example.org: a demo must never mail a real person.
      - {{name: Direction des Systèmes d'Information, email: dsi@vsgp.example.org, role: DSI}}
      - {{name: NOC vigie, email: noc@vigie.example.org, role: NOC}}
    # VSGP's statistics come from GLPI (annex 7.3.2). The lab points it at a local fake GLPI.
    ticketing:
      kind: glpi
      url: "${{VIGIE_VSGP_GLPI_URL:-http://127.0.0.1:8089/apirest.php}}"
      app_token: {{secret: vsgp-glpi-app-token}}
      user_token: {{secret: vsgp-glpi-user-token}}
      entity_id: 0
      requesttype_id: 6   # GLPI's stock "Other" request source: set to the client's "Supervision"
    rules:
      # Annex 7.4 KPI 11: a blocking infrastructure incident is solved in 4 h; a firewall or a
      # core switch unreachable is one, page after one minute instead of two. A poll cut by its
      # hard timeout is the same silence (as the built-in device_unreachable says).
      - name: core_unreachable
        measurement: collection
        when: "status in ('unreachable', 'timeout')"
        match: {{role: core}}
        for_s: 60
        severity: critical
        summary: "Cœur de réseau {{device}} ({{site}}) injoignable"
      - name: device_unreachable
        match: {{role: "!core"}}
    sites:
"""


def render_vsgp(devices: Iterable[Device], what: str) -> str:
    devices = list(devices)
    out = [HEADER.format(what=what)]
    all_sites = [*SITES, PRA, ("cloud", "Services en ligne (Microsoft 365, Meraki)", None, "")]
    for slug, name, address, city in all_sites:
        here = [d for d in devices if d.site == slug]
        if not here:
            continue
        out.append(f"      - name: {slug}\n        display_name: {_q(name)}\n")
        if city:
            out.append(f"        city: {_q(city)}\n")
        if address:
            out.append(f"        address: {_q(f'{address}, {POSTCODES[city]} {city}')}\n")
        out.append("        devices:\n")
        for d in here:
            parts = []
            if d.walk:
                parts.append("<<: *lab")
            parts.append(f"name: {d.name}")
            if not d.walk:
                parts.append(f"address: {d.address}")
            if d.parent:
                parts.append(f"parent: {d.parent}")
            if d.own_logins:
                names = {"snmp": f"lab-{CLIENT}-{d.name}"} if "snmp" in d.collectors else {}
                names |= d.own_logins
                parts.append(f"credentials: {{{', '.join(f'{c}: {n}' for c, n in names.items())}}}")
            elif "snmp" in d.collectors or d.login:
                parts.append(f"credentials: lab-{CLIENT}-{d.name}")
            collectors = ", ".join(f"{c}: {json.dumps(o) if o else ''}" for c, o in d.collectors.items())
            parts.append(f"collectors: {{{collectors}}}")
            tags = ", ".join(f"{k}: {_q(v)}" for k, v in d.tags.items())
            parts.append(f"tags: {{{tags}}}")
            if d.lab:
                parts.append(f"x-lab: {json.dumps({'walk': d.walk, **d.lab} if d.walk else d.lab)}")
            elif d.walk:
                parts.append(f"x-lab: {{walk: {d.walk}}}")
            out.append(f"          - {{{', '.join(parts)}}}\n")
    return "".join(out)


def demo_devices(devices: list[Device]) -> list[Device]:
    chosen = [d for d in devices if d.name in DEMO_DEVICES]
    names = {d.name for d in chosen}
    missing = {d.parent for d in chosen if d.parent and d.parent not in names}
    if missing or len(chosen) != len(DEMO_DEVICES):
        raise SystemExit(f"DEMO_DEVICES is not closed under parent: missing {sorted(missing)}")
    return chosen


def _own_logins(client: str, device: dict[str, Any]) -> list[str]:
    """The secrets of a device naming one per collector (`credentials: {snmp: A, veeam: B}`)."""
    lines = []
    for collector, name in device["credentials"].items():
        if collector == "snmp":
            lines.append(f"{name}: {{community: {client}/{device['name']}}}")
        elif collector in ("hyperv", "windows"):
            # a Windows account over OpenSSH (lab/ssh_hosts.py accepts this password)
            lines.append(f"{name}: {{user: {LAB_USER}, password: lab-fake-{name}}}")
        elif collector == "linux":
            # a Debian login by key (lab/ssh_hosts.py accepts this key; it is derived from a fixed seed)
            lines.append(f"{name}: {{user: {LAB_USER}, private_key: {json.dumps(lab_login_key_pem())}}}")
        elif collector == "cisco_cli":
            # an SSH login landing in user EXEC, and the enable secret (lab/ios_service.py accepts both)
            login = f"username: vigie, password: lab-fake-{name}, enable_secret: lab-fake-{name}-enable"
            lines.append(f"{name}: {{{login}}}")
        elif collector == "veeam":
            # the backup server's account (lab/veeam_fake.py gives it the Veeam Backup Viewer role)
            lines.append(f"{name}: {{username: svc-vigie@{client}.local, password: lab-fake-{name}}}")
        else:
            raise SystemExit(f"{client}/{device['name']}: no lab secret for collector {collector!r}")
    return lines


def lab_secrets(estate_texts: Iterable[str]) -> str:
    """One SNMP secret per lab device (community `<client>/<device>`), plus fake tokens."""
    lines = [
        "# GENERATED by lab/estates/generate.py: lab-only values, nothing here is a real secret.",
        "# load_config refuses a secrets file readable by group or others; git does not keep file",
        "# modes, so the lab (and the tests) `chmod 600` this file before using it.",
    ]
    tokens: set[str] = set()
    for text in estate_texts:
        data = yaml.safe_load(text)
        for client in data["clients"]:
            for site in client["sites"]:
                for device in site["devices"]:
                    if "credentials" not in device:
                        continue
                    if isinstance(device["credentials"], dict):
                        lines.extend(_own_logins(client["name"], device))
                        continue
                    if "postgresql" in (device.get("collectors") or {}):
                        # the PostgreSQL probe's login (the lab's PostgreSQL creates this role)
                        name = device["credentials"]
                        lines.append(f"{name}: {{user: vigie_probe, password: lab-fake-{name}}}")
                        continue
                    if "m365" in (device.get("collectors") or {}):
                        # the app registration's secret (lab/graph_fake.py's tenant accepts this one)
                        name = device["credentials"]
                        lines.append(f"{name}: {{client_secret: lab-fake-{name}}}")
                        continue
                    if "meraki" in (device.get("collectors") or {}):
                        # the Dashboard API key (lab/meraki_fake.py's organization accepts this one)
                        name = device["credentials"]
                        lines.append(f"{name}: {{api_key: lab-fake-{name}}}")
                        continue
                    if "vsphere" in (device.get("collectors") or {}):
                        # the vCenter account (lab/vcsim's simulator accepts this login only)
                        name = device["credentials"]
                        lines.append(f"{name}: {{username: vigie@vsphere.local, password: lab-fake-{name}}}")
                        continue
                    if "omada" in (device.get("collectors") or {}):
                        # the Omada controller's account (lab/omada_fake.py accepts this login)
                        name = device["credentials"]
                        lines.append(f"{name}: {{username: vigie, password: lab-fake-{name}}}")
                        continue
                    community = f"{client['name']}/{device['name']}"
                    lines.append(f"{device['credentials']}: {{community: {community}}}")
            for key in ("app_token", "user_token"):
                ref = client.get("ticketing", {}).get(key)
                if ref:
                    tokens.add(ref["secret"])
    lines.extend(f"{name}: lab-fake-{name}" for name in sorted(tokens))
    return "\n".join(dict.fromkeys(lines)) + "\n"


def render_all() -> dict[Path, str]:
    """Every generated file and its content; nothing is written."""
    devices = vsgp_devices()
    files = {
        ESTATES / "vsgp.yaml": render_vsgp(
            devices, "# The full estate: 147 switches, 2 firewalls, 7 UPSes, 2 x 3 VxRail nodes, backup, AD.\n#"
        ),
        ESTATES / "vsgp-demo.yaml": render_vsgp(
            demo_devices(devices),
            "# The demo subset `make demo` plays: a handful of Cisco switches, both firewalls, a UPS.\n#",
        ),
    }
    hand_written = [(ESTATES / name).read_text(encoding="utf-8")
                    for name in ("mlhg.yaml", "ofdt.yaml", "topology.yaml")]
    files[ESTATES / "secrets.yaml"] = lab_secrets([*hand_written, files[ESTATES / "vsgp.yaml"]])
    return files


def main() -> None:
    for path, text in render_all().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
