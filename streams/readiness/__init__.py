"""Readiness scoring core: how ready a company is to bid for a tender (CIDB grading, provinces covered, sector
match, experience, B-BBEE level, time left), as a score with a checklist of readable reasons.

Pure functions over frozen dataclasses: no I/O, no Faust, no databases. The readiness agent wraps them; the bench
(`bench/readiness_bench.py`) measures them on the real eTenders data.
"""
