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

When the kernel has computed an alert's priority in its client's matrix (``Alert.priority``: a
rule's own impact/urgency, the client's overrides), :func:`glpi_levels` maps that instead: the
names above, a level ``P<n>`` as ``6 - n`` (P4 2, P5 1), and what a client's own vocabulary does
not name taken from the severity's row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent.api.priority import SEED_001_MATRIX, SEED_001_PLACEMENT
from agent.api.priority import Priority as ContractPriority

# the seed-001 matrix and placement, as (urgency, impact) -> level (agent.api.priority keeps them)
CONTRACT_MATRIX: dict[tuple[str, str], str] = {
    (urgency, impact): level for urgency, row in SEED_001_MATRIX.items() for impact, level in row.items()
}
GLPI_IMPACT = {"Critique": 5, "Majeur": 4, "Modéré": 3}
GLPI_URGENCY = {"Sévère": 5, "Élevée": 4, "Moyenne": 3}
GLPI_PRIORITY = {"P0": 6, "P1": 5, "P2": 4, "P3": 3}

SEVERITY_PLACEMENT: Mapping[str, tuple[str, str]] = SEED_001_PLACEMENT  # severity -> (impact, urgency)


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


def glpi_levels(priority: ContractPriority, fallback: Mapping[str, int]) -> dict[str, int]:
    """GLPI's urgency / impact / priority for a contract priority; ``fallback`` (the severity's
    row) for what the client's vocabulary names otherwise."""
    level = GLPI_PRIORITY.get(priority.level)
    if level is None and (m := re.fullmatch(r"P(\d)", priority.level)):
        level = max(1, 6 - int(m.group(1)))
    return {
        "urgency": GLPI_URGENCY.get(priority.urgency, fallback["urgency"]),
        "impact": GLPI_IMPACT.get(priority.impact, fallback["impact"]),
        "priority": fallback["priority"] if level is None else level,
    }
