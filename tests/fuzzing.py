"""Seeded mutation fuzzing: valid voe frames, mutated cheaply and reproducibly."""

from __future__ import annotations

import random

from voe import protocol
from voe.model import Fare, Result, SearchJob

FRAMES = 100_000  # in all, over the three ports
SEED = 20261124


def seeds() -> list[bytes]:
    """Valid frames of every type, about jobs that do not exist, to mutate."""
    job = SearchJob("fuzz:AAA-BBB:2000-01-01", 999, 1, "null", "AAA", "BBB", "2000-01-01")
    fare = Fare("FZ 1", "00:00", "01:00", "1.00", "BRL")
    return [protocol.encode_hello("fuzz", 4, 1, [(999, job.id)]), protocol.encode_heartbeat("e"),
            protocol.encode_finished([(999, job.id)]), protocol.encode_bye(),
            protocol.encode_jobs([job]), protocol.encode_throttled({"null": 3}),
            protocol.encode_acks([protocol.Ack(999, job.id, 1, "transient", "x")]),
            protocol.encode_result(Result(job, "parse", (fare,), "fuzz", "fuzz", 0.1))]


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """One cheap mutation: flip bytes, cut, splice, repeat, or random bytes."""
    data = bytearray(frame)
    choice = rng.randrange(5)
    if choice == 0 and data:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 1:
        data = data[: rng.randrange(len(data) + 1)]
    elif choice == 2:
        data = data[: rng.randrange(len(data) + 1)] + bytes(rng.randbytes(rng.randrange(64)))
    elif choice == 3:
        data = data * rng.randint(2, 50)
    else:
        data = bytearray(rng.randbytes(rng.randrange(1, 300)))
    return bytes(data)
