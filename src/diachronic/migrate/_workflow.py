"""``MigratableWorkflow``: the base class a workflow subclasses to obey ``diachronic.v1.migrate``.

How a migration runs (all inside the workflow, deterministic):

1. the signal handler only records the target task queue (bad payloads are logged and ignored);
2. ``init_state`` (in ``@workflow.init``) restores or creates the state; ``run_migratable`` runs the author's
   ``main`` coroutine as a task and waits until either ``main`` returns, or a migration is pending, no
   ``no_migrate`` section is open and every signal/update handler has finished;
3. it then cancels ``main`` (which is, at that moment, blocked at an await outside any ``no_migrate``
   section), waits for it to unwind, and continues-as-new onto the target queue with the same workflow id and
   type, passing the state and the pending named timers in a :class:`MigrationEnvelope`;
4. the next run (new code) restores the state: as is when its state version matches, else through the
   author's transform; a state that cannot be restored fails the workflow with a non-retryable error that
   carries the envelope, so state is never dropped silently.

Nothing here is global: a workflow that does not subclass ``MigratableWorkflow`` is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, NoReturn, TypeVar

from pydantic import TypeAdapter, ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

from diachronic.migrate._protocol import (
    CONTINUATION_KEY,
    MIGRATE_SIGNAL,
    SNAPSHOT_QUERY,
    Continuation,
    MigrationEnvelope,
    Snapshot,
    as_utc,
    parse_migrate_args,
)

__all__ = ["STATE_REJECTED_ERROR", "MigratableWorkflow"]

StateT = TypeVar("StateT")
InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT")

STATE_REJECTED_ERROR = "MigrationStateRejected"
"""``ApplicationError.type`` when a run cannot restore the state it was handed."""


@dataclass
class _Runtime:
    """Per-instance bookkeeping, created lazily so subclasses need not call ``super().__init__()``."""

    target: str | None = None
    state: Any = None
    has_state: bool = False
    restore_error: ApplicationError | None = None
    no_migrate_depth: int = 0
    timers: dict[str, datetime] = field(default_factory=dict)
    state_version: str | None = None
    accepts: tuple[str, ...] = ()
    adapter: TypeAdapter[Any] | None = None
    came_from: Continuation | None = None
    auto_continue_as_new: bool = True


class MigratableWorkflow(Generic[StateT]):
    """Base class for long-running workflows that can move to a new task queue (a new code version).

    Subclass it and decorate the subclass with ``@workflow.defn`` (the base's signal and query handlers are
    inherited); keep every piece of state that must survive in ``self.state``; call :meth:`init_state` from
    ``@workflow.init __init__`` and return ``await self.run_migratable(self.main)`` from ``@workflow.run``.
    """

    @property
    def state(self) -> StateT:
        """The author's state; set by :meth:`init_state`; carried to the next run on migration.

        If the carried state was rejected, reading it raises that non-retryable error, so a handler that runs
        before ``@workflow.run`` fails the workflow loudly too instead of failing workflow tasks forever.
        """
        rt = self._diachronic
        if rt.has_state:
            return rt.state  # type: ignore[no-any-return]
        if rt.restore_error is not None:
            raise rt.restore_error
        raise AttributeError("state is not set: call self.init_state(...) in @workflow.init __init__")

    @state.setter
    def state(self, value: StateT) -> None:
        rt = self._diachronic
        rt.state, rt.has_state = value, True

    # ---- protocol handlers (inherited by the subclass's @workflow.defn) ----

    @workflow.signal(name=MIGRATE_SIGNAL)
    def _diachronic_migrate(self, *args: Any) -> None:
        """Record the target queue; raw arguments so that a bad payload is logged, never fatal."""
        queue, problem = parse_migrate_args(args)
        if queue is None:
            workflow.logger.warning("ignoring %s signal: %s (payload %r)", MIGRATE_SIGNAL, problem, args)
            return
        rt = self._diachronic
        current = workflow.info().task_queue
        if queue == current:
            workflow.logger.info("ignoring %s to %s: already on that task queue", MIGRATE_SIGNAL, queue)
            return
        if rt.target == queue:
            workflow.logger.info("ignoring duplicate %s to %s", MIGRATE_SIGNAL, queue)
            return
        if rt.target is not None and rt.target != current:
            workflow.logger.info("%s: target changed from %s to %s", MIGRATE_SIGNAL, rt.target, queue)
        rt.target = queue

    @workflow.query(name=SNAPSHOT_QUERY)
    def _diachronic_snapshot(self) -> Snapshot:
        """Read-only view for operators and tests: state as JSON, timers, pending target, queue."""
        rt = self._diachronic
        info = workflow.info()
        came = rt.came_from
        return Snapshot(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            task_queue=info.task_queue,
            state_version=rt.state_version,
            state=self._state_json() if rt.has_state else None,
            timers=dict(rt.timers),
            pending_task_queue=rt.target,
            in_no_migrate=rt.no_migrate_depth > 0,
            migrated_from=came.from_task_queue if came else None,
            migrated_at=came.migrated_at if came else None,
            accepts=[v for v in (rt.state_version, *rt.accepts) if v is not None],
        )

    # ---- set-up and the run loop ----

    def init_state(
        self,
        arg: InputT | MigrationEnvelope | Mapping[str, Any],
        *,
        state_type: type[StateT],
        state_version: str,
        initial_state: Callable[[InputT], StateT],
        transform: Callable[[Continuation], StateT] | None = None,
        accepts: Sequence[str] = (),
        continue_as_new_when_suggested: bool = True,
    ) -> None:
        """Set ``self.state``: from the envelope of a previous run, else ``initial_state(arg)``.

        Call it from ``@workflow.init __init__``: signals delivered with the start run their handlers before
        ``@workflow.run`` begins, and they need the state. ``state_version`` names the *shape* of the state
        (e.g. ``"subscription/2"``), not the code version: keep it while the shape stays; change it, and give
        ``transform``, when the shape changes. ``transform`` gets the :class:`Continuation` of a run whose state
        version differs and returns the new state; whatever it raises fails the workflow (non-retryable
        ``MigrationStateRejected`` naming the workflow id and the reason, the envelope in the details).
        ``accepts`` declares the other state versions ``transform`` restores, newer ones included (the transform in
        reverse): a roll-back moves workflows back to this code (``diachronic rollback --migrate-back``) only when
        it declares every state version they carry (the snapshot query answers it).
        With ``continue_as_new_when_suggested`` the workflow also continues-as-new on its own task queue when
        Temporal suggests it (long histories), through the same path as a migration.
        """
        rt = self._diachronic
        rt.state_version = state_version
        rt.accepts = tuple(accepts)
        rt.adapter = TypeAdapter(state_type)
        rt.auto_continue_as_new = continue_as_new_when_suggested
        try:
            continuation = self._continuation_in(arg)
            if continuation is None:
                self.state = initial_state(arg)  # type: ignore[arg-type]
            else:
                self.state = self._restore(continuation, state_version, transform)
        except ApplicationError as err:
            if err.type != STATE_REJECTED_ERROR:
                raise
            # Raised from here (workflow __init__) the error would still fail the workflow, but leave the
            # SDK's never-started run coroutine behind; raise it where the state is first needed instead.
            rt.restore_error = err

    async def run_migratable(self, main: Callable[[], Awaitable[ResultT]]) -> ResultT:
        """Run ``main`` until it returns (its result is the workflow's) or a migration takes the workflow away.

        Migration happens only when ``main`` is blocked outside every ``no_migrate`` section and all signal and
        update handlers have finished; ``main`` is then cancelled at that await and the state carried over.
        """
        rt = self._diachronic
        if rt.restore_error is not None:
            raise rt.restore_error
        if rt.adapter is None or not rt.has_state:
            raise RuntimeError("call self.init_state(...) in @workflow.init __init__ before run_migratable")

        main_task: asyncio.Task[ResultT] = asyncio.ensure_future(main())
        try:
            while True:
                await workflow.wait_condition(lambda: main_task.done() or self._ready_to_leave())
                if main_task.done():
                    result = main_task.result()
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    return result
                if self._ready_to_leave():  # re-checked: another task may have run since the wake-up
                    break
        except asyncio.CancelledError:
            # The workflow itself is being cancelled: let main decide how to end (it may clean up and return).
            main_task.cancel()
            return await main_task

        decided = self._leave_target()
        assert decided is not None
        main_task.cancel()
        try:
            await main_task
        except BaseException as err:  # main unwinding from our cancel is expected; anything else is a bug
            if not is_cancelled_exception(err):
                raise
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and self._no_migrate_free())
        self._continue_as_new(self._leave_target() or decided)  # a migrate signal may have come meanwhile

    # ---- what the author uses inside main ----

    @contextlib.asynccontextmanager
    async def no_migrate(self) -> AsyncIterator[None]:
        """A section migration never interrupts (e.g. charge + record); a pending migration waits for it."""
        rt = self._diachronic
        rt.no_migrate_depth += 1
        try:
            yield
        finally:
            rt.no_migrate_depth -= 1

    async def sleep_until(
        self,
        deadline: datetime,
        *,
        name: str | None = None,
        wake_if: Callable[[], bool] | None = None,
    ) -> bool:
        """Sleep until an absolute instant: ``True`` if reached, ``False`` if ``wake_if`` woke us first.

        Deadlines are absolute, so a run restored after a migration wakes at the same instant. With ``name``
        the deadline is also listed in the envelope's ``timers`` while pending (see :meth:`timer`).
        """
        rt = self._diachronic
        deadline = as_utc(deadline)
        if name is not None:
            rt.timers[name] = deadline
        remaining = deadline - workflow.now()
        reached = True
        if wake_if is not None:
            if wake_if():
                reached = False
            elif remaining > timedelta(0):
                try:
                    await workflow.wait_condition(wake_if, timeout=remaining)
                    reached = False
                except TimeoutError:
                    reached = True
        elif remaining > timedelta(0):
            await workflow.sleep(remaining)
        # Only a normal return clears the timer: when migration cancels us here, it stays to be carried over.
        if name is not None and rt.timers.get(name) == deadline:
            del rt.timers[name]
        return reached

    async def timer(self, name: str, duration: timedelta, *, wake_if: Callable[[], bool] | None = None) -> bool:
        """A named timer that survives migration: after a move, the same name resumes its old deadline."""
        deadline = self._diachronic.timers.get(name) or workflow.now() + duration
        return await self.sleep_until(deadline, name=name, wake_if=wake_if)

    @property
    def timers(self) -> Mapping[str, datetime]:
        """Pending named timers (name → absolute deadline), as carried in the envelope."""
        return dict(self._diachronic.timers)

    def cancel_timer(self, name: str) -> None:
        """Forget a carried named timer the new code no longer needs."""
        self._diachronic.timers.pop(name, None)

    def request_continue_as_new(self) -> None:
        """Checkpoint: continue-as-new on the current task queue (same path as a migration, same envelope)."""
        rt = self._diachronic
        if rt.target is None:
            rt.target = workflow.info().task_queue

    @property
    def pending_migration(self) -> str | None:
        """The task queue this workflow will move to at the next safe point, if any."""
        return self._diachronic.target

    # ---- internals ----

    @property
    def _diachronic(self) -> _Runtime:
        rt = self.__dict__.get("_diachronic_rt")
        if rt is None:
            rt = _Runtime()
            self.__dict__["_diachronic_rt"] = rt
        return rt

    def _no_migrate_free(self) -> bool:
        return self._diachronic.no_migrate_depth == 0

    def _leave_target(self) -> str | None:
        rt = self._diachronic
        if rt.target is not None:
            return rt.target
        if rt.auto_continue_as_new and workflow.info().is_continue_as_new_suggested():
            return workflow.info().task_queue
        return None

    def _ready_to_leave(self) -> bool:
        return self._leave_target() is not None and self._no_migrate_free() and workflow.all_handlers_finished()

    def _state_json(self) -> Any:
        adapter = self._diachronic.adapter or TypeAdapter(type(self.state))
        return adapter.dump_python(self.state, mode="json", by_alias=True)

    def _continuation_in(self, arg: object) -> Continuation | None:
        if isinstance(arg, MigrationEnvelope):
            return arg.continuation
        if isinstance(arg, Mapping) and CONTINUATION_KEY in arg:
            try:
                return Continuation.model_validate(arg[CONTINUATION_KEY])
            except ValidationError as err:
                self._fail_restore(f"invalid continuation envelope: {err}", arg)
        return None

    def _restore(
        self,
        continuation: Continuation,
        state_version: str,
        transform: Callable[[Continuation], StateT] | None,
    ) -> StateT:
        rt = self._diachronic
        assert rt.adapter is not None
        rt.came_from = continuation
        try:
            if continuation.state_version == state_version:
                restored = rt.adapter.validate_python(continuation.state)
            elif transform is None:
                raise ValueError(f"no transform from state version {continuation.state_version!r}")
            else:
                restored = rt.adapter.validate_python(transform(continuation))
            rt.adapter.dump_python(restored, mode="json")  # what cannot be carried on must fail now
        except Exception as err:  # any reason, transform bug included: fail loudly, keep the envelope
            reason = f"{type(err).__name__}: {err}"
            self._fail_restore(
                f"state version {continuation.state_version!r} → {state_version!r} rejected: {reason}",
                MigrationEnvelope(continuation=continuation).to_wire(),
            )
        rt.timers = {name: as_utc(when) for name, when in continuation.timers.items()}
        return restored  # type: ignore[no-any-return]

    def _fail_restore(self, reason: str, envelope: object) -> NoReturn:
        info = workflow.info()
        raise ApplicationError(
            f"workflow {info.workflow_id} (run {info.run_id}, task queue {info.task_queue}) "
            f"cannot restore its migrated state: {reason}",
            envelope,
            type=STATE_REJECTED_ERROR,
            non_retryable=True,
        )

    def _continue_as_new(self, target: str) -> NoReturn:
        rt = self._diachronic
        info = workflow.info()
        envelope = MigrationEnvelope(
            continuation=Continuation(
                state=self._state_json(),
                state_version=rt.state_version,
                timers=dict(rt.timers),
                from_task_queue=info.task_queue,
                to_task_queue=target,
                from_run_id=info.run_id,
                migrated_at=workflow.now(),
            )
        )
        if target == info.task_queue:
            workflow.logger.info("continuing as new on %s (checkpoint)", target)
        else:
            workflow.logger.info("migrating from %s to %s", info.task_queue, target)
        workflow.continue_as_new(envelope.to_wire(), task_queue=target)
