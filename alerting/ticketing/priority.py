"""Severity -> ITSM impact / urgency / priority, after the priority matrix of the ministry's
support contract (seed 001, section 7: priority = impact x urgency):

=========  ===========  ===========  ===========
urgency    Critique     Majeur       Modéré        <- impact
=========  ===========  ===========  ===========
Sévère     P0           P1           P2
Élevée     P1           P2           P3
Moyenne    P2           P3           P3
=========  ===========  ===========  ===========

Default placement of vigie's severities in that matrix, and the GLPI values sent (GLPI scale
1 very low .. 5 very high, priority 6 = major):

==========  ================  ===============  =====  ============  =============  ==============
severity    contract impact   contract urgency  P     GLPI impact   GLPI urgency   GLPI priority
==========  ================  ===============  =====  ============  =============  ==============
critical    Critique          Sévère           P0     5 very high   5 very high    6 major
major       Majeur            Sévère           P1     4 high        5 very high    5 very high
minor       Majeur            Élevée           P2     4 high        4 high         4 high
warning     Modéré            Moyenne          P3     3 medium      3 medium       3 medium
==========  ================  ===============  =====  ============  =============  ==============

Contract impact -> GLPI: Critique 5, Majeur 4, Modéré 3. Urgency: Sévère 5, Élevée 4, Moyenne 3.
P -> GLPI priority: P0 6, P1 5, P2 4, P3 3 (GLPI's default matrix gives the same for P1-P3; P0 is
raised to "major" explicitly). A connector may override the whole table per client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CONTRACT_MATRIX: dict[tuple[str, str], str] = {
    ("Sévère", "Critique"): "P0",
    ("Sévère", "Majeur"): "P1",
    ("Sévère", "Modéré"): "P2",
    ("Élevée", "Critique"): "P1",
    ("Élevée", "Majeur"): "P2",
    ("Élevée", "Modéré"): "P3",
    ("Moyenne", "Critique"): "P2",
    ("Moyenne", "Majeur"): "P3",
    ("Moyenne", "Modéré"): "P3",
}
GLPI_IMPACT = {"Critique": 5, "Majeur": 4, "Modéré": 3}
GLPI_URGENCY = {"Sévère": 5, "Élevée": 4, "Moyenne": 3}
GLPI_PRIORITY = {"P0": 6, "P1": 5, "P2": 4, "P3": 3}

SEVERITY_PLACEMENT: dict[str, tuple[str, str]] = {  # severity -> (impact, urgency)
    "critical": ("Critique", "Sévère"),
    "major": ("Majeur", "Sévère"),
    "minor": ("Majeur", "Élevée"),
    "warning": ("Modéré", "Moyenne"),
}


@dataclass(frozen=True)
class Priority:
    impact: str
    urgency: str
    level: str  # P0..P3
    glpi_impact: int
    glpi_urgency: int
    glpi_priority: int


def priority_for(severity: str, placement: Mapping[str, tuple[str, str]] | None = None) -> Priority:
    impact, urgency = (placement or SEVERITY_PLACEMENT).get(severity, SEVERITY_PLACEMENT["warning"])
    level = CONTRACT_MATRIX[(urgency, impact)]
    return Priority(impact, urgency, level, GLPI_IMPACT[impact], GLPI_URGENCY[urgency], GLPI_PRIORITY[level])


DEFAULT_GLPI_MAPPING: dict[str, dict[str, int]] = {
    sev: {
        "urgency": (p := priority_for(sev)).glpi_urgency,
        "impact": p.glpi_impact,
        "priority": p.glpi_priority,
    }
    for sev in SEVERITY_PLACEMENT
}
