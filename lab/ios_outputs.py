"""What the lab's IOS-XE device (lab/ios_device.py) answers: recorded outputs of Catalyst switches,
kept as templates the device fills with its own state (hostname, PSUs, fans, ports, config).

Provenance (both projects Apache-2.0):

- ``SHOW_VERSION``: ntc-templates, ``tests/cisco_ios/show_version/cisco_ios_show_version5.raw``
  (a C9500-48Y4C stack on IOS-XE 16.12.04, hostname and serials already anonymised there). Here the
  hostname is the device's, the second member's block is left out and trailing spaces are dropped;
  nothing else is changed.
- ``show environment all``: CiscoTestAutomation/genieparser,
  ``src/genie/libs/parser/iosxe/c9300/tests/test_show_platform.py`` (``TestShowEnvironmentAll``, a
  two-member C9300 stack). :func:`environment_all` prints the same layout from the device's state;
  with the recorded state it reproduces the recording line for line (tests/cisco_cli checks it).
- ``show environment power all`` is the PSU table of that same recording; a failed PSU is written
  as ntc-templates' ``cisco_ios_show_environment_power_all-3850-not-pres.raw`` shows one
  (``No Input Power  Bad      Bad``).
- ``show interfaces status``: the column layout of ntc-templates'
  ``tests/cisco_ios/show_interfaces_status/cisco_ios_show_interfaces_status.raw``.
- ``RUNNING_CONFIG``: written for vigie after Cisco's IOS-XE 16.12 configuration guides: an access
  switch with every kind of secret a real one carries (enable secret, local users, SNMP v2c
  communities and a v3 user, TACACS+ and RADIUS keys, a key chain, OSPF and BGP authentication, an
  IKE pre-shared key, line passwords), so that masking is tested on all of them. The hashes and
  keys are made up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SHOW_VERSION = """\
Cisco IOS XE Software, Version 16.12.04
Cisco IOS Software [Gibraltar], Catalyst L3 Switch Software (CAT9K_IOSXE), Version 16.12.4, RELEASE SOFTWARE (fc5)
Technical Support: http://www.cisco.com/techsupport
Copyright (c) 1986-2020 by Cisco Systems, Inc.
Compiled Thu 09-Jul-20 21:49 by mcpre


Cisco IOS-XE software, Copyright (c) 2005-2020 by cisco Systems, Inc.
All rights reserved.  Certain components of Cisco IOS-XE software are
licensed under the GNU General Public License ("GPL") Version 2.0.  The
software code licensed under GPL Version 2.0 is free software that comes
with ABSOLUTELY NO WARRANTY.  You can redistribute and/or modify such
GPL code under the terms of GPL Version 2.0.  For more details, see the
documentation or "License Notice" file accompanying the IOS-XE software,
or the applicable URL provided on the flyer accompanying the IOS-XE
software.


ROM: IOS-XE ROMMON
BOOTLDR: System Bootstrap, Version 17.1.1[FC2], RELEASE SOFTWARE (P)

{hostname} uptime is 7 weeks, 17 hours, 14 minutes
Uptime for this control processor is 7 weeks, 17 hours, 17 minutes
System returned to ROM by Reload Command at 20:51:53 EET Mon Mar 8 2021
System restarted at 20:57:50 EET Mon Mar 8 2021
System image file is "flash:packages.conf"
Last reload reason: Reload Command



This product contains cryptographic features and is subject to United
States and local country laws governing import, export, transfer and
use. Delivery of Cisco cryptographic products does not imply
third-party authority to import, export, distribute or use encryption.
Importers, exporters, distributors and users are responsible for
compliance with U.S. and local country laws. By using this product you
agree to comply with applicable laws and regulations. If you are unable
to comply with U.S. and local laws, return this product immediately.

A summary of U.S. laws governing Cisco cryptographic products may be found at:
http://www.cisco.com/wwl/export/crypto/tool/stqrg.html

If you require further assistance please contact us by sending email to
export@cisco.com.


Technology Package License Information:

------------------------------------------------------------------------------
Technology-package                                     Technology-package
Current                        Type                       Next reboot
------------------------------------------------------------------------------
network-advantage       Smart License                    network-advantage
dna-advantage           Subscription Smart License       dna-advantage
AIR License Level: AIR DNA Advantage
Next reload AIR license Level: AIR DNA Advantage


Smart Licensing Status: UNREGISTERED/EVAL EXPIRED

cisco C9500-48Y4C (X86) processor with 1867864K/6147K bytes of memory.
Processor board ID CAT23XXXXXX
16 Virtual Ethernet interfaces
96 TwentyFive Gigabit Ethernet interfaces
8 Hundred Gigabit Ethernet interfaces
32768K bytes of non-volatile configuration memory.
16010152K bytes of physical memory.
11161600K bytes of Bootflash at bootflash:.
11161600K bytes of Bootflash at bootflash-2:.
1638400K bytes of Crash Files at crashinfo:.
1638400K bytes of Crash Files at crashinfo-2:.
0K bytes of WebUI ODM Files at webui:.

Base Ethernet MAC Address          : a0:b4:39:00:00:e0
Motherboard Assembly Number        : 48XX
Motherboard Serial Number          : CAT23XXXXXX
Model Revision Number              : V02
Motherboard Revision Number        : 4
Model Number                       : C9500-48Y4C
System Serial Number               : CAT23XXXXXX
"""

RUNNING_CONFIG = """\
Building configuration...

Current configuration : {size} bytes
!
! Last configuration change at {changed_at} by {changed_by}
! NVRAM config last updated at 08:02:11 CET Mon Nov 30 2026 by admin
!
version 16.12
no service pad
service timestamps debug datetime msec
service timestamps log datetime msec
service password-encryption
service call-home
no platform punt-keepalive disable-kernel-core
!
hostname {hostname}
!
vrf definition Mgmt-vrf
 !
 address-family ipv4
 exit-address-family
!
logging buffered 64000 informational
enable secret 9 $9$8lNpzZp0yK1Wcr$eQqwQ2vVbpsa3ycXfTn3b6Rp2kHh1YnJ0LuTWfMvSkA
!
username admin privilege 15 secret 9 $9$mR0e3a1l9t0eDk$8tFj6ZQ0b7rJb3ZrI4v1eH3n5ZkqUo8yPqgJ1xWdN2c
username netops privilege 15 password 7 0822455D0A16544541
aaa new-model
!
aaa group server tacacs+ ISE
 server name ISE-1
!
aaa authentication login default group ISE local
aaa authorization exec default group ISE local
aaa accounting exec default start-stop group ISE
!
aaa session-id common
clock timezone CET 1 0
clock summer-time CEST recurring last Sun Mar 2:00 last Sun Oct 3:00
!
ip domain name vsgp.lan
ip name-server 10.10.0.53 10.20.0.53
!
login on-success log
!
crypto isakmp key 6 FLgBaJHXdYY_AcHZZMgQ\\]^LFTQaAiA address 10.99.0.1
!
key chain OSPF-KEYS
 key 1
  key-string 7 045802150C2E1D1C5A
!
spanning-tree mode rapid-pvst
spanning-tree extend system-id
errdisable recovery cause bpduguard
errdisable recovery interval 300
!
redundancy
 mode sso
!
vlan 10
 name USERS
!
vlan 20
 name VOICE
!
vlan 99
 name MGMT
!
interface GigabitEthernet0/0
 vrf forwarding Mgmt-vrf
 no ip address
 shutdown
!
interface GigabitEthernet1/0/1
 description {uplink_description}
 switchport mode trunk
 ip ospf message-digest-key 1 md5 7 110A1016141D5A5E57
!
interface GigabitEthernet1/0/2
 description Bureau 101
 switchport access vlan 10
 switchport mode access
 switchport voice vlan 20
 spanning-tree portfast
 spanning-tree bpduguard enable
!
interface Vlan99
 ip address 10.99.12.2 255.255.255.0
 ip ospf authentication-key 7 0508571C22431F5B4A
!
router ospf 1
 area 0 authentication message-digest
 network 10.99.12.0 0.0.0.255 area 0
!
router bgp 65012
 neighbor 10.99.12.1 remote-as 65000
 neighbor 10.99.12.1 password 7 13061E010803557878
!
ip ssh version 2
ip scp server enable
!
snmp-server community {community} RO 99
snmp-server community vsgp-rw-2026 RW 98
snmp-server user vigie VIGIE-RO v3 auth sha AuthPass2026! priv aes 128 PrivPass2026!
snmp-server host 10.10.0.20 version 2c {community}
!
tacacs server ISE-1
 address ipv4 10.10.0.30
 key 7 104D000A061843595F
radius server NPS-1
 address ipv4 10.10.0.31 auth-port 1812 acct-port 1813
 key 7 02050D480809
!
ntp authentication-key 1 md5 104D000A0618 7
ntp server 10.10.0.123 key 1
ntp clock-period 36028797018963968
!
line con 0
 password 7 0822455D0A16
 stopbits 1
line vty 0 4
 password 7 0822455D0A16
 transport input ssh
line vty 5 15
 transport input ssh
!
end
"""

# The recorded C9300 stack's PSU table columns: SW, PID, Serial#, Status, Sys Pwr, PoE Pwr, Watts.
PSU_HEADER = (
    "SW  PID                 Serial#     Status           Sys Pwr  PoE Pwr  Watts\n"
    "--  ------------------  ----------  ---------------  -------  -------  -----\n"
)


@dataclass
class Psu:
    slot: str  # 1A, 1B, 2A...
    pid: str | None  # None: not present
    serial: str = ""
    status: str = "OK"
    sys_pwr: str = "Good"
    poe_pwr: str = "n/a"
    watts: str = "350"

    def line(self) -> str:
        if self.pid is None:
            return f"{self.slot}  Not Present\n"
        return (f"{self.slot:<4}{self.pid:<20}{self.serial:<13}{self.status:<16}{self.sys_pwr:<9}"
                f"{self.poe_pwr:<9}{self.watts}\n")


@dataclass
class Fan:
    switch: int
    fan: int
    speed: int = 14240
    state: str = "OK"


@dataclass
class Sensor:
    name: str  # Inlet, Outlet, Hotspot
    value: int
    yellow: int
    red: int
    state: str = "GREEN"


def recorded_psus() -> list[Psu]:
    return [
        Psu("1A", "PWR-C1-350WAC-P", "DCC2337B0K5"),
        Psu("1B", None),
        Psu("2A", "PWR-C1-350WAC-P", "DCC2337B0HT"),
        Psu("2B", None),
    ]


def recorded_fans() -> list[Fan]:
    return [Fan(switch, fan) for switch in (1, 2) for fan in (1, 2, 3)]


def recorded_sensors() -> dict[int, list[Sensor]]:
    return {
        1: [Sensor("Inlet", 21, 46, 56), Sensor("Outlet", 32, 105, 125), Sensor("Hotspot", 49, 105, 125)],
        2: [Sensor("Inlet", 21, 46, 56), Sensor("Outlet", 31, 105, 125), Sensor("Hotspot", 52, 105, 125)],
    }


def power_all(psus: Iterable[Psu]) -> str:
    return PSU_HEADER + "".join(psu.line() for psu in psus)


def environment_all(fans: Sequence[Fan], sensors: dict[int, list[Sensor]], psus: Sequence[Psu]) -> str:
    out = []
    for switch in sorted({fan.switch for fan in fans}):
        out.append("Switch   FAN     Speed   State\n---------------------------------------------------\n")
        out.extend(f"  {f.switch}       {f.fan}     {f.speed:<5}     {f.state}\n" for f in fans if f.switch == switch)
        out.append("FAN PS-1 is OK\nFAN PS-2 is NOT PRESENT\n")
    for switch, readings in sorted(sensors.items()):
        system = "OK" if all(s.state == "GREEN" for s in readings) else "FAULTY"
        out.append(f"Switch {switch}: SYSTEM TEMPERATURE is {system}\n")
        blocks = [
            f"{s.name} Temperature Value: {s.value} Degree Celsius\nTemperature State: {s.state}\n"
            f"Yellow Threshold : {s.yellow} Degree Celsius\nRed Threshold    : {s.red} Degree Celsius\n"
            for s in readings
        ]
        out.append("\n".join(blocks))
    out.append(power_all(psus))
    return "".join(out)


@dataclass
class Port:
    name: str
    description: str
    status: str  # connected, notconnect, err-disabled, disabled
    vlan: str
    duplex: str
    speed: str
    kind: str

    def line(self) -> str:
        return (f"{self.name:<10}{self.description[:18]:<19}{self.status:<13}{self.vlan:<11}"
                f"{self.duplex:>6} {self.speed:>6} {self.kind}\n")


def access_ports(count: int = 48) -> list[Port]:
    """An access switch's ports: the uplink, offices and phones connected, a few empty."""
    ports = [Port("Gi1/0/1", "UPLINK fed", "connected", "trunk", "a-full", "a-1000", "10/100/1000BaseTX")]
    for n in range(2, count + 1):
        connected = n % 5 != 0
        ports.append(Port(
            f"Gi1/0/{n}", f"Bureau {100 + n}", "connected" if connected else "notconnect", "10",
            "a-full" if connected else "auto", "a-1000" if connected else "auto", "10/100/1000BaseTX",
        ))
    return ports


def interfaces_status(ports: Iterable[Port]) -> str:
    header = "Port      Name               Status       Vlan       Duplex  Speed Type\n"
    return header + "".join(port.line() for port in ports)
