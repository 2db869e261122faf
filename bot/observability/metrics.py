"""Prometheus metrics for one Candor process.

Nothing is created at import time: `Metrics()` builds its own `CollectorRegistry` (so tests
and several runtimes in one process never share counters) and `render()` gives the text
exposition `GET /metrics` serves. Each replica is scraped on its own; Prometheus sums them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: The `deps.extras` key of the process's `Metrics`.
METRICS = "metrics"
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)
#: Acks are promised within 100 ms: finer buckets below that.
_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 3)


class Metrics:
    """Counters, histograms and gauges Candor exports; see the module docstring."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter(
            "candor_events_received", "Slack requests received, by type.", ["type"], registry=r
        )
        self.answers = Counter(
            "candor_answers",
            "Answers given, by model and whether flagged.",
            ["model", "flagged"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "candor_ack_seconds",
            "Time to acknowledge a Slack request, from its arrival to the ack sent.",
            buckets=_ACK_BUCKETS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "candor_first_token_seconds",
            "Time from the question to the first answer token.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.answer_seconds = Histogram(
            "candor_answer_seconds",
            "Time from the question to the finished answer.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "candor_llm_tokens",
            "LLM tokens billed, by model and kind (prompt, cached, completion).",
            ["model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "candor_llm_cost_usd",
            "LLM and embedding spend billed, by model.",
            ["model"],
            registry=r,
        )
        self.refusals = Counter(
            "candor_budget_refusals",
            "Questions refused because a budget was spent.",
            registry=r,
        )
        self.errors = Counter("candor_errors", "Failures, by kind.", ["kind"], registry=r)
        self.jobs = Counter(
            "candor_job_runs",
            "Scheduled job runs, by job and outcome.",
            ["job", "outcome"],
            registry=r,
        )
        self.in_flight = Gauge(
            "candor_answers_in_flight", "Answers being worked on right now.", registry=r
        )

    # --- the API the code paths call (each one line at the call site) -------------------

    def event_received(self, kind: str) -> None:
        self.events.labels(type=kind or "unknown").inc()

    def acked(self, seconds: float) -> None:
        self.ack_seconds.observe(max(0.0, seconds))

    def answer_started(self) -> None:
        self.in_flight.inc()

    def answer_done(
        self,
        *,
        model: str,
        flagged: bool,
        total_seconds: float | None,
        first_token_seconds: float | None = None,
    ) -> None:
        self.in_flight.dec()
        self.answers.labels(model=model, flagged=str(bool(flagged)).lower()).inc()
        if total_seconds is not None:
            self.answer_seconds.observe(total_seconds)
        if first_token_seconds is not None:
            self.first_token_seconds.observe(first_token_seconds)

    def answer_failed(self, kind: str) -> None:
        self.in_flight.dec()
        if kind == "over_budget":
            self.refusals.inc()
        else:
            self.error(kind)

    def error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    def llm_usage(
        self,
        *,
        model: str,
        prompt_tokens: int,
        cached_tokens: int = 0,
        completion_tokens: int = 0,
        cost_micro_usd: int = 0,
    ) -> None:
        self.tokens.labels(model=model, kind="prompt").inc(max(0, prompt_tokens))
        self.tokens.labels(model=model, kind="cached").inc(max(0, cached_tokens))
        self.tokens.labels(model=model, kind="completion").inc(max(0, completion_tokens))
        self.cost.labels(model=model).inc(max(0, cost_micro_usd) / 1_000_000)

    def job_run(self, name: str, ok: bool) -> None:
        self.jobs.labels(job=name, outcome="ok" if ok else "failed").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
