"""`vigie lab up`: every lab service an estate needs, the faults, and a clean stop.

The supervisor builds the services the estate points at (lab.services), starts them, serves the
control socket (lab.control), prints what listens where and the environment the estate reads, then
waits. SIGINT, SIGTERM or SIGHUP stop it: the services stop in reverse order (children get SIGTERM,
then SIGKILL, as a process group), the runtime directory goes. A child that exits on its own stops
the whole lab with a non-zero status, its log tail printed: a lab half up would lie to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from lab.control import RuntimeDir
from lab.estate import EstateError
from lab.services import TARGET_USAGE, Context, Fault, FaultError, FaultKind, LabService, ServiceRegistry

EXIT_FAILED = 1
EXIT_ESTATE = 2
LISTED_DEVICES = 12  # more are only counted: the 173 of vsgp would bury the rest of the listing


class Supervisor:
    def __init__(
        self,
        context: Context,
        registry: ServiceRegistry,
        runtime: RuntimeDir,
        *,
        clock: Callable[[], float] = time.time,
        out: TextIO = sys.stdout,
    ) -> None:
        self.context = context
        self.registry = registry
        self.runtime = runtime
        self.clock = clock
        self.out = out
        self.services: dict[str, LabService] = {}
        self.faults: dict[tuple[str, str, tuple[str, ...]], Fault] = {}
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # one fault change at a time: each hands a service its full list

    # -- life ---------------------------------------------------------------------------------

    async def run(self) -> int:
        try:
            services = [s for cls in self.registry.services.values() if (s := cls.for_estate(self.context))]
        except EstateError as exc:
            self._say(f"vigie lab: {self.context.estate.name}:\n{exc}")
            return EXIT_ESTATE
        if not services:
            self._say(f"vigie lab: {self.context.estate.name} points at nothing the lab plays")
            return EXIT_ESTATE
        for note in self.runtime.claim():
            self._say(f"vigie lab: {note}")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._stop.set)
        server = None
        status = 0
        try:
            starting = asyncio.create_task(self._start(services))
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():  # stopped while starting
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            else:
                stopping.cancel()
                starting.result()
                server = await asyncio.start_unix_server(self._serve_control, path=str(self.runtime.control_path))
                self.runtime.write_info(self.info())
                self._print_listing()
                status = await self._watch()
        except EstateError as exc:
            self._say(f"vigie lab: {exc}")
            status = EXIT_ESTATE
        finally:
            if server is not None:
                server.close()
            for service in reversed(list(self.services.values())):
                try:
                    await service.stop()
                except Exception as exc:  # noqa: BLE001 - stop every other service whatever this one did
                    self._say(f"vigie lab: stopping {service.name}: {exc}")
            self.runtime.release()
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        if status == 0:
            self._say("vigie lab: stopped")
        return status

    async def _start(self, services: list[LabService]) -> None:
        for service in services:
            self.services[service.name] = service  # before start: a half-started service is stopped too
            await service.start()

    async def _watch(self) -> int:
        """Until a stop signal (0) or a child's exit (EXIT_FAILED)."""
        exits = {
            asyncio.create_task(child.exited()): (service, child)
            for service in self.services.values()
            for child in service.children()
        }
        stopping = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait({stopping, *exits}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopping, *exits):
            task.cancel()
        for task in done:
            if task in exits:
                service, child = exits[task]
                self._say(
                    f"vigie lab: {service.name}: {child.name} exited with {task.result()}; stopping the lab\n"
                    f"{child.log_tail()}"
                )
                return EXIT_FAILED
        return 0

    # -- faults -------------------------------------------------------------------------------

    async def fault(self, target: str, kind_name: str, args: list[str]) -> tuple[Fault, str]:
        service, kind = self._service_of(kind_name)
        fault = Fault(kind_name, self._resolve(kind, target), tuple(args), self.clock())
        async with self._lock:
            effect = service.check_fault(fault)
            key = (fault.target, fault.kind, fault.args)
            before = self.faults.get(key)
            self.faults[key] = fault
            try:
                await service.apply_faults(self._faults_of(service))
            except Exception:
                if before is None:
                    del self.faults[key]
                else:
                    self.faults[key] = before
                raise
        return fault, effect

    async def clear(self, target: str, kind_name: str | None) -> list[Fault]:
        async with self._lock:
            gone = [
                f for f in self.faults.values() if f.target == target and (kind_name is None or f.kind == kind_name)
            ]
            if not gone:
                what = f"{kind_name} fault" if kind_name else "fault"
                raise FaultError(
                    f"no {what} on {target}; active: {', '.join(map(str, self.faults.values())) or 'none'}"
                )
            for fault in gone:
                del self.faults[(fault.target, fault.kind, fault.args)]
            for name in {self.registry.kind(f.kind)[0].name for f in gone}:
                service = self.services[name]
                await service.apply_faults(self._faults_of(service))
        return gone

    def _service_of(self, kind_name: str) -> tuple[LabService, FaultKind]:
        cls, kind = self.registry.kind(kind_name)
        service = self.services.get(cls.name)
        if service is None:
            raise FaultError(
                f"{kind_name}: this lab runs no {cls.name} service ({self.context.estate.name} needs none)"
            )
        return service, kind

    def _resolve(self, kind: FaultKind, target: str) -> str:
        estate = self.context.estate
        try:
            if kind.target == "device":
                return estate.device(target).key
            if kind.target == "site":
                estate.site(target)
                return target
            return estate.client(target).name
        except EstateError as exc:
            raise FaultError(f"{kind.name} takes {TARGET_USAGE[kind.target]}: {exc}") from None

    def _faults_of(self, service: LabService) -> list[Fault]:
        return [f for f in self.faults.values() if self.registry.kind(f.kind)[0].name == service.name]

    # -- control socket -----------------------------------------------------------------------

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            answer = await self._answer(request)
        except (FaultError, EstateError, ValueError, KeyError, TypeError) as exc:
            answer = {"ok": False, "error": str(exc)}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
        writer.close()

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "fault":
            fault, effect = await self.fault(request["target"], request["kind"], list(request.get("args", [])))
            self._say(f"vigie lab: fault {fault}: {effect}")
            return {"ok": True, "fault": str(fault), "effect": effect}
        if op == "clear":
            gone = await self.clear(request["target"], request.get("kind"))
            for fault in gone:
                self._say(f"vigie lab: cleared {fault}")
            return {"ok": True, "cleared": [str(f) for f in gone]}
        if op == "status":
            return {"ok": True, **self.info(), "status": [line for s in self.services.values() for line in s.status()]}
        raise ValueError(f"unknown op {op!r}")

    # -- what is where ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "estate": self.context.estate.name,
            "files": [str(p) for p in self.context.estate.paths],
            "runtime_dir": str(self.runtime.path),
            "endpoints": {name: s.endpoints() for name, s in self.services.items()},
            "devices": {key: where for s in self.services.values() for key, where in s.devices()},
            "environment": self.environment(),
            "faults": [str(f) for f in self.faults.values()],
        }

    def environment(self) -> dict[str, dict[str, str | None]]:
        """Each variable the estate reads: the value the agent must see and who decides it."""
        answered = {
            name: (service.name, value)
            for service in self.services.values()
            for name, value in service.environment().items()
        }
        out: dict[str, dict[str, str | None]] = {}
        for name, variable in sorted(self.context.estate.variables.items()):
            current = variable.value(self.context.environ)
            if name in answered:
                service, value = answered[name]
                out[name] = {"value": value, "service": service, "default": variable.default}
            else:
                out[name] = {"value": current, "service": None, "default": variable.default}
        return out

    def _print_listing(self) -> None:
        estate = self.context.estate
        lines = [
            f"vigie lab: {estate.name} ({', '.join(map(str, estate.paths))})",
            f"  pid {os.getpid()}, runtime {self.runtime.path}",
            "listening:",
        ]
        for name, service in self.services.items():
            lines += [f"  {name:<6} {endpoint}" for endpoint in service.endpoints()]
        played = {key: where for s in self.services.values() for key, where in s.devices()}
        lines.append(f"devices ({len(played)}):")
        shown = list(played.items()) if len(played) <= LISTED_DEVICES else list(played.items())[:3]
        lines += [f"  {key:<40} {where}" for key, where in shown]
        if len(shown) < len(played):
            lines.append(f"  ... and {len(played) - len(shown)} more: vigie lab status --devices")
        unplayed = [f"{d.key} ({', '.join(d.collectors)})" for d in estate.devices() if d.key not in played]
        if unplayed:
            lines.append(f"not played by any lab service yet ({len(unplayed)}): {', '.join(unplayed)}")
        lines.append("environment the estate reads (the agent must see the same values):")
        for name, entry in self.environment().items():
            if entry["service"] is None:
                lines.append(f"  {name}: not the lab's; the agent reads {entry['value']!r}")
                continue
            note = (
                "the estate's default" if entry["value"] == entry["default"] else "NOT the estate's default: export it"
            )
            lines.append(f"  export {name}={entry['value']}   # {entry['service']}, {note}")
        examples = [line for s in self.services.values() for line in s.examples()]
        if examples:
            lines.append("try:")
            lines += [f"  {line}" for line in examples]
            lines.append("  vigie lab status; vigie lab fault --help   (every fault kind)")
        lines.append("ready: Ctrl-C or SIGTERM stops the lab")
        self._say("\n".join(lines))

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)
