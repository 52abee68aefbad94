"""The soak (soak.py) for 2 minutes against the real broker: Kafka -> filter -> computed column ->
FileSink exactly-once, SIGKILLed every 20-45 s and restarted from its checkpoint while a producer keeps
writing. Fails on a lost, duplicated, unexpected or wrong row (against the full expected id set), on a
kill that did not land while data was in flight or no kill at all, and on an RSS curve that keeps
growing within runs or across restarts. ``make soak`` runs the same code for longer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka_helpers import Broker
from soak import minimum_kills, run_soak

MINUTES = 2.0
KILL_EVERY = (20.0, 45.0)


@pytest.mark.timeout(900)  # 2 minutes of soak, then the last run's catch-up, on a loaded machine
def test_soak_two_minutes_exactly_once_with_flat_rss(broker: Broker, tmp_path: Path) -> None:
    result = run_soak(broker.bootstrap, minutes=MINUTES, workdir=tmp_path, kill_every=KILL_EVERY)
    print(result.table())
    (tmp_path / "soak.json").write_text(json.dumps(result.to_json()))
    assert not result.problems, result.table()
    # The numbers behind the verdict, asserted here too so that a change to run_soak cannot hide them.
    assert result.rows_committed == result.rows_expected > 0
    assert result.duplicates == result.lost == result.unexpected == result.bad_values == 0
    assert result.restarts == result.kills_sent >= minimum_kills(MINUTES * 60, KILL_EVERY)
    assert not result.rss.growing
