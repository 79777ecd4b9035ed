"""The intake's Prometheus observer: each question from each surface is counted once, where it ends.

::

    intake = Intake(settings, engine, observers=[METRICS])   # then /metrics shows hearth_answers_total
"""

from __future__ import annotations

from core.contracts import Outcome
from core.metrics import ANSWER_SECONDS, ANSWERS, ERRORS


class Metrics:
    """The intake's observer that counts outcomes; errors are labelled by refusal reason and surface."""

    def observe(self, outcome: Outcome) -> None:
        """Count one finished question."""
        surface, action = outcome.ask.request.surface, outcome.ask.kind.value
        ANSWERS.labels(surface, action, outcome.status).inc()
        ANSWER_SECONDS.labels(surface, action).observe(outcome.duration_ms / 1000)
        if outcome.status == "error" and outcome.refusal is not None:
            ERRORS.labels(outcome.refusal.reason.value, surface).inc()


METRICS = Metrics()
