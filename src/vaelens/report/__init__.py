"""The study report: one self-contained HTML file with Roy (2025)'s tables, figures and statistics.

``build_report(study_dir)`` reads ``study.sqlite`` and each run's ``analysis.json`` and writes
``<study_dir>/report/report.html`` plus ``tables/*.csv`` and ``tables/*.md``.

Imports from: data (the registry's factor sizes), analysis, study, stats, errors, io, progress.
"""

from vaelens.report.html import REPORT_STAGES, build_report

__all__ = ["REPORT_STAGES", "build_report"]
