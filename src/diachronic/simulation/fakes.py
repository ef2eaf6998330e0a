"""Fake activities generated from the activity contracts.

Every activity declares one pydantic input model and one output model; its errors are one error model
(``ActivityErrorInfo`` for the CI). That is enough to fake it: a success is a valid sample of the output
model, a failure is a valid sample of the error model raised as the activity's typed error. So an activity
added with a contract has a fake without any extra code. A scenario may *script* some activities (a
``Handler`` that answers from a stateful fake world, see ``diachronic.simulation.world``); every other one
stays generated.

Randomness is reproducible: each (workflow type, activity) pair draws from its own stream seeded from the run's
seed, so the answers one workflow sees do not depend on how its calls interleave with another workflow's.
"""

from __future__ import annotations

import inspect
import random
import typing
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faker import Faker
from polyfactory.factories.base import BaseFactory
from polyfactory.factories.pydantic_factory import ModelFactory
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from diachronic.ci.activities import CIActivities
from diachronic.ci.contracts import ActivityErrorInfo

__all__ = [
    "ActivityContract",
    "CallRecord",
    "ContractFakes",
    "FailurePolicy",
    "Handler",
    "Sampler",
    "SimulatedFailure",
    "activity_contracts",
]

M = TypeVar("M", bound=BaseModel)

Handler = Callable[[Any], BaseModel | Awaitable[BaseModel | None] | None]
"""A scripted activity (a function or a coroutine function): answers with an output model, or ``None`` to keep the
generated answer (after applying its effect to the fake world). Raise ``SimulatedFailure`` to fail with a chosen
error."""

SAMPLE_ATTEMPTS = 20


@dataclass(frozen=True)
class ActivityContract:
    """What an activity promises: its name on the wire and the models of its input, output and errors."""

    name: str
    input: type[BaseModel]
    output: type[BaseModel]
    error: type[BaseModel]


def _model(annotation: Any, where: str) -> type[BaseModel]:
    if not (inspect.isclass(annotation) and issubclass(annotation, BaseModel)):
        raise TypeError(f"{where} is {annotation!r}, not a pydantic model: give the activity a contract")
    return annotation


def activity_contracts(
    source: type[CIActivities] | Iterable[Callable[..., Any]] = CIActivities,
    *,
    error: type[BaseModel] = ActivityErrorInfo,
) -> dict[str, ActivityContract]:
    """The contracts of the activities of a class (those its ``NAMES`` lists) or of a list of activity functions,
    by activity name. An activity's name is its function's name (``@activity.defn`` without ``name``).

    Read from the type hints, so nothing needs registering by hand beyond the name: a new activity is picked up as
    is. An activity without one pydantic input and a pydantic output is refused (``TypeError``)."""
    members = [getattr(source, name) for name in source.NAMES] if isinstance(source, type) else list(source)
    contracts: dict[str, ActivityContract] = {}
    for member in members:
        name = member.__name__
        hints = typing.get_type_hints(member)
        params = [p for p in inspect.signature(member).parameters if p != "self"]
        if len(params) != 1:
            raise TypeError(f"activity {name} takes {len(params)} arguments; a contract has one input")
        contracts[name] = ActivityContract(
            name=name,
            input=_model(hints.get(params[0]), f"the input of {name}"),
            output=_model(hints.get("return"), f"the output of {name}"),
            error=error,
        )
    return dict(sorted(contracts.items()))


class Sampler:
    """Valid samples of pydantic models (polyfactory), the same sample for the same seed.

    Own ``Faker`` and ``Random`` instances: sampling never reseeds anyone else's factories."""

    def __init__(self) -> None:
        self._faker = Faker()
        self._factories: dict[type[BaseModel], type[BaseFactory[Any]]] = {}

    def sample(self, model: type[M], seed: int, **fixed: Any) -> M:
        """One valid instance of ``model``; ``fixed`` fields are given, the rest generated.

        Polyfactory does not know every validator (e.g. name patterns): an invalid draw is simply drawn again."""
        factory = self._factories.get(model)
        if factory is None:
            factory = self._factories[model] = ModelFactory.create_factory(
                model, __faker__=self._faker, __random__=random.Random(0)
            )
        last: ValidationError | None = None
        for attempt in range(SAMPLE_ATTEMPTS):
            factory.seed_random(seed + attempt)
            try:
                built = factory.build(**fixed)
            except ValidationError as error:
                last = error
                continue
            assert isinstance(built, model)
            return built
        raise ValueError(f"no valid sample of {model.__name__} in {SAMPLE_ATTEMPTS} draws: {last}")


@dataclass(frozen=True)
class FailurePolicy:
    """How often generated failures happen and what they look like.

    ``retryable``: True/False forces the flag on every generated error; None keeps each sample's own flag (so
    some failures are permanent). ``lost_reply``: the share of failures that happen *after* the activity did its
    work (a timeout on the way back), which only idempotent activities survive."""

    rate: float = 0.0
    retryable: bool | None = True
    lost_reply: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"failure rate must be within 0..1, got {self.rate}")
        if not 0.0 <= self.lost_reply <= 1.0:
            raise ValueError(f"lost-reply share must be within 0..1, got {self.lost_reply}")


class SimulatedFailure(Exception):
    """Raised by a handler (or scripted) to fail an activity with a chosen error."""

    def __init__(self, info: ActivityErrorInfo) -> None:
        super().__init__(f"{info.name}: {info.message}")
        self.info = info


@dataclass(frozen=True)
class CallRecord:
    """One call of a fake activity, as the fake saw it."""

    activity: str
    workflow_id: str
    workflow_type: str
    run_id: str
    error: str | None = None  # the error type it failed with
    retryable: bool = True
    lost_reply: bool = False  # the work was done, then the call failed


@dataclass
class ContractFakes:
    """Fake activities for every contract, with scripted handlers, failure bursts and a log of every call."""

    contracts: Mapping[str, ActivityContract]
    seed: int = 0
    salt: str = ""  # e.g. the scenario's name: each scenario its own draws from one seed
    policy: FailurePolicy = field(default_factory=FailurePolicy)
    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[CallRecord] = field(default_factory=list)
    sampler: Sampler = field(default_factory=Sampler)
    _bursts: dict[str, list[ActivityErrorInfo]] = field(default_factory=dict)
    _streams: dict[str, random.Random] = field(default_factory=dict)

    def script(self, name: str, handler: Handler) -> None:
        """Answer ``name`` with ``handler`` instead of a generated sample."""
        self._known(name)
        self.handlers[name] = handler

    def fail_next(self, name: str, *errors: ActivityErrorInfo) -> None:
        """The next calls of ``name`` fail with these errors, in order (a burst), whatever the failure rate."""
        self._known(name)
        self._bursts.setdefault(name, []).extend(errors)

    def _known(self, name: str) -> None:
        if name not in self.contracts:
            raise KeyError(f"no activity named {name!r}; known: {', '.join(self.contracts)}")

    def stream(self, key: str) -> random.Random:
        """The random stream of one (workflow type, activity) pair: reproducible from the seed alone."""
        rng = self._streams.get(key)
        if rng is None:
            rng = self._streams[key] = random.Random(f"{self.seed}:{self.salt}:{key}")
        return rng

    def error_sample(self, contract: ActivityContract, rng: random.Random) -> ActivityErrorInfo:
        sample = self.sampler.sample(contract.error, rng.getrandbits(32))
        info = (
            sample
            if isinstance(sample, ActivityErrorInfo)
            else ActivityErrorInfo.model_validate(sample, from_attributes=True)
        )
        if self.policy.retryable is not None:
            info = info.model_copy(update={"retryable": self.policy.retryable})
        return info

    async def answer(self, contract: ActivityContract, input: BaseModel) -> BaseModel:
        """One call: maybe fail (before or after the work), else the scripted or a generated answer."""
        info = activity.info()
        rng = self.stream(f"{info.workflow_type}/{contract.name}")
        roll, lost_roll, sample_seed = rng.random(), rng.random(), rng.getrandbits(32)
        burst = self._bursts.get(contract.name)
        error: ActivityErrorInfo | None = None
        lost = False
        if burst:
            error = burst.pop(0)
        elif roll < self.policy.rate:
            error = self.error_sample(contract, rng)
            lost = lost_roll < self.policy.lost_reply
        record = CallRecord(contract.name, info.workflow_id or "", info.workflow_type or "", info.workflow_run_id or "")
        if error is not None and not lost:
            self._fail(record, error, lost=False)
        handler = self.handlers.get(contract.name)
        try:
            answer = handler(input) if handler is not None else None
            result = await answer if inspect.isawaitable(answer) else answer
        except SimulatedFailure as failure:
            self._fail(record, failure.info, lost=False)
        if result is None:
            result = self.sampler.sample(contract.output, sample_seed)
        if error is not None:
            self._fail(record, error, lost=True)
        self.calls.append(record)
        return result

    def _fail(self, record: CallRecord, error: ActivityErrorInfo, *, lost: bool) -> typing.NoReturn:
        self.calls.append(
            CallRecord(
                record.activity,
                record.workflow_id,
                record.workflow_type,
                record.run_id,
                error=error.name,
                retryable=error.retryable,
                lost_reply=lost,
            )
        )
        raise ApplicationError(error.message, error, type=error.name, non_retryable=not error.retryable)

    def activities(self) -> list[Callable[..., Any]]:
        """One ``@activity.defn`` per contract, registered under the real activity name."""
        return [self._fake(contract) for contract in self.contracts.values()]

    def _fake(self, contract: ActivityContract) -> Callable[..., Any]:
        async def fake(input: BaseModel) -> BaseModel:
            return await self.answer(contract, input)

        # The worker decodes the argument by these hints (pydantic converter): the real models, not BaseModel.
        fake.__annotations__ = {"input": contract.input, "return": contract.output}
        fake.__name__ = fake.__qualname__ = contract.name  # the activity's name
        return activity.defn(fake)

    # ------------------------------------------------------------------------------------------- counts

    def called(self) -> Counter[str]:
        return Counter(c.activity for c in self.calls)

    def failed(self) -> Counter[str]:
        return Counter(c.activity for c in self.calls if c.error is not None)

    def permanent_errors(self) -> list[str]:
        """Error types of the non-retryable failures raised: the only acceptable reasons for a run to fail."""
        return [c.error for c in self.calls if c.error is not None and not c.retryable]
