"""Operational metrics in the Prometheus text exposition format (docs/design.md: ``GET /metrics``), with
``prometheus-client``.

- ``hr_http_requests_total{method,route,status}`` and ``hr_http_request_duration_seconds{method,route}``: every
  request, labelled by the **route template** it matched (``/fhir/{rtype}/{rid}``, never the raw path), ``unmatched``
  for a path no route serves (404/405 before routing, a refused oversized body);
- ``hr_ingest_writes_total{type,status}``: resources written (create, update, delete, Bundle entries) by resource type
  and the HTTP status of the write (201 created, 200 updated or unchanged, 204 deleted);
- ``hr_order_checks_total{source,status}``: orders checked by source (``order-select``, ``order-sign``,
  ``operation``) and the rule's outcome (``recognizable``, ``no-prior-result``…), and
  ``hr_reminders_total{source}`` the patient-view reminders issued;
- ``hr_decisions_total{source,outcome,new}``: recognition decisions (``feedback`` or ``operation``; ``recognized`` or
  ``declined``; ``new`` false for a repeat) and ``hr_reminder_feedback_total{outcome}``;
- ``hr_replica_reads_total{on}``: with reads from a standby (``registry.store.replica``), each read transaction and
  each order check's look-ups by where they were answered — ``standby``, or ``primary`` (the standby had not
  replayed the reader's last write, was down or promoted, or refused what the primary then answered).

Every label takes values from a closed set (methods, route templates, status codes, resource types the server holds,
the rule's statuses), so the number of series is bounded whatever clients send; no label carries a patient, client,
organization, identifier or id. Counters are per server process (run Prometheus against each worker, or one worker
per container), like the rate limit.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""Text format 0.0.4, which Prometheus 2 and 3 both scrape (the metric names are plain ASCII)."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry of metrics per application (tests build many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("hr_http_requests", "HTTP requests answered, by route template and status",
                                ["method", "route", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("hr_http_request_duration_seconds", "Time to answer, by route template",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.writes = Counter("hr_ingest_writes", "Resources written, by type and HTTP status of the write",
                              ["type", "status"], registry=r)  # fmt: skip
        self.checks = Counter("hr_order_checks", "Orders checked, by source and the recognition rule's status",
                              ["source", "status"], registry=r)  # fmt: skip
        self.reminders = Counter("hr_reminders", "patient-view reminder cards issued", ["source"], registry=r)
        self.decisions = Counter("hr_decisions", "Recognition decisions recorded", ["source", "outcome", "new"],
                                 registry=r)  # fmt: skip
        self.replica_reads = Counter("hr_replica_reads", "Reads offered to the standby, by where they ran", ["on"],
                                     registry=r)  # fmt: skip
        self.reminder_feedback = Counter("hr_reminder_feedback", "Feedback on patient-view reminders", ["outcome"],
                                         registry=r)  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ---------------------------------------------------------------- what the handlers report
    def wrote(self, resource_type: str, status: int) -> None:
        self.writes.labels(resource_type, str(status)).inc()

    def wrote_bundle(self, response: dict[str, Any]) -> None:
        """Every entry of a transaction/batch response that wrote something (``response.location`` names its type)."""
        for entry in response.get("entry") or []:
            answer = entry.get("response") or {} if isinstance(entry, dict) else {}
            status, location = str(answer.get("status") or ""), str(answer.get("location") or "")
            code = status.split(" ", 1)[0]
            if code in ("200", "201", "204") and location and "/" in location:
                self.wrote(location.split("/", 1)[0], int(code))

    def checked(self, source: str, statuses: list[str]) -> None:
        for status in statuses:
            self.checks.labels(source, status).inc()

    def replica_read(self, where: str) -> None:
        self.replica_reads.labels(where).inc()

    def decided(self, source: str, outcome: str, new: bool) -> None:
        self.decisions.labels(source, outcome, "true" if new else "false").inc()


class MetricsMiddleware:
    """Counts and times every HTTP request by the route template it matched (``scope["route"]`` after routing)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None)
            template = route if isinstance(route, str) else "unmatched"
            method = scope.get("method", "GET")
            method = method if method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS") else "other"
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
