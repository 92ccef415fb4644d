"""The shapes of the master's JSON answers, as the OpenAPI document describes them.

They document and are checked (schemathesis validates real answers against them); the
endpoints return the dicts of ``voe.cli.report`` as they are, so an answer never loses a
field that a model does not name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from voe.master.ledger import STATES

State = Literal[STATES]  # type: ignore[valid-type]


class Open(BaseModel):
    """An object that may hold more fields than those described."""

    model_config = ConfigDict(extra="allow")


class Error(BaseModel):
    """Every refusal: a one-line reason."""

    error: str


class Worker(Open):
    """A worker as the master last heard of it."""

    worker: str
    concurrency: int
    prefetch: int
    held: int = Field(description="jobs in flight")
    finished: int = Field(description="jobs the worker finished with, any outcome")
    last_seen: float = Field(description="unix time of its last message (heartbeat)")
    address: str = Field(description='where it runs, "IP (hostname)" as it told the master; '
                                     "empty when unknown")
    errors: int = Field(description="its attempts that did not end done")


FRESHNESS = ("measured staleness of a continuous scheduler (stored searches re-searched at "
             "random): audits, still_correct, estimated_stale and by_age (age, audits, "
             "still_correct); null for a plan run in cycles")


class Status(Open):
    """Exactly ``voe status --json``."""

    jobs: dict[str, int] = Field(description="jobs of the latest cycle by state")
    fares: int = Field(description="fares stored in every cycle")
    yield_: list[dict[str, Any]] = Field(alias="yield")
    field_yield: list[dict[str, Any]] = Field(description="per-field yields of the latest "
                                                          "cycle with field counts")
    cycle: dict[str, Any] | None
    master: dict[str, Any]
    workers: list[Worker]
    outbox: dict[str, Any] = Field(description="backlog, retrying and dead letters per "
                                               "destination (amqp:, nats:, webhook:)")
    data_dir: str
    freshness: dict[str, Any] | None = Field(None, description=FRESHNESS)


class Master(Open):
    """The running master's live state."""

    paused: bool
    samples: list[list[float]] = Field(description="[unix time, jobs done, jobs failed], one "
                                                   "a second, the last ten minutes")
    store: str = Field(description="where the sink stores (no password)")
    scheduler: str = Field("cycle", description='the plan\'s scheduler: "cycle", "ttl", '
                                                '"adaptive" or "freshness"')
    freshness: dict[str, Any] | None = Field(None, description=FRESHNESS)


class Job(BaseModel):
    """One job of the ledger."""

    cycle: int
    job_id: str
    backend: str
    origin: str
    destination: str
    date: str
    return_date: str | None
    options: str = Field("", description="the search's options (party, cabin, point of sale, "
                                         "currency asked) as text; \"\" for the defaults")
    legs: str = Field("", description="a multi-city trip's legs, ORIG-DEST:date joined by "
                                      "commas; \"\" for any other search")
    state: State
    attempt: int
    worker: str | None
    error: str | None
    updated_at: float | None


class JobPage(BaseModel):
    """A page of jobs and the total that match."""

    state: State | None
    cycle: int | None
    limit: int
    offset: int
    total: int
    jobs: list[Job]


class Check(Open):
    """The delivery audit of ``voe check``."""

    ok: bool
    totals: dict[str, int]
    cycles: list[dict[str, Any]]


class Routes(BaseModel):
    """The routes (ORIG-DEST) of the latest cycle."""

    routes: list[str]


class Prices(BaseModel):
    """A route's cheapest fare per date, search options and cycle."""

    route: str
    date: str | None
    prices: list[dict[str, Any]]


class Cycle(BaseModel):
    """The cycle just started."""

    cycle: int
    total: int


class Paused(BaseModel):
    """Whether leasing is paused."""

    paused: bool


class Retried(BaseModel):
    """How many jobs or events were sent again."""

    retried: int
