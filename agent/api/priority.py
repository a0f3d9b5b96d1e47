"""An alert's priority as the client's contract computes it: impact x urgency -> a level.

Each client has its own matrix in the configuration (``clients[].priority``); the default is the
ministry's support contract (seed 001, section 7):

=========  ===========  ===========  ===========
urgency    Critique     Majeur       Modéré        <- impact
=========  ===========  ===========  ===========
Sévère     P0           P1           P2
Élevée     P1           P2           P3
Moyenne    P2           P3           P3
=========  ===========  ===========  ===========

A severity gets a default (impact, urgency) placement; a rule may set its own impact or urgency,
and the client's overrides (by rule, site, device, tags) have the last word. The kernel computes
the :class:`Priority` when an alert is queued for a ticket (``Alert.priority``); a receiver maps the
level to its ITSM's fields (GLPI's urgency, impact and priority).
"""

from __future__ import annotations

from dataclasses import dataclass

SEED_001_MATRIX: dict[str, dict[str, str]] = {  # urgency -> impact -> level
    "Sévère": {"Critique": "P0", "Majeur": "P1", "Modéré": "P2"},
    "Élevée": {"Critique": "P1", "Majeur": "P2", "Modéré": "P3"},
    "Moyenne": {"Critique": "P2", "Majeur": "P3", "Modéré": "P3"},
}
SEED_001_PLACEMENT: dict[str, tuple[str, str]] = {  # severity -> (impact, urgency)
    "critical": ("Critique", "Sévère"),
    "major": ("Majeur", "Sévère"),
    "minor": ("Majeur", "Élevée"),
    "warning": ("Modéré", "Moyenne"),
}


@dataclass(frozen=True)
class Priority:
    impact: str  # in the client's vocabulary: "Critique"
    urgency: str  # "Sévère"
    level: str  # "P0"

    def to_dict(self) -> dict[str, str]:
        return {"impact": self.impact, "urgency": self.urgency, "level": self.level}
