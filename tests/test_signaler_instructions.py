"""The signaler's request models and the HTTP error table, without a server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.common import SearchAttributeKey, WorkflowIDReusePolicy

import diachronic.errors
import diachronic.http.errors
import diachronic.signaler.errors
import diachronic.webhook.errors
from diachronic.errors import DiachronicError
from diachronic.http import status_of
from diachronic.signaler import InvalidInstruction, StartArgs, parse_instruction
from diachronic.signaler.instructions import (
    SignalBatchInstruction,
    SignalWithStartInstruction,
    StartInstruction,
    UpdateOrStartInstruction,
    parse_duration,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1500, timedelta(milliseconds=1500)),
        (0, timedelta(0)),
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("1.5 m", timedelta(seconds=90)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1 day", timedelta(days=1)),
        ("250", timedelta(milliseconds=250)),
    ],
)
def test_durations_as_the_typescript_sdk_writes_them(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["soon", "-1s", "1 fortnight", -5, True, None, [], "1e999", float("nan"), 10**20])
def test_bad_durations_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_every_original_action_parses() -> None:
    start = parse_instruction(
        b'{"action": "start", "args": {"workflowId": "w", "workflowType": "t", "taskQueue": "", "args": [1, {"a": 2}],'
        b' "workflowIdReusePolicy": 3, "chronSchedule": "* * * * *", "memo": {"m": 1},'
        b' "searchAttributes": {"isTest": ["true"], "Team": ["a", "b"], "Count": 3},'
        b' "retry": {"maximumAttempts": 2, "initialInterval": "1s"}, "workflowExecutionTimeout": "1d",'
        b' "workflowRunTimeout": 60000, "workflowTaskTimeout": "10s", "followRuns": true}}'
    )
    assert isinstance(start, StartInstruction)
    args = start.args
    assert args.routing_is_test() is True
    kwargs = args.start_kwargs()
    assert kwargs["id_reuse_policy"] is WorkflowIDReusePolicy.REJECT_DUPLICATE
    assert kwargs["cron_schedule"] == "* * * * *" and kwargs["execution_timeout"] == timedelta(days=1)
    assert kwargs["retry_policy"].maximum_attempts == 2 and kwargs["task_timeout"] == timedelta(seconds=10)
    attributes = kwargs["search_attributes"]
    assert attributes.get(SearchAttributeKey.for_keyword("isTest")) == "true"
    assert attributes.get(SearchAttributeKey.for_keyword_list("Team")) == ["a", "b"]
    assert attributes.get(SearchAttributeKey.for_int("Count")) == 3
    sws = parse_instruction({"action": "signalWithStart", "args": {"workflowId": "w", "workflowType": "t",
                                                                     "taskQueue": "q", "signal": "s"}})  # fmt: skip
    assert isinstance(sws, SignalWithStartInstruction) and sws.args.signal_args == []
    batch = parse_instruction({"action": "signalBatch", "args": [{"workflowId": "w", "signal": "s", "signalArgs": []}]})
    assert isinstance(batch, SignalBatchInstruction)
    uos = parse_instruction({"action": "updateOrStart", "args": {"workflowId": "w", "workflowType": "t", "signal": "u",
                                                                   "cronSchedule": "@daily"}})  # fmt: skip
    assert isinstance(uos, UpdateOrStartInstruction) and uos.args.task_queue == "" and uos.args.chron_schedule


@pytest.mark.parametrize(
    ("is_test", "attributes", "expected"),
    [
        (None, None, False),
        (None, {"isTest": [True]}, True),
        (None, {"isTest": ["true"]}, True),
        (None, {"isTest": "TRUE"}, True),
        (None, {"isTest": [False]}, False),
        (False, {"isTest": [True]}, False),
        (True, None, True),
    ],
    ids=[
        "absent",
        "attribute bool",
        "attribute string",
        "attribute scalar",
        "attribute false",
        "explicit wins",
        "explicit",
    ],
)
def test_is_test_comes_from_the_request_or_the_search_attribute(
    is_test: bool | None, attributes: dict[str, object] | None, expected: bool
) -> None:
    args = StartArgs.model_validate(
        {"workflowId": "w", "workflowType": "t", "isTest": is_test, "searchAttributes": attributes}
    )
    assert args.routing_is_test() is expected


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"action"}),
        ({"action": "explode", "args": {}}, {"action"}),
        ({"action": "start"}, {"args"}),
        ({"action": "start", "args": {"workflowType": "t"}}, {"args.workflowId"}),
        ({"action": "start", "args": {"workflowId": "", "workflowType": "t"}}, {"args.workflowId"}),
        ({"action": "start", "args": {"workflowId": "w", "workflowType": "t", "taskqueue": "q"}}, {"args.taskqueue"}),
        ({"action": "signal", "args": {"workflowId": "w", "signal": "s", "signalArgs": {}}}, {"args.signalArgs"}),
        ({"action": "signalBatch", "args": [{"workflowId": "w"}]}, {"args.0.signal"}),
        ({"action": "start", "args": {"workflowId": "w", "workflowType": "t", "workflowIdReusePolicy": 9}},
         {"args.workflowIdReusePolicy"}),
        ({"action": "start", "args": {"workflowId": "w", "workflowType": "t", "searchAttributes": {"a": [1, "x"]}}},
         {"args.searchAttributes.a"}),
        ([], {"body"}),
    ],
    ids=["empty", "unknown action", "no args", "no id", "empty id", "typo", "args not a list", "batch item",
         "reuse policy", "mixed search attribute", "not an object"],
)  # fmt: skip
def test_invalid_instructions_name_their_fields(body: object, fields: set[str]) -> None:
    with pytest.raises(InvalidInstruction) as caught:
        parse_instruction(body)  # type: ignore[arg-type]
    assert {field for field, _ in caught.value.problems} == fields


def _subclasses(cls: type[DiachronicError]) -> set[type[DiachronicError]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_every_error_the_app_can_raise_has_a_deliberate_status() -> None:
    modules = {diachronic.errors, diachronic.http.errors, diachronic.signaler.errors, diachronic.webhook.errors}
    names = {m.__name__ for m in modules}
    for cls in _subclasses(DiachronicError):
        if cls.__module__ in names:
            # A subclass may inherit its parent's status (MRO), but nothing may fall through to 500.
            assert status_of(cls.__new__(cls)) != 500, f"{cls.__name__} has no HTTP status"
