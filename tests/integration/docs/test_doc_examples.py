"""Documentation examples that need servers (``<!-- needs: SERVICE... -->``, see
``tests/doc_examples.py``) run against the servers ``make test`` starts, their default addresses
rewritten to the ports the suite uses. A needed server that does not answer fails the example."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from doc_examples import Block, all_blocks, rewrite_addresses, run_python, run_yaml

SERVER_BLOCKS = [b for b in all_blocks() if b.needs and not b.skipped]


def test_server_examples_exist() -> None:
    # The examples that need a server run here (an empty list would run nothing, silently).
    assert SERVER_BLOCKS, "no documentation example is marked <!-- needs: SERVICE -->"


def test_marked_examples_name_known_services(services: Mapping[str, Any]) -> None:
    unknown = {(b.id, name) for b in SERVER_BLOCKS for name in b.needs if name not in services}
    assert not unknown, f"unknown services in needs: markers: {sorted(unknown)}"


@pytest.mark.parametrize("block", SERVER_BLOCKS, ids=[b.id for b in SERVER_BLOCKS])
def test_example_runs_against_its_servers(
    block: Block,
    tmp_path: Path,
    service: Callable[[str], tuple[str, int]],
    services: Mapping[str, Any],
) -> None:
    ports = {}
    for name in block.needs:
        _, port = service(name)  # fails the test if the server does not answer
        ports[services[name].default_port] = port
    code = rewrite_addresses(block.code, ports)
    if block.lang == "yaml":
        run_yaml(block, tmp_path, code)
    else:
        run_python(block, tmp_path, code)


def test_addresses_are_rewritten_to_the_suite_ports() -> None:
    code = 'a = "127.0.0.1:6379"; b = "redis://localhost:6379/0"; c = "127.0.0.1:63790"; f(port=6379)\n'
    assert rewrite_addresses(code, {6379: 35379}) == (
        'a = "127.0.0.1:35379"; b = "redis://127.0.0.1:35379/0"; c = "127.0.0.1:63790"; f(port=35379)\n'
    )
