"""Bring the embedded platform up and down: start in order, wait for health, record, stop by PID."""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tagwatch.errors import ConfigError, StackError, StackNotRunningError, TagwatchError
from tagwatch.settings import Settings
import tagwatch.stack.process as process
from tagwatch.stack.cpus import cpu_plan, pinned_command
from tagwatch.stack.ports import StackPorts, ensure_ports_free, is_port_free
from tagwatch.stack.seaweedfs import SeaweedFS
from tagwatch.stack.service import EmbeddedService
from tagwatch.stack.state import ServiceState, StackState, read_state, write_state
from tagwatch.stack.tansu import Tansu
from tagwatch.stack.triton import TritonService

log = logging.getLogger(__name__)

# Start order; stop runs it backwards. Tansu stores to SeaweedFS, so S3 comes first; Triton loads its model from S3
# and starts only when the registry has a `production` alias (an optional service).
SERVICES: list[type[EmbeddedService]] = [SeaweedFS, Tansu, TritonService]

Report = Callable[[str], None]


@dataclass
class UpResult:
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # optional service -> why it was not started
    # optional services that were due to start and failed (also in ``skipped``, with "failed to start: ...")
    failed: dict[str, StackError] = field(default_factory=dict)
    orphans_stopped: dict[str, str] = field(default_factory=dict)  # dead leader's group members stopped first
    seconds: float = 0.0
    state: StackState | None = None

    def raise_for_failures(self) -> None:
        """Raise the first failure as a StackError (exit 4). Skipping Triton for want of a model is no failure."""
        for error in self.failed.values():
            raise error


@dataclass(frozen=True)
class RestartResult:
    name: str
    stopped: str  # process.stop's outcome for the old process ('stopped', 'killed', 'not running', ...)
    pid: int
    seconds: float
    endpoint: str


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    endpoint: str
    version: str
    uptime_s: float | None
    log_file: Path
    optional: bool = False
    orphans_stopped: str | None = None  # the leader was dead and `status` stopped what was left of its group
    cpus: list[int] | None = None  # the CPUs it is pinned to (stack/cpus.py); None: all


class Stack:
    """The embedded stack of one state dir. Safe against concurrent `up`/`down` (a file lock)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = settings.paths

    # -- public operations -------------------------------------------------------------------------
    def up(self, report: Report = lambda _msg: None) -> UpResult:
        t0 = time.monotonic()
        self._ensure_state_dir()
        result = UpResult()
        with self._lock():
            state = read_state(self.paths.stack_file)
            result.orphans_stopped = self._clear_dead(state, report)  # frees the ports a dead leader's group holds
            ports = self._choose_ports(state)
            state = StackState(host=self.settings.stack.host, ports=ports, services=self._alive(state))
            services = [cls(self.settings, ports) for cls in SERVICES]
            to_start = [s for s in services if s.name not in state.services]
            self._preflight(to_start)
            started_now: list[EmbeddedService] = []
            try:
                for service in services:
                    if service.name in state.services:
                        report(f"{service.name} already running (pid {state.services[service.name].process.pid})")
                        self._wait_healthy(service, state.services[service.name].process)
                        result.already_running.append(service.name)
                        continue
                    if service.optional:
                        why_not = service.skip_reason()
                        if why_not:
                            report(f"{service.name} not started: {why_not}")
                            result.skipped[service.name] = why_not
                            continue
                        try:
                            self._start_one(service, state, started_now, result, report)
                        except TagwatchError as error:
                            # An optional service that cannot start (port taken, model refused) must not take
                            # S3 and Kafka down with it: stop it, say why, keep the rest.
                            if service in started_now:
                                started_now.remove(service)
                                self._stop_one(service, state)
                                write_state(self.paths.stack_file, state)
                            why = f"failed to start: {error.message}" + (f" ({error.hint})" if error.hint else "")
                            report(f"{service.name} {why}")
                            result.skipped[service.name] = why
                            result.failed[service.name] = StackError(
                                f"{service.name} failed to start: {error.message}",
                                hint=(f"{error.hint}; " if error.hint else "") + f"read {service.log_file} "
                                     f"(`tagwatch stack logs {service.name}`); the other services are up",
                            )
                        continue
                    self._start_one(service, state, started_now, result, report)
            except BaseException:
                # Leave nothing half-up: stop what this call started, keep what was already running.
                for service in reversed(started_now):
                    self._stop_one(service, state)
                write_state(self.paths.stack_file, state)
                raise
            write_state(self.paths.stack_file, state)
        result.seconds = time.monotonic() - t0
        result.state = state
        return result

    def _start_one(self, service: EmbeddedService, state: StackState, started_now: list[EmbeddedService],
                   result: UpResult, report: Report) -> None:
        if service.optional:  # required services' ports were checked before anything started
            ensure_ports_free(self.settings.stack.host, service.bound_ports(), service.name)
        report(f"starting {service.name} on {service.endpoint()}")
        cpus = self._cpus_of(service)
        record = process.spawn(pinned_command(service.command(), cpus), env=service.env(), log_file=service.log_file,
                               cwd=self.paths.state_dir)
        started_now.append(service)
        state.services[service.name] = ServiceState(
            name=service.name,
            process=record,
            version=service.version(),
            started_at=datetime.now(timezone.utc),
            endpoint=service.endpoint(),
            cpus=list(cpus) if cpus else None,
        )
        write_state(self.paths.stack_file, state)
        ready_in = self._wait_healthy(service, record)
        service.prepare()
        report(f"{service.name} ready in {ready_in:.1f}s")
        result.started.append(service.name)

    def _cpus_of(self, service: EmbeddedService) -> tuple[int, ...] | None:
        """The model server on CPUs of its own, the other services on the rest (stack/cpus.py); None: all."""
        plan = cpu_plan(self.settings.stack.model_cpus)
        if plan is None:
            return None
        return plan.model if service.runs_model else plan.rest

    def down(self, report: Report = lambda _msg: None) -> dict[str, str]:
        """Stop every recorded process (gracefully, then forcibly). Returns name -> outcome."""
        outcomes: dict[str, str] = {}
        if not self.paths.stack_file.exists():
            return outcomes
        with self._lock():
            state = read_state(self.paths.stack_file)
            if state is None:
                return outcomes
            services = {cls.name: cls(self.settings, state.ports) for cls in SERVICES}
            for name in reversed(list(state.services)):
                service = services.get(name)
                outcome = self._stop_one(service, state) if service else self._stop_record(name, state)
                outcomes[name] = outcome
                report(f"{name}: {outcome}")
            write_state(self.paths.stack_file, state)
        return outcomes

    def restart(self, name: str, *, kill: bool = False, report: Report = lambda _msg: None) -> RestartResult:
        """Stop one service (its whole process group; SIGKILL at once with ``kill``) and start it again on the
        same ports; wait until it is healthy; update the state file. The other services keep running.

        Raises StackError (exit 4) if the stack has no state yet, the service does not come back healthy, or an
        optional service has nothing to serve (Triton without a `production` model).
        """
        classes = {cls.name: cls for cls in SERVICES}
        if name not in classes:
            raise StackError(f"no stack service named {name!r}", hint=f"pick one of: {', '.join(classes)}")
        t0 = time.monotonic()
        with self._lock():
            state = read_state(self.paths.stack_file)
            if state is None:
                raise StackNotRunningError("the embedded stack has no state file yet: nothing to restart",
                                           hint="start it with `tagwatch stack up`")
            service = classes[name](self.settings, state.ports)
            self._clear_dead(state, report)
            stopped = self._stop_one(service, state, kill=kill) if name in state.services else "not running"
            write_state(self.paths.stack_file, state)
            report(f"{name}: {stopped}")
            if service.optional and (why_not := service.skip_reason()):
                raise StackError(f"{name} was stopped and not started again: {why_not}",
                                 hint=f"`tagwatch stack logs {name}`")
            bound = service.bound_ports()
            host = self.settings.stack.host
            process.wait_for(lambda: all(is_port_free(host, port) for port in bound.values()), timeout_s=10)
            ensure_ports_free(host, bound, name)
            started: list[EmbeddedService] = []
            try:
                self._start_one(service, state, started, UpResult(), report)
            except BaseException:
                for failed in started:
                    self._stop_one(failed, state)
                write_state(self.paths.stack_file, state)
                raise
            write_state(self.paths.stack_file, state)
            record = state.services[name]
        return RestartResult(name=name, stopped=stopped, pid=record.process.pid, seconds=time.monotonic() - t0,
                             endpoint=record.endpoint)

    def status(self) -> list[ServiceStatus]:
        """One row per service. A recorded service whose leader died but whose group lives on (e.g. tritonserver
        after its python parent was SIGKILLed) has that group stopped here, unless up/down/restart holds the lock."""
        orphans: dict[str, str] = {}
        if self.paths.stack_file.exists():
            with self._lock(blocking=False) as locked:
                state = read_state(self.paths.stack_file) if locked else None
                if state is not None and (orphans := self._clear_dead(state)):
                    write_state(self.paths.stack_file, state)
        state = read_state(self.paths.stack_file)
        ports = state.ports if state else StackPorts.from_settings(self.settings.stack, self.settings.triton)
        rows = []
        for cls in SERVICES:
            service = cls(self.settings, ports)
            recorded = state.services.get(service.name) if state else None
            proc = process.find(recorded.process) if recorded else None
            running = proc is not None
            rows.append(
                ServiceStatus(
                    name=service.name,
                    running=running,
                    healthy=running and service.is_healthy(),
                    pid=recorded.process.pid if running and recorded else None,
                    endpoint=service.endpoint(),
                    version=recorded.version if recorded else "-",
                    uptime_s=time.time() - recorded.process.create_time if running and recorded else None,
                    log_file=service.log_file,
                    optional=service.optional,
                    orphans_stopped=orphans.get(service.name),
                    cpus=recorded.cpus if running and recorded else None,
                )
            )
        return rows

    def log_files(self) -> dict[str, Path]:
        ports = StackPorts.from_settings(self.settings.stack, self.settings.triton)
        return {cls.name: cls(self.settings, ports).log_file for cls in SERVICES}

    def is_running(self) -> bool:
        return any(row.running for row in self.status())

    # -- helpers -------------------------------------------------------------------------------------
    def _choose_ports(self, state: StackState | None) -> StackPorts:
        host = self.settings.stack.host
        if state and self._alive(state):
            return state.ports  # running services keep their ports
        if self.settings.stack.free_ports:
            # Reuse this state dir's last ports if free (SeaweedFS names its master dir by port).
            if state and all(p is not None and is_port_free(host, p) for p in state.ports.model_dump().values()):
                return state.ports
            return StackPorts.pick_free(host)
        return StackPorts.from_settings(self.settings.stack, self.settings.triton)

    def _alive(self, state: StackState | None) -> dict[str, ServiceState]:
        if state is None:
            return {}
        return {name: svc for name, svc in state.services.items() if process.is_alive(svc.process)}

    def _preflight(self, services: list[EmbeddedService]) -> None:
        """Fail before starting anything: missing binaries, taken ports."""
        for service in services:
            service.binary()
        for service in services:
            if not service.optional:  # an optional service's ports are checked only if it is going to start
                ensure_ports_free(self.settings.stack.host, service.bound_ports(), service.name)

    def _wait_healthy(self, service: EmbeddedService, record: process.ProcessRecord) -> float:
        t0 = time.monotonic()
        timeout = self.settings.stack.start_timeout_s
        exited = False

        def ready() -> bool:
            nonlocal exited
            if not process.is_alive(record):
                exited = True
                return True
            return service.is_healthy()

        ok = process.wait_for(ready, timeout_s=timeout, interval_s=0.2)
        if ok and not exited:
            return time.monotonic() - t0
        last = process.tail(service.log_file, 5)
        what = "exited during start-up" if exited else f"did not become healthy within {timeout:.0f}s"
        detail = f"; last log line: {last[-1].strip()[:200]}" if last else ""
        raise StackError(
            f"{service.name} {what}{detail}",
            hint=f"read {service.log_file} (`tagwatch stack logs {service.name}`)",
        )

    def _stop_one(self, service: EmbeddedService, state: StackState, *, kill: bool = False) -> str:
        outcome = self._stop_record(service.name, state, kill=kill)
        service.after_stop()
        return outcome

    def _stop_record(self, name: str, state: StackState, *, kill: bool = False) -> str:
        recorded = state.services.pop(name, None)
        if recorded is None:
            return "not running"
        return process.stop(recorded.process, timeout_s=self.settings.stack.stop_timeout_s, kill=kill)

    def _clear_dead(self, state: StackState | None, report: Report = lambda _msg: None) -> dict[str, str]:
        """Forget services whose leader process is gone, first stopping what is left of their process group.
        Returns name -> outcome for those that had survivors. The caller holds the lock and writes the state."""
        if state is None:
            return {}
        cleared: dict[str, str] = {}
        for name in [n for n, svc in state.services.items() if not process.is_alive(svc.process)]:
            cls = next((c for c in SERVICES if c.name == name), None)
            service = cls(self.settings, state.ports) if cls else None
            pid = state.services[name].process.pid
            outcome = self._stop_one(service, state) if service else self._stop_record(name, state)
            if outcome != "not running":
                report(f"{name}: pid {pid} had died; {outcome} (what was left of its process group)")
                cleared[name] = outcome
        return cleared

    def _ensure_state_dir(self) -> None:
        state_dir = self.paths.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self.paths.logs_dir.mkdir(parents=True, exist_ok=True)
            probe = state_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise ConfigError(
                f"state dir {state_dir} is not writable ({error.strerror or type(error).__name__})",
                hint="set TAGWATCH_PATHS__STATE_DIR (or --state-dir) to a directory you can write",
            ) from error

    @contextmanager
    def _lock(self, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the state dir's lock. ``blocking=False`` yields False at once if another process holds it."""
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.paths.state_dir / "stack.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
