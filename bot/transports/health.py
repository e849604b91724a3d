"""The health and metrics endpoint (METRICS_PORT): /healthz, /readyz and Prometheus /metrics.

/healthz answers while the process's event loop runs; /readyz only when the model is loaded (it is,
once the server starts) and Redis answers, so an orchestrator stops routing to a replica that cannot
keep history; /metrics is the Prometheus text format.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import tornado.httpserver
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.metrics import Metrics

__all__ = ["HealthServer"]

log = logging.getLogger(__name__)


class _Healthz(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok\n")


class _Readyz(tornado.web.RequestHandler):
    def initialize(self, ready: Callable[[], Awaitable[bool]]) -> None:
        self._ready = ready

    async def get(self) -> None:
        if await self._ready():
            self.write("ready\n")
        else:
            self.set_status(503)
            self.write("not ready: Redis does not answer\n")


class _Metrics(tornado.web.RequestHandler):
    def initialize(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(self._metrics.exposition())


class HealthServer:
    def __init__(
        self, metrics: Metrics, ready: Callable[[], Awaitable[bool]], *, listen: str, port: int
    ) -> None:
        app = tornado.web.Application(
            [
                ("/healthz", _Healthz),
                ("/readyz", _Readyz, {"ready": ready}),
                ("/metrics", _Metrics, {"metrics": metrics}),
            ],
            log_function=lambda _handler: None,  # probes every few seconds would flood the log
        )
        self._server = tornado.httpserver.HTTPServer(app)
        self._listen, self._port = listen, port

    def start(self) -> None:
        self._server.listen(self._port, address=self._listen)
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", self._listen, self._port)

    async def stop(self) -> None:
        self._server.stop()
        await self._server.close_all_connections()
