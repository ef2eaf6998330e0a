"""``POST /instruction`` bodies: the original signaler's ``{action, args}`` shapes (original-behaviour §8).

Compatible with what the original accepted, and a little more: ``taskQueue`` may be omitted (empty or absent
means "choose by flags", §11.22), ``isTest`` may be given directly, and ``cronSchedule`` is accepted next to the
original's misspelt ``chronSchedule``. Unknown keys are refused so a typo never silently changes a start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)

from diachronic.contracts import Contract

__all__ = [
    "MAX_BATCH",
    "BatchFailure",
    "BatchResult",
    "Instruction",
    "RetryOptions",
    "SignalArgs",
    "SignalBatchInstruction",
    "SignalInstruction",
    "SignalResult",
    "SignalWithStartArgs",
    "SignalWithStartBatchInstruction",
    "SignalWithStartInstruction",
    "SignalWithStartResult",
    "StartArgs",
    "StartInstruction",
    "StartOptions",
    "StartResult",
    "UpdateArgs",
    "UpdateInstruction",
    "UpdateOrStartArgs",
    "UpdateOrStartInstruction",
    "instruction_adapter",
    "parse_duration",
    "parse_instruction",
]

MAX_BATCH = 1000
MAX_ID = 1000  # Temporal's default limit on ids and names
_UNITS_MS = {
    "ms": 1, "msec": 1, "msecs": 1, "millisecond": 1, "milliseconds": 1,
    "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000,
    "m": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hr": 3_600_000, "hrs": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
    "w": 604_800_000, "week": 604_800_000, "weeks": 604_800_000,
    "y": 31_557_600_000, "yr": 31_557_600_000, "yrs": 31_557_600_000, "year": 31_557_600_000,
    "years": 31_557_600_000,
}  # fmt: skip
# One pattern for the validator and the published schema (ECMA and Python agree on this subset: ASCII digits,
# spaces only, units longest first so the alternation never stops early).
_UNIT_ALTERNATION = "|".join(sorted(_UNITS_MS, key=lambda u: (-len(u), u)))
_DURATION_PATTERN = rf"^ *([0-9]+(?:\.[0-9]+)?|\.[0-9]+) *({_UNIT_ALTERNATION})? *$"
_DURATION = re.compile(_DURATION_PATTERN)
MAX_DURATION_MS = 100 * 31_557_600_000  # 100 years: more is a mistake (and overflows protobuf durations)


def parse_duration(value: Any) -> timedelta:
    """The TypeScript SDK's durations: milliseconds as a number, or strings like ``"1d"``, ``"30s"``, ``"500ms"``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a duration is a number of milliseconds or a string like '30s', '5m', '1d'")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration like '500ms', '30s', '5m', '2h', '1d'")
        ms = float(match.group(1)) * _UNITS_MS.get(match.group(2) or "ms", 1)
    else:
        ms = float(value)
    if not 0 <= ms <= MAX_DURATION_MS:  # also refuses NaN
        raise ValueError("a duration must be between 0 and 100 years")
    return timedelta(milliseconds=ms)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_DURATION_MS, "description": "milliseconds"},
                {"type": "string", "pattern": _DURATION_PATTERN, "examples": ["500ms", "30s", "1d"]},
            ]
        }
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=MAX_ID)]


def _search_value(value: Any) -> Any:
    if isinstance(value, list):
        if all(isinstance(v, str) and len(v) <= MAX_ID for v in value):
            return value
        if len(value) == 1 and isinstance(value[0], bool | int | float):
            return value
    elif isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= MAX_ID):
        return value
    raise ValueError("expected an array of strings, or one boolean, number or string (alone or in an array)")


# A search attribute's value(s), as the original accepted them (a map of name -> array); typed from the JSON value.
SearchValues = Annotated[
    Any,
    PlainValidator(_search_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string", "maxLength": MAX_ID}},
                {"type": "array", "items": {"type": ["boolean", "number"]}, "minItems": 1, "maxItems": 1},
                {"type": ["boolean", "number"]},
                {"type": "string", "maxLength": MAX_ID},
            ]
        }
    ),
]

_REUSE_POLICIES = {policy.name: policy for policy in WorkflowIDReusePolicy}


def _reuse_policy(value: Any) -> Any:
    if isinstance(value, str):
        key = value.upper().removeprefix("WORKFLOW_ID_REUSE_POLICY_")
        if key in _REUSE_POLICIES:
            return int(_REUSE_POLICIES[key])
    return value


ReusePolicy = Annotated[
    int,
    BeforeValidator(_reuse_policy),
    Field(ge=0, le=4, description="0 unspecified, 1 allow duplicate, 2 failed only, 3 reject, 4 terminate if running"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 4},
                {"type": "string", "enum": sorted(_REUSE_POLICIES)},
            ]
        }
    ),
]


class RetryOptions(Contract):
    backoff_coefficient: float = Field(default=2.0, ge=1, le=1000)
    initial_interval: Duration | None = None
    maximum_attempts: int = Field(default=0, ge=0, le=2**31 - 1, description="0 = unlimited")
    maximum_interval: Duration | None = None
    non_retryable_error_types: list[Annotated[str, Field(max_length=MAX_ID)]] | None = Field(
        default=None, max_length=100
    )

    @model_validator(mode="after")
    def _intervals_in_order(self) -> RetryOptions:
        initial = self.initial_interval or timedelta(seconds=1)
        if self.maximum_attempts != 1 and self.maximum_interval is not None and self.maximum_interval < initial:
            raise ValueError("maximumInterval cannot be less than initialInterval (default 1 s)")
        return self

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            backoff_coefficient=self.backoff_coefficient,
            initial_interval=self.initial_interval or timedelta(seconds=1),
            maximum_attempts=self.maximum_attempts,
            maximum_interval=self.maximum_interval,
            non_retryable_error_types=self.non_retryable_error_types,
        )


class StartOptions(Contract):
    """Options of every action that may start a workflow (all optional)."""

    workflow_id_reuse_policy: ReusePolicy | None = None
    chron_schedule: str | None = Field(
        default=None, max_length=MAX_ID, validation_alias=AliasChoices("chronSchedule", "cronSchedule")
    )
    memo: dict[str, Any] | None = None
    search_attributes: dict[Name, SearchValues] | None = None
    follow_runs: bool | None = Field(default=None, description="accepted for compatibility; has no effect here")
    retry: RetryOptions | None = None
    workflow_run_timeout: Duration | None = None
    workflow_execution_timeout: Duration | None = None
    workflow_task_timeout: Duration | None = None
    is_test: bool | None = Field(
        default=None, description="route as test traffic; default: searchAttributes.isTest, else false"
    )

    @model_validator(mode="after")
    def _search_attributes_have_types(self) -> StartOptions:
        self.typed_search_attributes()  # refuse at the boundary what Temporal could not type
        return self

    def routing_is_test(self) -> bool:
        """isTest for the flag context: the explicit field, else ``searchAttributes.isTest`` (true or "true")."""
        if self.is_test is not None:
            return self.is_test
        raw = (self.search_attributes or {}).get("isTest")
        values = raw if isinstance(raw, list) else [raw]
        return any(v is True or (isinstance(v, str) and v.lower() == "true") for v in values)

    def typed_search_attributes(self) -> TypedSearchAttributes | None:
        """Search attributes typed from their JSON values: bool, int, float, string (keyword), list of strings."""
        if not self.search_attributes:
            return None
        pairs: list[SearchAttributePair[Any]] = []
        for name, raw in self.search_attributes.items():
            values = raw if isinstance(raw, list) else [raw]
            if len(values) == 1:
                value = values[0]
                if isinstance(value, bool):
                    pairs.append(SearchAttributePair(SearchAttributeKey.for_bool(name), value))
                elif isinstance(value, int):
                    pairs.append(SearchAttributePair(SearchAttributeKey.for_int(name), value))
                elif isinstance(value, float):
                    pairs.append(SearchAttributePair(SearchAttributeKey.for_float(name), value))
                else:
                    pairs.append(SearchAttributePair(SearchAttributeKey.for_keyword(name), value))
            elif all(isinstance(v, str) for v in values):
                pairs.append(SearchAttributePair(SearchAttributeKey.for_keyword_list(name), list(values)))
            else:
                raise ValueError(f"searchAttributes.{name}: several values must all be strings")
        return TypedSearchAttributes(pairs)

    def start_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``Client.start_workflow`` / ``WithStartWorkflowOperation`` for these options."""
        kwargs: dict[str, Any] = {
            "execution_timeout": self.workflow_execution_timeout,
            "run_timeout": self.workflow_run_timeout,
            "task_timeout": self.workflow_task_timeout,
            "memo": self.memo,
            "search_attributes": self.typed_search_attributes(),
        }
        if self.workflow_id_reuse_policy:
            kwargs["id_reuse_policy"] = WorkflowIDReusePolicy(self.workflow_id_reuse_policy)
        if self.chron_schedule:
            kwargs["cron_schedule"] = self.chron_schedule
        if self.retry is not None:
            kwargs["retry_policy"] = self.retry.policy()
        return kwargs


class SignalArgs(Contract):
    workflow_id: Name
    run_id: Annotated[str, Field(max_length=MAX_ID)] | None = None
    signal: Name
    signal_args: list[Any] = Field(default_factory=list)
    correlation_id: Annotated[str, Field(max_length=MAX_ID)] | None = None


class StartArgs(StartOptions):
    workflow_id: Name
    workflow_type: Name
    args: list[Any] = Field(default_factory=list)
    task_queue: Annotated[str, Field(max_length=MAX_ID)] = Field(default="", description="empty: choose by flags")


class SignalWithStartArgs(StartOptions):
    workflow_id: Name
    workflow_type: Name
    args: list[Any] = Field(default_factory=list)
    task_queue: Annotated[str, Field(max_length=MAX_ID)] = Field(default="", description="empty: choose by flags")
    signal: Name
    signal_args: list[Any] = Field(default_factory=list)


class UpdateArgs(SignalArgs):
    """``signal`` names the update handler; the reply is the update's result."""


class UpdateOrStartArgs(SignalWithStartArgs):
    """Update-with-start: ``signal`` names the update handler."""


class SignalInstruction(Contract):
    action: Literal["signal"]
    args: SignalArgs


class StartInstruction(Contract):
    action: Literal["start"]
    args: StartArgs


class SignalWithStartInstruction(Contract):
    action: Literal["signalWithStart"]
    args: SignalWithStartArgs


class SignalBatchInstruction(Contract):
    action: Literal["signalBatch"]
    args: list[SignalArgs] = Field(max_length=MAX_BATCH)


class SignalWithStartBatchInstruction(Contract):
    action: Literal["signalWithStartBatch"]
    args: list[SignalWithStartArgs] = Field(max_length=MAX_BATCH)


class UpdateInstruction(Contract):
    action: Literal["update"]
    args: UpdateArgs


class UpdateOrStartInstruction(Contract):
    action: Literal["updateOrStart"]
    args: UpdateOrStartArgs


Instruction = Annotated[
    SignalInstruction
    | StartInstruction
    | SignalWithStartInstruction
    | SignalBatchInstruction
    | SignalWithStartBatchInstruction
    | UpdateInstruction
    | UpdateOrStartInstruction,
    Field(discriminator="action"),
]
instruction_adapter: TypeAdapter[Instruction] = TypeAdapter(Instruction)


# -- results ------------------------------------------------------------------------------------------------


class StartResult(Contract):
    run_id: str
    workflow_id: str
    task_queue: str
    version_id: str | None = Field(default=None, description="the version the flags chose (empty taskQueue only)")


class SignalResult(Contract):
    workflow_id: str
    run_id: str
    task_queue: str
    correlation_id: str | None = None


class SignalWithStartResult(Contract):
    workflow_id: str
    signaled_run_id: str
    task_queue: str
    version_id: str | None = None


class BatchFailure(Contract):
    index: int
    workflow_id: str
    error: str
    message: str


class BatchResult(Contract):
    successes: list[SignalResult | SignalWithStartResult]
    failures: list[BatchFailure]


def _field(loc: tuple[int | str, ...]) -> str:
    # A discriminated union puts the tag first: ('start', 'args', 'workflowId') -> 'args.workflowId'.
    parts = list(loc)
    if parts and isinstance(parts[0], str) and parts[0] in _ACTIONS:
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or "body"


_ACTIONS = {
    "signal",
    "start",
    "signalWithStart",
    "signalBatch",
    "signalWithStartBatch",
    "update",
    "updateOrStart",
}


def parse_instruction(data: bytes | str | Mapping[str, Any]) -> Instruction:
    """Validate a request body (raw JSON or already decoded); InvalidInstruction names every bad field."""
    from diachronic.signaler.errors import InvalidInstruction

    try:
        if isinstance(data, bytes | str):
            return instruction_adapter.validate_json(data)
        return instruction_adapter.validate_python(data)
    except ValidationError as error:
        problems = []
        for e in error.errors(include_url=False):
            if e["type"] == "json_invalid":
                problems.append(("body", f"not valid JSON ({e['ctx'].get('error', e['msg'])})"))
            elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):
                problems.append(("action", f"must be one of {', '.join(sorted(_ACTIONS))}"))
            else:
                problems.append((_field(e["loc"]), e["msg"]))
        raise InvalidInstruction(problems) from None
