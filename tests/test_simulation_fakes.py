"""Fakes from contracts and the fake world's referee, without a Temporal server (``ActivityEnvironment``)."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from diachronic.ci.activities import CIActivities
from diachronic.ci.contracts import (
    ActivityErrorInfo,
    ApplyFlagInput,
    CountRunningInput,
    DeleteWorkersInput,
    FindWorkersInput,
    FlagNameInput,
    ListFlagsInput,
    SetPercentInput,
    SweepInput,
)
from diachronic.simulation.fakes import ContractFakes, FailurePolicy, Sampler, SimulatedFailure, activity_contracts
from diachronic.simulation.world import World


def ci_activity_names() -> set[str]:
    """The CI's activities: every public coroutine method of ``CIActivities`` (each must be listed in ``NAMES``)."""
    return {name for name, _ in inspect.getmembers(CIActivities, inspect.iscoroutinefunction) if name[0] != "_"}


def test_every_ci_activity_has_a_contract_read_from_its_type_hints() -> None:
    contracts = activity_contracts()
    assert set(contracts) == ci_activity_names()
    for contract in contracts.values():
        assert issubclass(contract.input, BaseModel) and issubclass(contract.output, BaseModel)
        assert contract.error is ActivityErrorInfo
    assert contracts["apply_version_flag"].input is ApplyFlagInput


class GreetInput(BaseModel):
    name: str


class Greeting(BaseModel):
    text: str
    times: int


class MoreActivities(CIActivities):
    NAMES = (*CIActivities.NAMES, "greet_someone")

    @activity.defn
    async def greet_someone(self, input: GreetInput) -> Greeting:
        raise NotImplementedError  # never called: the simulation fakes it


async def test_a_new_activity_with_a_contract_gets_a_fake_with_no_extra_code() -> None:
    contracts = activity_contracts(MoreActivities)
    assert set(contracts) == ci_activity_names() | {"greet_someone"}
    fakes = ContractFakes(contracts, seed=3)
    [fake] = [f for f in fakes.activities() if f.__name__ == "greet_someone"]
    answer = await ActivityEnvironment().run(fake, GreetInput(name="ada"))
    assert isinstance(answer, Greeting)
    assert fakes.called()["greet_someone"] == 1


def test_an_activity_without_a_contract_is_refused() -> None:
    @activity.defn
    async def loose(name: str) -> str:
        return name

    with pytest.raises(TypeError, match="not a pydantic model"):
        activity_contracts([loose])


def test_fakes_take_the_real_names_and_the_declared_types() -> None:
    fakes = ContractFakes(activity_contracts())
    for fake in fakes.activities():
        contract = fakes.contracts[fake.__name__]
        hints = inspect.get_annotations(fake)
        assert hints == {"input": contract.input, "return": contract.output}


@pytest.mark.parametrize("name", sorted(activity_contracts()))
async def test_a_generated_answer_is_a_valid_output_and_reproducible(name: str) -> None:
    contract = activity_contracts()[name]
    sample_input = Sampler().sample(contract.input, 7)
    answers = [
        await ActivityEnvironment().run(_fake(ContractFakes(activity_contracts(), seed=seed), name), sample_input)
        for seed in (11, 11, 12, 13, 14, 15)
    ]
    first, again = answers[0], answers[1]
    assert isinstance(first, contract.output)
    contract.output.model_validate(first.model_dump())  # valid, not merely constructed
    assert first == again  # same seed, same answer
    if contract.output.model_fields:
        assert len({a.model_dump_json() for a in answers}) > 1  # other seeds, other answers


def _fake(fakes: ContractFakes, name: str):  # type: ignore[no-untyped-def]
    return next(f for f in fakes.activities() if f.__name__ == name)


async def test_failures_are_typed_samples_of_the_error_model_at_the_given_rate() -> None:
    fakes = ContractFakes(activity_contracts(), seed=5, policy=FailurePolicy(rate=0.5, lost_reply=0.0))
    fake = _fake(fakes, "list_version_flags")
    outcomes: list[str] = []
    for _ in range(200):
        try:
            await ActivityEnvironment().run(fake, ListFlagsInput(workflow_name="wf"))
            outcomes.append("ok")
        except ApplicationError as error:
            assert error.type and not error.non_retryable  # retryable forced by the policy
            [details] = error.details
            info = ActivityErrorInfo.model_validate(details)
            assert info.name == error.type and info.message == error.message
            outcomes.append("failed")
    assert 70 <= outcomes.count("failed") <= 130
    assert sum(fakes.failed().values()) == outcomes.count("failed")


async def test_with_per_sample_retryability_some_failures_are_permanent() -> None:
    fakes = ContractFakes(activity_contracts(), seed=5, policy=FailurePolicy(rate=1.0, retryable=None))
    fake = _fake(fakes, "count_running")
    flags = set()
    for _ in range(40):
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(fake, Sampler().sample(fakes.contracts["count_running"].input, 1))
        flags.add(failure.value.non_retryable)
    assert flags == {True, False}
    assert fakes.permanent_errors()


async def test_a_scripted_burst_fails_the_next_calls_in_order_then_the_world_answers() -> None:
    world = World("wf")
    world.add_version("v1")
    fakes = ContractFakes(activity_contracts(), handlers=world.handlers())
    down = ActivityErrorInfo(name="FlagStoreError", message="down", retryable=True)
    fakes.fail_next("list_version_flags", down, down)
    fake = _fake(fakes, "list_version_flags")
    for _ in range(2):
        with pytest.raises(ApplicationError, match="down"):
            await ActivityEnvironment().run(fake, ListFlagsInput(workflow_name="wf"))
    answer = await ActivityEnvironment().run(fake, ListFlagsInput(workflow_name="wf"))
    assert [f.info.version_id for f in answer.flags] == ["v1"]
    with pytest.raises(KeyError, match="no activity named"):
        fakes.fail_next("no_such_activity", down)


def test_policy_bounds() -> None:
    with pytest.raises(ValueError):
        FailurePolicy(rate=1.5)
    with pytest.raises(ValidationError):
        ActivityErrorInfo.model_validate({"name": "x"})


# ----------------------------------------------------------------------------------------------- the referee


async def test_the_world_refuses_and_records_deleting_the_workers_a_live_flag_needs() -> None:
    world = World("wf")
    world.add_version("v1")  # live at 100 %
    workers = world.add_workers("v1")
    found = await world.find_workers(FindWorkersInput(workflow_name="wf", version_id="v1"))
    assert found.worker_sets == [workers] and found.deploying_versions == []
    with pytest.raises(SimulatedFailure, match="live flags carry its task queue"):
        await world.delete_workers(DeleteWorkersInput(worker_set=workers))
    assert world.worker_versions() == {"v1"} and world.violations


async def test_the_world_refuses_deleting_workers_while_workflows_run_or_a_deployment_of_them_waits() -> None:
    world = World("wf")
    world.add_version("v1", archived=True)
    world.add_version("v2")
    workers = world.add_workers("v1")
    world.start_workflows("v1", 1)
    world.queued.append("v1")  # a roll-back to v1 waits in the CI's queue
    with pytest.raises(SimulatedFailure, match="1 workflows still run on it; a deployment of it is queued"):
        await world.delete_workers(DeleteWorkersInput(worker_set=workers))


def test_an_automated_write_is_conditional_and_a_human_edit_between_read_and_write_wins() -> None:
    world = World("wf")
    world.add_version("v1")
    world.add_workers("v2")  # a worker polls v2's queue before its flag exists (readiness)
    v2 = world.apply_version_flag(ApplyFlagInput(workflow_name="wf", version_id="v2")).info  # read: 0 %
    world.before_next_write(lambda w: w.hand_set_percent("v2", 30))
    with pytest.raises(SimulatedFailure, match="ConcurrentEdit"):
        world.set_traffic_percent(SetPercentInput(flag_name=v2.flag_name, percent=50, expected=0))
    assert world.percent("v2") == 30 and world.percent_writes == [] and not world.violations


def test_an_automated_write_of_a_value_it_never_read_is_a_violation() -> None:
    world = World("wf")
    world.add_version("v1")
    world.add_workers("v2")  # a worker polls v2's queue before its flag exists (readiness)
    v2 = world.apply_version_flag(ApplyFlagInput(workflow_name="wf", version_id="v2")).info  # read: 0 %
    world.hand_set_percent("v2", 30)  # the automation never reads it again...
    world.set_traffic_percent(SetPercentInput(flag_name=v2.flag_name, percent=50, expected=30))  # ...yet expects 30
    assert world.violations == [
        f"an automated write of 50% replaced 30% on {v2.flag_name}, a value it had not read (it last read 0%)"
    ]


def test_the_world_counts_migrate_signals_and_lets_temporal_drop_resends() -> None:
    world = World("wf")
    world.add_version("v1")
    v2 = world.add_version("v2")  # newest at 100 %: every v1 workflow is eligible
    world.add_workers("v2")  # a worker polls v2's queue (readiness): the signals may go there
    world.start_workflows("v1", 3)
    request = SweepInput(workflow_name="wf", from_task_queue="wf-v1", to_version=v2, flags=world.flags_newest_first())
    first = world.migrate_sweep(request)
    assert (first.eligible, first.signalled, first.done) == (3, 3, True)
    again = world.migrate_sweep(request)  # a later sweep meets them before they moved: same request ids
    assert again.signalled == 3 and world.resends == 3  # still on the old queue; Temporal drops the resends
    assert max(world.delivered.values()) == 1 and not world.violations
    world.count_running(CountRunningInput(task_queue="wf-v1"))  # they move now
    assert world.running_by_version() == {"v2": 3}


def test_the_worlds_sweep_pages_from_its_cursor_newest_start_first() -> None:
    world = World("wf")
    world.add_version("v1")
    v2 = world.add_version("v2")
    runs = world.start_workflows("v1", 5)
    flags = world.flags_newest_first()
    request = SweepInput(workflow_name="wf", from_task_queue="wf-v1", to_version=v2, flags=flags, batch_size=2, pages=1)
    first = world.migrate_sweep(request)
    assert (first.rows, first.done) == (2, False) and first.watermark is not None
    assert set(world.delivered) == {runs[4].run_id, runs[3].run_id}
    later = world.start_workflows("v1", 1)  # after the sweep began: not in it
    rest = world.migrate_sweep(request.model_copy(update={"cursor": first.cursor, "pages": 10}))
    assert (rest.rows, rest.pages, rest.done, rest.cursor) == (3, 2, True, None)
    assert later[0].run_id not in world.delivered and len(world.delivered) == 5
    recent = world.migrate_sweep(request.model_copy(update={"since": first.watermark, "pages": 10}))
    assert (recent.rows, recent.signalled) == (1, 1) and later[0].run_id in world.delivered


def test_the_worlds_sweep_stops_when_the_flags_no_longer_route_as_the_workflow_read_them() -> None:
    world = World("wf")
    world.add_version("v1")
    v2 = world.add_version("v2")
    world.start_workflows("v1", 3)
    read = world.flags_newest_first()
    world.hand_set_percent("v2", 0)  # after the workflow read the flags, before the sweep's page
    stopped = world.migrate_sweep(SweepInput(workflow_name="wf", from_task_queue="wf-v1", to_version=v2, flags=read))
    assert stopped.stale and stopped.stalled and stopped.pages == 0 and not world.delivered


def test_archiving_the_newest_flag_or_one_that_routes_traffic_is_a_violation() -> None:
    world = World("wf")
    v1 = world.add_version("v1")
    world.archive_version_flag(FlagNameInput(flag_name=v1.flag_name, workflow_name="wf"))
    assert any("newest" in v for v in world.violations)
    world = World("wf")
    v1 = world.add_version("v1")
    world.add_version("v2", percent=50)  # v1 still takes half of the new starts
    world.archive_version_flag(FlagNameInput(flag_name=v1.flag_name, workflow_name="wf"))
    assert world.violations == [f"archived {v1.flag_name} while it routes traffic"]


def test_a_retried_write_whose_reply_was_lost_is_done_not_a_human_edit() -> None:
    world = World("wf")
    world.add_version("v1")
    world.add_workers("v2")  # a worker polls v2's queue before its flag exists (readiness)
    v2 = world.apply_version_flag(ApplyFlagInput(workflow_name="wf", version_id="v2")).info
    write = SetPercentInput(flag_name=v2.flag_name, percent=25, expected=0)
    world.set_traffic_percent(write)
    world.set_traffic_percent(write)  # Temporal's retry of the same write: the flag already holds 25
    assert world.percent("v2") == 25 and world.percent_writes == [(v2.flag_name, 25)] and not world.violations
