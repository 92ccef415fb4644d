"""What the master knows of the sink: when it last stored, what it waits for, said once."""

from __future__ import annotations

import logging

from voe.master.sinkstate import SinkState


def test_a_long_wait_is_logged_once_and_its_end_once(caplog):
    sink = SinkState()
    caplog.set_level(logging.INFO, logger="voe.master")
    sink.acknowledged(10.0)
    for second in range(11, 41):  # the sink's text counts the seconds of its wait
        sink.beat(float(second), f"its store: database or disk is full (for {second - 11} s)")
    sink.beat(41.0, "")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["the sink is waiting for its store: database or disk is full (for 0 s)",
                     "the sink stores again"]
    assert sink.snapshot(41.5) == {"waiting": "", "silent_seconds": 0.5}


def test_a_result_counts_as_lost_only_once_the_sink_stored_after_it():
    sink = SinkState()
    assert not sink.stored_since(5.0, grace=1.0)  # never heard: delayed, not lost
    sink.beat(5.5, "")
    assert not sink.stored_since(5.0, grace=1.0)  # within the grace
    sink.beat(7.0, "its store: locked (for 1 s)")
    assert not sink.stored_since(5.0, grace=1.0)  # waiting is not storing
    sink.acknowledged(7.5)
    assert sink.stored_since(5.0, grace=1.0)
