"""Clinical defaults, defined once: the settings expose them, and the fitted model's own code
reads them here (a registered model loads without the settings' dependencies)."""

from __future__ import annotations

EXCLUDED_KL_GRADES: tuple[int, ...] = (4,)
"""Kellgren-Lawrence grades the protocol excludes from MSC therapy (bone on bone)."""

EXCLUSION_FLAGS: tuple[str, ...] = ("avascular_necrosis", "active_infection", "immune_disorder")
"""Conditions that exclude a patient from the protocol (contract fields of role eligibility)."""

RESPONDER_MIN_POINTS = 9.0
"""A clinically important improvement is at least this many WOMAC points..."""

RESPONDER_MIN_FRACTION = 0.2
"""...and at least this fraction of the baseline total (Tubach et al., 2005)."""
