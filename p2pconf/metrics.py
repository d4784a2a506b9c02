"""Prometheus metrics (prometheus-client), served on their own port, never on the public one.

`p2pconf serve --metrics-port 9464` listens on --metrics-host (loopback by default) and
answers GET /metrics in the Prometheus text format. Every family is named `p2pconf_*`
and carries the `process` label (host:pid), so several server processes can be told apart.
Each app has a registry of its own (tests build many apps in one process).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PROCESS = f"{socket.gethostname()}:{os.getpid()}"


class _HubCollector:
    """Connections, rooms and participants, read from the hub at scrape time."""

    def __init__(self, hub):
        self.hub = hub

    def collect(self):
        for name, doc, value in (
            ("p2pconf_connections", "Open signaling WebSockets", len(self.hub.sessions)),
            ("p2pconf_rooms", "Rooms with at least one participant", len(self.hub.rooms)),
            ("p2pconf_participants", "Participants in rooms", sum(len(r.members) for r in self.hub.rooms.values())),
        ):
            family = GaugeMetricFamily(name, doc, labels=["process"])
            family.add_metric([PROCESS], value)
            yield family


@dataclass
class Metrics:
    """The app's metric families; call sites count with `.labels(...).inc()` / `.observe()`."""

    registry: CollectorRegistry
    messages: Counter
    errors: Counter
    join_seconds: Histogram
    search_seconds: Histogram
    rings: Counter
    sign_ins: Counter
    resumes: Counter

    @classmethod
    def for_hub(cls, hub) -> "Metrics":
        registry = CollectorRegistry(auto_describe=True)
        registry.register(_HubCollector(hub))

        def counter(name, doc, label):
            return Counter(name, doc, ["process", label], registry=registry)

        def histogram(name, doc, buckets):
            return Histogram(name, doc, ["process"], registry=registry, buckets=buckets)

        fast = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
        return cls(
            registry=registry,
            messages=counter("p2pconf_messages", "Signaling messages received, by type", "type"),
            errors=counter("p2pconf_errors", "Errors sent to clients, by code", "code"),
            join_seconds=histogram("p2pconf_join_seconds", "From a join received to joined sent", fast),
            search_seconds=histogram("p2pconf_directory_search_seconds", "Directory searches (GET /api/users)",
                                     fast),
            rings=counter("p2pconf_rings", "Rings ended, by outcome", "outcome"),
            sign_ins=counter("p2pconf_sign_ins", "Password sign-ins, by outcome", "outcome"),
            resumes=counter("p2pconf_resumes", "Sessions whose socket broke: resumed, or expired after the grace "
                                               "period", "outcome"),
        )

    def scrape(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: Metrics) -> web.Application:
    """The separate application that serves /metrics."""
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app
