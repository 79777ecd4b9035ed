"""One line of `hearth doctor`'s report, shared by the checks in doctor_cmd and doctor_rerank."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    """One doctor line: ``ok`` False fails the run when ``required``, else it is a warning."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
