"""KafkaSource's read options (``fetch``, ``fetch_max_bytes``, ``max_poll_records``) are fields of
KafkaSourceConfig like every other option: checked at construction, with a ConfigurationError naming the
option, and carried by ``config=``. No broker: nothing here connects."""

from __future__ import annotations

from typing import Any

import pytest

from arrowflow.connectors.kafka import KafkaSource, KafkaSourceConfig
from arrowflow.connectors.kafka.config import FETCH_ENV
from arrowflow.errors import ConfigurationError

BOOT = "127.0.0.1:1"


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"fetch": "kernel"}, "fetch"),
        ({"fetch": 1}, "fetch"),
        ({"fetch_max_bytes": 0}, "fetch_max_bytes"),
        ({"fetch_max_bytes": 2**31}, "fetch_max_bytes"),
        ({"fetch_max_bytes": True}, "fetch_max_bytes"),
        ({"fetch_max_bytes": 1.5}, "fetch_max_bytes"),
        ({"max_poll_records": 0}, "max_poll_records"),
        ({"max_poll_records": "10"}, "max_poll_records"),
        ({"fetch": "columnar", "client_options": {"error_cb": print}}, "client_options"),
    ],
)
def test_bad_read_options_fail_at_construction(options: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        KafkaSource(BOOT, topics=["t"], **options)
    assert info.value.option == option, info.value
    with pytest.raises(ConfigurationError) as info:
        KafkaSourceConfig(bootstrap_servers=BOOT, topics=("t",), **options)
    assert info.value.option == option


def test_read_options_are_config_fields() -> None:
    src = KafkaSource(BOOT, topics=["t"], fetch="columnar", fetch_max_bytes=1 << 20, max_poll_records=100)
    c = src.config
    assert (c.fetch, c.fetch_max_bytes, c.max_poll_records) == ("columnar", 1 << 20, 100)
    assert (src.fetch, src.fetch_max_bytes, src.max_poll_records) == ("columnar", 1 << 20, 100)
    again = KafkaSource(config=c)
    assert again.config == c and again.fetch == "columnar"
    # stats_cb is the one callback the columnar path feeds (from the kernel's statistics).
    KafkaSource(BOOT, topics=["t"], fetch="columnar", client_options={"stats_cb": print})


def test_fetch_not_given_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FETCH_ENV, raising=False)
    assert KafkaSource(BOOT, topics=["t"]).fetch == "client"
    monkeypatch.setenv(FETCH_ENV, "columnar")
    src = KafkaSource(BOOT, topics=["t"])
    assert src.fetch == src.config.fetch == "columnar"
    assert KafkaSource(BOOT, topics=["t"], fetch="client").fetch == "client"  # given wins
    monkeypatch.setenv(FETCH_ENV, "fast")
    with pytest.raises(ConfigurationError, match=FETCH_ENV) as info:
        KafkaSource(BOOT, topics=["t"])
    assert info.value.option == "fetch"
