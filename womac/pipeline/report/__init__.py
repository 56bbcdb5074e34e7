"""The model report: one self-contained HTML file per training run (TRIPOD+AI).

The report fills the items of the TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378)
that software can fill from what a training run knows, names the item numbers beside each
section, and lists the items only the authors can fill. It holds aggregates only: counts,
fractions, metrics and figures already drawn by the run, never a patient's identifier or
values. Figures are embedded as PNG, so the file opens offline, from the MLflow run and from
the API alike, and prints.

Read it in this order: ``context`` (what a run hands over), ``view`` (what each section shows,
decided in Python), ``filters`` (how numbers are written), ``render`` (the Jinja2 environment)
and ``templates/`` (the markup, one file per section, and ``report.css``). ``checklist`` holds
the sections and the TRIPOD+AI items as data.
"""

from womac.pipeline.report.context import ReportContext
from womac.pipeline.report.render import render_report

__all__ = ["ReportContext", "render_report"]
