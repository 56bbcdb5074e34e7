"""Rendering the report: the Jinja2 templates beside this module, with autoescaping on.

Every text a run supplies (file names, notes, reasons, run ids) is escaped by Jinja2; only
the templates' own markup is trusted. The stylesheet ``templates/report.css`` is inlined and
the figures are embedded, so the page is one file that opens offline and prints.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from womac.data.contract import ELIGIBILITY_FLAGS, OUTCOMES, WOMAC_TOTAL_MAX
from womac.pipeline.report.checklist import CHECKLIST, SECTION_BY_ID, SECTIONS, STATUS_TEXT
from womac.pipeline.report.context import ReportContext
from womac.pipeline.report.filters import FILTERS
from womac.pipeline.report.view import (
    SMALL_SUBGROUP,
    allowed_values,
    build_view,
    subgroup_name,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
_WHITESPACE = re.compile(r"\s+")


def _squash(markup: str) -> Markup:
    # Templates wrap prose over lines; the page reads the same with each run of whitespace
    # as one space (nothing in the body is preformatted).
    return Markup(_WHITESPACE.sub(" ", str(markup)).strip())


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(FILTERS)
    environment.filters.update(squash=_squash, allowed=allowed_values, subgroup_name=subgroup_name)
    return environment


def render_report(context: ReportContext) -> str:
    """The report as one HTML document with its figures embedded.

    Parameters
    ----------
    context
        What the training run knows: settings, the data report, split sizes, every
        candidate's cross-validated and held-out figures, the held-out evaluation of the
        served model, the promotion decision and the figures already drawn.

    Returns
    -------
    str
        A complete HTML document: no external resource, no script, no patient-level values
        beyond the figures the run drew.
    """
    from womac.data.simulate import COHORT_FIGURES, SimulationSettings

    names: dict[str, Any] = {
        "view": build_view(context),
        "run": context,
        "settings": context.settings,
        "data": context.data,
        "sim": COHORT_FIGURES,
        "knobs": SimulationSettings(),
        "sections": SECTION_BY_ID,
        "section_list": SECTIONS,
        "checklist": CHECKLIST,
        "status_text": STATUS_TEXT,
        "outcomes": OUTCOMES,
        "eligibility_flags": ELIGIBILITY_FLAGS,
        "womac_total_max": WOMAC_TOTAL_MAX,
        "small_subgroup": SMALL_SUBGROUP,
    }
    return _environment().get_template("report.html").render(names) + "\n"
