"""Runs the configured service plugins (``agent.services.<name>``) beside the polls.

A service that fails to start is logged and left out: the polls and the other services go on. A
stop is bounded (``STOP_TIMEOUT_S`` each), so a stuck service cannot hold the agent's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from agent.api import PluginSpec, Service, ServiceContext
from agent.api.services import STOP_TIMEOUT_S

log = logging.getLogger(__name__)


class StateView:
    """Read-only access to the agent's state for services: rollups and alerts."""

    def __init__(self, latest: Callable[..., list[Any]], alerts: Callable[..., list[Any]]) -> None:
        self._latest = latest
        self._alerts = alerts

    def latest(self, measurement: str, tags: Mapping[str, str] | None = None) -> list[Any]:
        return self._latest(measurement, tags)

    def alerts(self, states: Sequence[str] | None = None, client: str | None = None) -> list[Any]:
        return self._alerts(states, client)


class ServiceHost:
    def __init__(self, services: Sequence[tuple[PluginSpec, BaseModel]]) -> None:
        self._configured = list(services)
        self._running: list[tuple[str, Service]] = []
        self._periodic: set[asyncio.Task[None]] = set()

    def every(self, interval_s: float, job: Callable[[], Awaitable[None]], name: str) -> None:
        """Run ``job`` every ``interval_s`` until the host stops; a failing run is logged."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await job()
                except Exception:  # noqa: BLE001 - one failed run must not end the schedule
                    log.exception("service job %s failed", name)

        task = asyncio.get_running_loop().create_task(loop(), name=f"vigie-service-{name}")
        self._periodic.add(task)
        task.add_done_callback(self._periodic.discard)

    async def start(self, context: ServiceContext) -> None:
        for spec, options in self._configured:
            try:
                service = spec.factory(options)
                await service.start(context)
            except Exception:  # noqa: BLE001 - a broken service must not stop the agent
                log.exception("service %s did not start; the agent runs without it", spec.name)
                continue
            self._running.append((spec.name, service))
            log.info("service %s started", spec.name)

    async def stop(self) -> None:
        for task in list(self._periodic):
            task.cancel()
        for name, service in reversed(self._running):
            try:
                await asyncio.wait_for(service.stop(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("service %s did not stop within %g s; abandoned", name, STOP_TIMEOUT_S)
            except Exception:  # noqa: BLE001
                log.exception("service %s failed while stopping", name)
        self._running.clear()
