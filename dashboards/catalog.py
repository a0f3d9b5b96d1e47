"""What the NOC sees: every dashboard, as definitions (dashboards.build turns them into Grafana's).

Names are docs/METRICS.md's (tests/dashboards checks each against it). Alerts and tickets live in
the agent's state (the web app's NOC wall, `vigie alerts`, `vigie tickets`), not in the TSDB: the
overview's "problems now" are the states the TSDB holds (devices not answering, vCenter alarms,
failed backup jobs, unhealthy Microsoft 365 services, UPSes on battery, open trap and syslog
events).
"""

from __future__ import annotations

from dashboards.build import DashboardSpec, PanelSpec
from dashboards.query import Series

DEVICE = ("client", "device")


def ts(title: str, *series: Series, unit: str = "", link: bool = True, width: int = 12, description: str = ""
       ) -> PanelSpec:
    return PanelSpec(title, series, "timeseries", unit, description, device_link=link, width=width)


def stat(title: str, *series: Series, unit: str = "", width: int = 4, description: str = "") -> PanelSpec:
    return PanelSpec(title, series, "stat", unit, description, width=width, height=4)


def table(title: str, *series: Series, unit: str = "", link: bool = True, width: int = 12, description: str = ""
          ) -> PanelSpec:
    return PanelSpec(title, series, "table", unit, description, device_link=link, width=width)


def per(measurement: str, fieldname: str, *tags: str, **options: object) -> Series:
    """A field per device (and the measurement's own tags)."""
    return Series(measurement, fieldname, by=(*DEVICE, *tags), **options)  # type: ignore[arg-type]


def count_true(measurement: str, fieldname: str, *tags: str, equals: bool | float = True, legend: str = "") -> Series:
    """How many series (per device and `tags`) have `fieldname` equal to `equals` now."""
    return Series(measurement, fieldname, by=(), per=(*DEVICE, *tags), equals=equals, across="count", legend=legend)


def total(measurement: str, fieldname: str, legend: str = "") -> Series:
    """The sum over every device of a per-device count."""
    return Series(measurement, fieldname, by=(), across="sum", legend=legend)


def distinct(*tags: str, legend: str = "") -> Series:
    """How many values of `tags` reported a run: clients, sites, devices."""
    return Series("collection", "samples", by=(), per=tags, across="count", legend=legend)


AVAILABILITY = "share of runs in which the device answered (`collection.reachable`), %"

PROBLEMS = (
    stat("Devices not answering", count_true("collection", "reachable", equals=False)),
    stat("vCenter alarms", count_true("vsphere_alarm", "active", "entity", "alarm")),
    stat("Backup jobs failed", total("veeam_server", "failed_jobs")),
    stat("M365 services unhealthy", count_true("m365_service", "healthy", "service", equals=False)),
    stat("UPS on battery", count_true("snmp_ups", "on_battery")),
    stat("Open trap / syslog events", count_true("snmp_trap", "active", "trap"),
         count_true("syslog_event", "active", "event")),
)

NOC = DashboardSpec(
    "vigie-noc", "vigie — NOC overview",
    "Every client at a glance: what is watched, what answers, what is wrong now.",
    [
        ("Estate", [
            stat("Clients", distinct("client")),
            stat("Sites", distinct("client", "site")),
            stat("Devices", distinct("client", "device")),
            stat("Availability", Series("collection", "reachable", by=(), true_share=True), unit="percent",
                 description=AVAILABILITY),
            stat("Runs in the period", Series("collection", "samples", by=(), over_time="count", across="sum")),
            stat("Agents", Series("vigie_agent", "polls", by=(), per=("agent",), across="count", scoped=False)),
        ]),
        ("Problems now", PROBLEMS),
        ("Availability", [
            table("Availability per client", Series("collection", "reachable", by=("client",), true_share=True),
                  unit="percent", link=False, description=AVAILABILITY),
            ts("Availability per client over time", Series("collection", "reachable", by=("client",),
                                                           true_share=True), unit="percent", link=False),
            table("Devices not answering", Series("collection", "reachable", by=DEVICE, per=DEVICE, equals=False),
                  description="last run of the device unreachable or timed out; a link opens the device"),
        ]),
    ],
    tags=("noc",),
)

CLIENT = DashboardSpec(
    "vigie-client", "vigie — client detail",
    "One client (pick it above): its sites, its devices, their availability and what is wrong.",
    [
        ("Sites", [
            table("Availability per site", Series("collection", "reachable", by=("client", "site"), true_share=True),
                  unit="percent", link=False, description=AVAILABILITY),
            table("Devices per site", Series("collection", "samples", by=("client", "site"), per=DEVICE,
                                             across="count"), link=False),
        ]),
        ("Devices", [
            table("Availability per device", Series("collection", "reachable", by=DEVICE, true_share=True),
                  unit="percent", description=AVAILABILITY),
            ts("Run duration", per("collection", "duration_s", "collector", over_time="max"), unit="s"),
        ]),
        ("Problems now", PROBLEMS),
    ],
    tags=("client",),
)

DEVICE_DETAIL = DashboardSpec(
    "vigie-device", "vigie — device detail",
    "One device (pick client and device above, or follow a link from any device panel).",
    [
        ("Runs", [
            ts("Answered", per("collection", "reachable", "collector", over_time="min"), link=False),
            ts("Run duration", per("collection", "duration_s", "collector", over_time="max"), unit="s", link=False),
            ts("Ping round trip", per("icmp", "rtt_avg_ms"), per("icmp", "loss_percent", legend="loss %"),
               unit="ms", link=False),
            ts("Uptime", per("snmp_system", "uptime_s"), unit="s", link=False),
        ]),
        ("Resources", [
            ts("CPU", per("snmp_cpu", "usage_percent", "cpu", over_time="mean"), unit="percent", link=False),
            ts("Memory", per("snmp_memory", "usage_percent", "pool"), unit="percent", link=False),
            ts("Disks", per("snmp_storage", "usage_percent", "storage"), unit="percent", link=False),
            ts("Sensors", per("snmp_sensor", "value", "sensor", "sensor_class"), link=False),
        ]),
        ("Interfaces", [
            ts("Traffic in", per("snmp_interface", "in_bps", "if_name", over_time="mean"), unit="bps", link=False),
            ts("Traffic out", per("snmp_interface", "out_bps", "if_name", over_time="mean"), unit="bps", link=False),
            ts("Errors", per("snmp_interface", "in_errors_ps", "if_name", over_time="max"),
               per("snmp_interface", "out_errors_ps", "if_name", over_time="max"), unit="pps", link=False),
        ]),
    ],
    tags=("device",),
)

NETWORK = DashboardSpec(
    "vigie-network", "vigie — network",
    "Interfaces, uplinks and the 4G backup, Wi-Fi, PoE, switch ports.",
    [
        ("Interfaces", [
            ts("Traffic in", per("snmp_interface", "in_bps", "if_name", over_time="mean"), unit="bps"),
            ts("Traffic out", per("snmp_interface", "out_bps", "if_name", over_time="mean"), unit="bps"),
            ts("Errors in / out", per("snmp_interface", "in_errors_ps", "if_name", over_time="max"),
               per("snmp_interface", "out_errors_ps", "if_name", over_time="max"), unit="pps"),
            ts("Discards in / out", per("snmp_interface", "in_discards_ps", "if_name", over_time="max"),
               per("snmp_interface", "out_discards_ps", "if_name", over_time="max"), unit="pps"),
            table("Link speed", per("snmp_interface", "speed_bps", "if_name", "if_alias"), unit="bps"),
            table("Interface status", per("snmp_interface", "oper_status", "if_name", "if_alias")),
        ]),
        ("Uplinks and the 4G backup", [
            ts("Uplink traffic in", per("snmp_interface", "in_bps", "if_name", "if_alias",
                                        match={"if_alias": "(?i).*(uplink|wan|fibre|4g|lte).*"}, over_time="mean"),
               unit="bps", description="interfaces whose alias names an uplink"),
            table("Meraki uplinks active", per("meraki_uplink", "active", "interface"),
                  per("meraki_uplink", "loss_percent", "interface"), per("meraki_uplink", "latency_ms", "interface")),
            table("Meraki uplink status", per("meraki_uplink", "status", "interface")),
            table("Omada gateways on the 4G backup", per("omada_gateway", "on_backup"),
                  per("omada_gateway", "wan_online")),
            table("Omada WAN ports", per("omada_wan_port", "online", "port_name"),
                  per("omada_wan_port", "active", "port_name")),
            ts("Omada WAN bytes received", per("omada_wan_port", "rx_bytes", "port_name"),
               per("omada_wan_port", "tx_bytes", "port_name"), unit="decbytes"),
            table("Site-to-site VPN tunnels", per("omada_vpn_tunnel", "up", "tunnel"),
                  per("omada_vpn_tunnel", "uptime_s", "tunnel")),
        ]),
        ("Wi-Fi", [
            ts("Clients per Meraki AP", per("meraki_device", "wireless_clients")),
            ts("Clients per Meraki network", Series("meraki_network", "wireless_clients", by=("client", "network"))),
            ts("Clients per Omada site", Series("omada_site", "wireless_clients", by=("client", "omada_site")),
               Series("omada_site", "wired_clients", by=("client", "omada_site")), link=False),
            ts("Clients per Omada AP and SSID", per("omada_ap_ssid", "clients", "ssid")),
            table("Meraki devices online", per("meraki_device", "online"), per("meraki_device", "last_reported_age_s")),
            table("Meraki networks", Series("meraki_network", "online", by=("client", "network")),
                  Series("meraki_network", "offline", by=("client", "network")), link=False),
            table("Omada devices", per("omada_device", "connected", "omada_device"),
                  per("omada_device", "clients", "omada_device"), per("omada_device", "cpu_pct", "omada_device")),
            table("Meraki neighbours (LLDP/CDP)", per("meraki_neighbor", "system_name", "port")),
            table("Switch neighbours (LLDP/CDP)", per("snmp_neighbor", "local_port_index", "local_port", "protocol",
                                                      "remote_name", "remote_port")),
            table("LLDP identity", per("snmp_lldp_local", "sys_name"), per("snmp_lldp_local", "chassis_id")),
        ]),
        ("PoE and switch ports", [
            ts("PoE draw", per("snmp_poe", "used_w", "pse"), per("snmp_poe", "budget_w", "pse"), unit="watt"),
            table("PoE budget used", per("snmp_poe", "usage_percent", "pse"), unit="percent"),
            table("Ports err-disabled (CLI)", count_true("cisco_cli_port", "err_disabled", "port")),
            table("Ports connected (CLI)", Series("cisco_cli_port", "connected", by=DEVICE, per=(*DEVICE, "port"),
                                                  equals=True, across="count")),
            table("Stack members", per("snmp_stack", "cpu_percent", "member"), per("snmp_stack", "role", "member")),
        ]),
    ],
    tags=("network",),
)

FIREWALLS = DashboardSpec(
    "vigie-firewalls", "vigie — firewalls",
    "Connections, HA and failover state, VPN sessions, licences.",
    [
        ("Sessions", [
            ts("Connections (ASA / FTD)", per("snmp_connections", "active"), per("snmp_connections", "max")),
            ts("VPN sessions and live users", per("snmp_sensor", "value", "sensor", match={"sensor_class": "count"})),
        ]),
        ("High availability", [
            table("Failover units (ASA / FTD)", per("snmp_failover", "state", "unit"),
                  per("snmp_failover", "peer_state", "unit")),
            table("HA (Sophos)", per("snmp_ha", "enabled"), per("snmp_ha", "state"), per("snmp_ha", "peer_state")),
        ]),
        ("Licences and services", [
            table("Licence days left (Sophos)", per("snmp_license", "days_left", "license")),
            table("Services (Sophos)", per("snmp_service", "state", "service")),
        ]),
    ],
    tags=("firewall",),
)

SERVERS = DashboardSpec(
    "vigie-servers", "vigie — servers and virtualization",
    "vSphere and Hyper-V hosts, VMs and datastores; Linux and Windows servers; NAS.",
    [
        ("vSphere", [
            ts("Host CPU", per("vsphere_host", "cpu_usage_pct", "host"), unit="percent"),
            ts("Host memory", per("vsphere_host", "memory_usage_pct", "host"), unit="percent"),
            table("Hosts", per("vsphere_host", "connection_state", "host"), per("vsphere_host", "in_maintenance_mode",
                                                                               "host"),
                  per("vsphere_host", "uptime_s", "host")),
            ts("VM CPU", per("vsphere_vm", "cpu_usage_mhz", "vm"), unit="rotmhz"),
            table("VMs", per("vsphere_vm", "power_state", "vm"), per("vsphere_vm", "snapshot_count", "vm"),
                  per("vsphere_vm", "snapshot_oldest_age_s", "vm")),
            ts("Datastores used", Series("vsphere_datastore", "used_pct", by=(*DEVICE, "datastore")), unit="percent"),
            table("Datastores free", Series("vsphere_datastore", "free_bytes", by=(*DEVICE, "datastore")),
                  unit="bytes"),
            table("Clusters", Series("vsphere_cluster", "num_effective_hosts", by=(*DEVICE, "cluster")),
                  Series("vsphere_cluster", "num_hosts", by=(*DEVICE, "cluster"))),
            table("Triggered alarms", per("vsphere_alarm", "active", "entity", "alarm")),
        ]),
        ("Hyper-V", [
            table("VMs running", per("hyperv_vm", "running", "vm"), per("hyperv_vm", "heartbeat_ok", "vm")),
            ts("VM CPU", per("hyperv_vm", "cpu_usage_percent", "vm"), unit="percent"),
            ts("VM memory assigned", per("hyperv_vm", "memory_assigned_bytes", "vm"), unit="bytes"),
            table("Replication", per("hyperv_replication", "last_replication_age_s", "vm"),
                  per("hyperv_replication", "health", "vm"), unit="s"),
            table("Host memory free", per("hyperv_host", "memory_free_bytes"), unit="bytes"),
            table("Host disks free", per("hyperv_disk", "free_percent", "drive"), unit="percent"),
        ]),
        ("Linux", [
            ts("Load per CPU (15 min)", per("linux_load", "load15_per_cpu")),
            ts("Memory used", per("linux_memory", "used_percent"), unit="percent"),
            table("Filesystems free", per("linux_filesystem", "free_percent", "mount"), unit="percent"),
            table("Failed units, pending updates", per("linux_systemd", "failed_units"),
                  per("linux_updates", "pending"), per("linux_updates", "security")),
            table("Containers running", per("linux_docker_container", "running", "container")),
            table("PostgreSQL accepting (pg_isready)", per("linux_postgresql", "accepting")),
        ]),
        ("Windows", [
            table("Services running", per("windows_service", "running", "service")),
            table("Disks free", per("windows_disk", "free_percent", "drive"), unit="percent"),
            table("Reboot pending, days since the last update", per("windows_reboot", "pending"),
                  per("windows_update", "last_install_age_days")),
            table("AD replication failures", per("windows_ad_replication", "failures")),
            ts("Clock skew", per("windows_time", "abs_skew_s"), unit="s"),
            table("Event log errors", per("windows_eventlog", "errors", "log"), per("windows_eventlog", "critical",
                                                                                   "log")),
            table("Watched events", per("windows_event", "count", "watch")),
        ]),
        ("Any server (SNMP, SSH)", [
            ts("CPU", per("snmp_cpu", "usage_percent", "cpu", over_time="mean"), unit="percent"),
            ts("Memory", per("snmp_memory", "usage_percent", "pool"), unit="percent"),
            table("Disks used", per("snmp_storage", "usage_percent", "storage"), unit="percent"),
            table("SSH host key changed", count_true("ssh_host_key", "changed", "collector")),
        ]),
        ("NAS and server hardware", [
            table("NAS volumes free", per("snmp_volume", "free_percent", "volume"), unit="percent"),
            table("Disks", per("snmp_disk", "state", "disk"), per("snmp_disk", "temperature_c", "disk")),
            table("RAID", per("snmp_raid", "state", "array")),
            table("Health roll-ups", per("snmp_health", "state", "component")),
        ]),
    ],
    tags=("servers",),
)

SERVICES = DashboardSpec(
    "vigie-services", "vigie — services (probes)",
    "Web applications, certificates, DNS, domains, ports and databases, seen from the agent.",
    [
        ("Web and certificates", [
            ts("HTTP latency", per("http_response", "latency_ms", "url"), unit="ms"),
            table("HTTP status", per("http_response", "status_code", "url")),
            table("Certificates: days left", per("tls_certificate", "expires_in_days", "server_name", "port")),
            table("Domains: days left", per("rdap_domain", "expires_in_days", "domain")),
        ]),
        ("Network services", [
            ts("DNS latency", per("dns_query", "latency_ms", "resolver", "name"), unit="ms"),
            ts("TCP connect", per("tcp_port", "connect_ms", "port"), unit="ms"),
        ]),
        ("PostgreSQL", [
            ts("Connections", per("postgresql_server", "connections"), per("postgresql_server", "max_connections")),
            ts("Connect time", per("postgresql_server", "connect_ms"), unit="ms"),
            table("Databases", per("postgresql_database", "size_bytes", "database"), unit="bytes"),
            table("Replicas", per("postgresql_replication", "replay_lag_s", "replica"),
                  per("postgresql_replication", "lag_bytes", "replica")),
        ]),
    ],
    tags=("services",),
)

BACKUPS = DashboardSpec(
    "vigie-backups", "vigie — backups",
    "Veeam Backup & Replication: jobs, repositories, servers.",
    [
        ("Jobs", [
            stat("Failed jobs", total("veeam_server", "failed_jobs")),
            stat("Warning jobs", total("veeam_server", "warning_jobs")),
            stat("Running jobs", total("veeam_server", "running_jobs")),
            table("Hours since the last success", per("veeam_job", "last_success_age_h", "job"),
                  per("veeam_job", "objects", "job"), width=12),
            table("Last result", per("veeam_job", "last_result", "job"), width=12),
            ts("Running job progress", per("veeam_job", "progress_percent", "job"), unit="percent"),
        ]),
        ("Coverage", [
            table("VMs without a backup", Series("backup_coverage", "unprotected", by=("client",)),
                  Series("backup_coverage", "vms", by=("client",)), link=False,
                  description="VMs the hypervisors report that no Veeam backup object names"),
            table("Which", Series("backup_coverage", "unprotected_vms", by=("client",)), link=False),
        ]),
        ("Repositories", [
            ts("Used", Series("veeam_repository", "used_pct", by=(*DEVICE, "repository")), unit="percent"),
            table("Free", Series("veeam_repository", "free_bytes", by=(*DEVICE, "repository")),
                  Series("veeam_repository", "online", by=(*DEVICE, "repository")), unit="bytes"),
        ]),
    ],
    tags=("backups",),
)

UPS = DashboardSpec(
    "vigie-ups", "vigie — UPS and environment",
    "UPS batteries and load, temperatures and humidity, power supplies and fans, printers.",
    [
        ("UPS", [
            ts("Battery charge", per("snmp_ups", "battery_charge_percent"), unit="percent"),
            ts("Runtime on battery", per("snmp_ups", "runtime_s"), unit="s"),
            ts("Load", per("snmp_ups", "load_percent"), unit="percent"),
            ts("Input voltage", per("snmp_ups", "input_voltage_v"), unit="volt"),
            table("On battery, battery to replace", per("snmp_ups", "on_battery"), per("snmp_ups", "replace_battery")),
        ]),
        ("Environment", [
            ts("Temperatures", per("snmp_sensor", "value", "sensor", match={"sensor_class": "temperature"}),
               per("cisco_cli_temperature", "celsius", "switch", "sensor"), unit="celsius"),
            ts("Humidity", per("snmp_sensor", "value", "sensor", match={"sensor_class": "humidity"}), unit="percent"),
            table("Power supplies and fans (CLI)", per("cisco_cli_psu", "ok", "psu"),
                  per("cisco_cli_fan", "ok", "switch", "fan")),
            table("Sensors not ok", per("snmp_sensor", "state", "sensor", "sensor_class")),
        ]),
        ("Printers", [
            table("Supplies", per("snmp_printer_supply", "level_percent", "supply"), unit="percent"),
            table("Printers", per("snmp_printer", "jammed", "printer"), per("snmp_printer", "pages_total", "printer")),
        ]),
    ],
    tags=("ups",),
)

M365 = DashboardSpec(
    "vigie-m365", "vigie — Microsoft 365",
    "Service health, issues, licences, directory sync and Defender alerts.",
    [
        ("Services", [
            table("Services healthy", per("m365_service", "healthy", "service")),
            stat("Open issues", count_true("m365_issue", "is_resolved", "issue_id", equals=False), width=6),
            stat("Open security alerts", count_true("m365_security_alert", "is_resolved", "alert_id", equals=False),
                 width=6),
            table("Issues", per("m365_issue", "title", "issue_id", "service")),
        ]),
        ("Licences and sync", [
            table("Licences", per("m365_license", "consumed", "sku"), per("m365_license", "prepaid", "sku"),
                  per("m365_license", "available", "sku")),
            ts("Time since the last directory sync", per("m365_sync", "last_sync_age_s"), unit="s"),
        ]),
    ],
    tags=("m365",),
)

def _daily(fieldname: str, legend: str = "") -> Series:
    return Series("sla_daily", fieldname, by=("client",), legend=legend or "{{client}}")


SLA = DashboardSpec(
    "vigie-sla", "vigie — alert SLA",
    "KPI 3: critical alerts taken in charge in the ITSM (read back) within 5 minutes of their onset, per "
    "client and day (`sla_daily`, written once the day is over: pick a range of days), with the onset -> "
    "taken latency; beside it the share ticketed within 5 minutes and the onset -> ticket latency; "
    "availability and restore times against the contract; and what the TSDB shows of the detection "
    "path (runs' lag and duration, the alert lane's queue).",
    [
        ("KPI 3: onset -> taken in charge", [
            ts("Critical alerts taken in charge within 5 min", _daily("taken_within_5min_pct"), unit="percent",
               link=False),
            ts("Onset -> taken in charge, median and p99", _daily("p50_onset_to_taken_s", "{{client}} p50"),
               _daily("p99_onset_to_taken_s", "{{client}} p99"), unit="s", link=False),
            table("Critical alerts, taken in charge within 5 min, not taken", _daily("critical_alerts"),
                  _daily("taken_within_5min"), _daily("not_taken"), link=False),
        ]),
        ("Onset -> ticket", [
            ts("Critical alerts ticketed within 5 min", _daily("within_5min_pct"), unit="percent", link=False),
            ts("Onset -> ticket, median and p99", _daily("p50_onset_to_ticket_s", "{{client}} p50"),
               _daily("p99_onset_to_ticket_s", "{{client}} p99"), unit="s", link=False),
            table("Critical alerts, ticketed within 5 min, without ticket", _daily("critical_alerts"),
                  _daily("ticketed_within_5min"), _daily("without_ticket"), link=False),
        ]),
        ("Availability and restores", [
            ts("Worst availability over service hours", _daily("worst_service_hours_pct"), unit="percent",
               link=False),
            table("Services below target", _daily("services_below_target"), _daily("services"), link=False),
            table("Restores within the GTR", _daily("restores_within_gtr"), _daily("restores"), link=False),
        ]),
        ("Detection latency", [
            ts("Run lag (late start)", Series("collection", "lag_s", by=("client",), over_time="max"), unit="s",
               link=False),
            ts("Run duration", Series("collection", "duration_s", by=("client",), over_time="max"), unit="s",
               link=False),
            ts("Agent: turns late", Series("vigie_agent", "behind_s", by=("agent",), scoped=False), unit="s",
               link=False),
            ts("Agent: alert lane queue", Series("vigie_agent", "queue_alerts", by=("agent",), scoped=False),
               link=False),
        ]),
        ("Reports", [
            table("Report mailing attempts", Series("report_delivery", "attempts", by=("client", "report")),
                  link=False),
        ]),
    ],
    tags=("sla",),
    time_from="now-30d",
)


def _agent(fieldname: str, legend: str = "") -> Series:
    return Series("vigie_agent", fieldname, by=("agent",), scoped=False, legend=legend)


def _receiver(measurement: str, fieldname: str) -> Series:
    return Series(measurement, fieldname, by=("service",), scoped=False, legend="{{service}} " + fieldname)


AGENT = DashboardSpec(
    "vigie-agent", "vigie — the agent's health",
    "The agents themselves (`vigie_agent`), the event receivers and the API budgets of the collectors.",
    [
        ("Runs", [
            ts("Polls and runs in flight", _agent("polls", "{{agent}} polls"),
               _agent("in_flight", "{{agent}} in flight"), _agent("in_flight_limit", "{{agent}} limit"),
               _agent("queued", "{{agent}} queued"), link=False),
            ts("Runs by outcome (counters)", *(_agent(f, "{{agent}} " + f) for f in
                                               ("runs", "ok", "partial", "errors", "unreachable", "timeouts",
                                                "overloaded", "overruns")), link=False),
            ts("Run latency", _agent("latency_avg_s", "{{agent}} mean"), _agent("latency_max_s", "{{agent}} max"),
               unit="s", link=False),
            ts("Lateness", _agent("behind_s", "{{agent}} behind"), _agent("loop_lag_s", "{{agent}} loop lag"),
               unit="s", link=False),
            ts("CPU saturation", _agent("saturation"), unit="percentunit", link=False),
            ts("Pipeline queues", *(_agent(f, "{{agent}} " + f) for f in
                                    ("queue_store", "queue_state", "queue_alerts", "queue_spool_points")), link=False),
        ]),
        ("Who watches the watcher", [
            table("Peers beating", Series("vigie_peer", "up", by=("agent",), scoped=False),
                  Series("vigie_peer", "silent_s", by=("agent",), scoped=False), link=False),
            table("Own beat", Series("vigie_heartbeat", "ok", by=("agent",), scoped=False),
                  Series("vigie_heartbeat", "peers", by=("agent",), scoped=False), link=False),
        ]),
        ("Event receivers", [
            ts("Traps", *(_receiver("snmp_trap_receiver", f) for f in
                          ("received", "accepted", "rate_limited", "malformed", "unknown_source", "open_events")),
               link=False),
            ts("Syslog", *(_receiver("syslog_receiver", f) for f in
                           ("received", "accepted", "rate_limited", "malformed", "events", "open_events")),
               link=False),
        ]),
        ("Collectors", [
            table("SNMP replies refused", per("snmp_system", "malformed_replies"), per("snmp_system", "auth_failures"),
                  per("snmp_system", "mismatched_replies")),
            table("Meraki API", per("meraki_organization", "api_requests"), per("meraki_organization",
                                                                                "api_rate_limited"),
                  per("meraki_organization", "api_wait_s")),
            table("vCenter", per("vsphere_vcenter", "api_calls"), per("vsphere_vcenter", "read_ms")),
            table("Omada controller", per("omada_controller", "devices_connected"),
                  per("omada_controller", "devices_disconnected")),
            table("Veeam server", per("veeam_server", "jobs"), per("veeam_server", "repositories")),
            table("Configuration backups (CLI)", per("cisco_cli_config", "backup_age_s"),
                  per("cisco_cli_config", "versions")),
            table("Switches (CLI)", per("cisco_cli_device", "uptime_s"), per("cisco_cli_device", "stack_members")),
        ]),
    ],
    tags=("agent",),
)

DASHBOARDS: tuple[DashboardSpec, ...] = (NOC, CLIENT, DEVICE_DETAIL, NETWORK, FIREWALLS, SERVERS, SERVICES, BACKUPS,
                                         UPS, M365, SLA, AGENT)
