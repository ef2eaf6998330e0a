"""Probe workflows for the migrate SDK tests (importable module, so the workflow sandbox can load it).

``ProbeV1`` and ``ProbeV2`` share the workflow type ``migrate-probe``, as two deployed versions would; V2 keeps
its state in another shape and upgrades V1's with ``v1_to_v2``; ``ProbeV1Back`` is V1 that declares it restores V2's
state (``v2_to_v1``). ``PlainProbe`` does not use the SDK.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow

from diachronic.migrate import Continuation, MigratableWorkflow, MigrationEnvelope

PROBE_TYPE = "migrate-probe"
V1_STATE = "probe/1"
V2_STATE = "probe/2"


class ProbeStart(BaseModel):
    """What a test asks the probe to do: wait until now+wait_s, run a named timer, block in an activity."""

    wait_s: float | None = None
    timer_s: float | None = None
    block: bool = False
    note: str = ""


class ProbeResult(BaseModel):
    version: str
    state: dict[str, object]


class ProbeV1State(BaseModel):
    count: int = 0
    notes: list[str] = Field(default_factory=list)
    wake_at: datetime | None = None
    woke_at: datetime | None = None
    timer_s: float | None = None
    timer_woke_at: datetime | None = None
    block: bool = False
    blocked_result: str | None = None
    finished: bool = False


class ProbeV2State(BaseModel):
    total: int
    notes: list[str]
    upgraded_from: str | None = None
    wake_at: datetime | None = None
    woke_at: datetime | None = None
    timer_s: float | None = None
    timer_woke_at: datetime | None = None
    block: bool = False
    blocked_result: str | None = None
    finished: bool = False


def v1_to_v2(c: Continuation) -> ProbeV2State:
    """Rename ``count`` to ``total``; refuse a state whose notes say ``reject`` (to test loud failures)."""
    old = c.state_as(ProbeV1State)
    if "reject" in old.notes:
        raise ValueError("notes contain 'reject'")
    return ProbeV2State(
        total=old.count,
        notes=old.notes,
        upgraded_from=c.state_version,
        **old.model_dump(include={"wake_at", "woke_at", "timer_s", "timer_woke_at", "block", "blocked_result"}),
        finished=old.finished,
    )


@workflow.defn(name=PROBE_TYPE)
class ProbeV1(MigratableWorkflow[ProbeV1State]):
    @workflow.init
    def __init__(self, arg: MigrationEnvelope | ProbeStart) -> None:
        self.init_state(arg, state_type=ProbeV1State, state_version=V1_STATE, initial_state=self.initial_state)

    @workflow.run
    async def run(self, arg: MigrationEnvelope | ProbeStart) -> ProbeResult:
        return await self.run_migratable(self.main)

    def initial_state(self, start: ProbeStart) -> ProbeV1State:
        now = workflow.now()
        return ProbeV1State(
            notes=[start.note] if start.note else [],
            wake_at=now + timedelta(seconds=start.wait_s) if start.wait_s else None,
            timer_s=start.timer_s,
            block=start.block,
        )

    async def main(self) -> ProbeResult:
        s = self.state
        if s.block and s.blocked_result is None:
            async with self.no_migrate():
                s.blocked_result = await workflow.execute_activity(
                    "probe_block", workflow.info().workflow_id, start_to_close_timeout=timedelta(seconds=60)
                )
        if s.wake_at and not s.woke_at:
            await self.sleep_until(s.wake_at, name="wake")
            s.woke_at = workflow.now()
        if s.timer_s and not s.timer_woke_at:
            await self.timer("reminder", timedelta(seconds=s.timer_s))
            s.timer_woke_at = workflow.now()
        await workflow.wait_condition(lambda: self.state.finished)
        return ProbeResult(version="v1", state=self.state.model_dump(mode="json"))

    @workflow.signal
    def add(self, n: int) -> None:
        self.state.count += n

    @workflow.signal
    async def slow_add(self, n: int) -> None:
        """An async handler: migration must wait until it has finished."""
        await workflow.sleep(timedelta(seconds=0.3))
        self.state.count += n

    @workflow.signal
    def note(self, text: str) -> None:
        self.state.notes.append(text)

    @workflow.signal
    def checkpoint(self) -> None:
        self.request_continue_as_new()

    @workflow.signal
    def finish(self) -> None:
        self.state.finished = True

    @workflow.query
    def version(self) -> str:
        return "v1"


@workflow.defn(name=PROBE_TYPE)
class ProbeV2(MigratableWorkflow[ProbeV2State]):
    @workflow.init
    def __init__(self, arg: MigrationEnvelope | ProbeStart) -> None:
        self.init_state(
            arg,
            state_type=ProbeV2State,
            state_version=V2_STATE,
            initial_state=lambda start: ProbeV2State(total=0, notes=[start.note]),
            transform=v1_to_v2,
        )

    @workflow.run
    async def run(self, arg: MigrationEnvelope | ProbeStart) -> ProbeResult:
        return await self.run_migratable(self.main)

    async def main(self) -> ProbeResult:
        s = self.state
        if s.wake_at and not s.woke_at:
            await self.sleep_until(s.wake_at, name="wake")
            s.woke_at = workflow.now()
        if s.timer_s and not s.timer_woke_at:
            # A different duration than V1's: the carried deadline must win.
            await self.timer("reminder", timedelta(days=365))
            s.timer_woke_at = workflow.now()
        await workflow.wait_condition(lambda: self.state.finished)
        return ProbeResult(version="v2", state=self.state.model_dump(mode="json"))

    @workflow.signal
    def add(self, n: int) -> None:
        self.state.total += n

    @workflow.signal
    def note(self, text: str) -> None:
        self.state.notes.append(text)

    @workflow.signal
    def finish(self) -> None:
        self.state.finished = True

    @workflow.query
    def version(self) -> str:
        return "v2"


def v2_to_v1(c: Continuation) -> ProbeV1State:
    """The transform in reverse: ``total`` back to ``count`` (declared with ``accepts``, so a roll-back may move a
    V2 workflow back here)."""
    new = c.state_as(ProbeV2State)
    return ProbeV1State(
        count=new.total,
        notes=new.notes,
        **new.model_dump(include={"wake_at", "woke_at", "timer_s", "timer_woke_at", "block", "blocked_result"}),
        finished=new.finished,
    )


@workflow.defn(name=PROBE_TYPE)
class ProbeV1Back(ProbeV1):
    """V1 shipped again with a way back: it restores V2's state too."""

    @workflow.init
    def __init__(self, arg: MigrationEnvelope | ProbeStart) -> None:
        self.init_state(
            arg,
            state_type=ProbeV1State,
            state_version=V1_STATE,
            initial_state=self.initial_state,
            transform=v2_to_v1,
            accepts=(V2_STATE,),
        )

    @workflow.run
    async def run(self, arg: MigrationEnvelope | ProbeStart) -> ProbeResult:
        return await self.run_migratable(self.main)


@workflow.defn(name="migrate-plain")
class PlainProbe:
    """Does not use the SDK: the migrate signal must not affect it."""

    def __init__(self) -> None:
        self.finished = False
        self.pings = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.finished)
        return self.pings

    @workflow.signal
    def ping(self) -> None:
        self.pings += 1

    @workflow.signal
    def finish(self) -> None:
        self.finished = True
