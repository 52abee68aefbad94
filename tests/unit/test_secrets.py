"""Secrets hygiene: passwords, tokens and keys never show in a repr, an error, a log line or a checkpoint.

1. Every frozen configuration dataclass of the package (found by importing every ``arrowflow`` module)
   that has a secret-named field (:func:`arrowflow.pipeline_spec.is_secret_key`) types it
   ``Secret | str`` and holds a :class:`~arrowflow.config.Secret` after construction; its repr/str do
   not contain the value, and an error raised for a bad *other* option does not either.
2. Pass-through option mappings (librdkafka-style ``config={...}``) do not show secret-named entries
   in the repr of the configuration holding them.
3. A YAML pipeline whose sink takes ``token: ${MY_TOKEN}`` gets a Secret; the token is absent from the
   repr of the built pipeline and its parts, from every checkpoint file of a short run, from the logs
   of that run, and from the error of ``arrowflow run`` when another option is bad.

The sink of part 3 lives here (``TokenSink``), built through the YAML ``type: module:Class`` form,
because the connectors that take credentials talk to servers this unit suite does not start.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import pkgutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import arrowflow
from arrowflow.config import Secret, check_positive, check_type, reveal
from arrowflow.errors import ConfigurationError
from arrowflow.formats import SchemaRegistryClient
from arrowflow.pipeline_spec import is_secret_key, load_pipeline
from arrowflow.sink import Sink

SECRET = "s3cr3t-Zq8vX1-do-not-print"
log = logging.getLogger("arrowflow.tests.token_sink")


# -- a connector that takes a token (used through YAML) ---------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenSinkConfig:
    """What a credential-taking sink's configuration looks like under the policy."""

    endpoint: str
    token: Secret | str
    batch_rows: int = 100

    def __post_init__(self) -> None:
        check_type("endpoint", self.endpoint, str)
        check_type("token", self.token, (str, Secret))
        object.__setattr__(self, "token", Secret(self.token))
        check_positive("batch_rows", self.batch_rows)


class TokenSink(Sink):
    """Collects rows; logs its configuration (which must not leak the token)."""

    name = "token"

    def __init__(self, endpoint: str, *, token: Secret | str, batch_rows: int = 100) -> None:
        self.config = TokenSinkConfig(endpoint=endpoint, token=token, batch_rows=batch_rows)
        self.rows = 0
        log.info("token sink %r", self.config)

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        log.info("wrote %d rows with %s", batch.num_rows, self.config)

    def __repr__(self) -> str:
        return f"TokenSink({self.config!r})"


# -- discovery --------------------------------------------------------------------------------------


def _import_all() -> tuple[list[Any], list[str]]:
    modules: list[Any] = []
    failed: list[str] = []
    for info in pkgutil.walk_packages(arrowflow.__path__, "arrowflow."):
        if info.name.endswith("__main__"):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as exc:  # reported by test_every_module_imports, never dropped silently
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
    return modules, failed


MODULES, IMPORT_FAILURES = _import_all()


def _config_dataclasses() -> list[type]:
    seen: dict[str, type] = {}
    for module in MODULES:
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and dataclasses.is_dataclass(obj)
                and obj.__module__.startswith("arrowflow")
                and obj.__dataclass_params__.frozen  # type: ignore[attr-defined]
            ):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [seen[k] for k in sorted(seen)]


CONFIG_CLASSES = _config_dataclasses()


def _secret_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init and is_secret_key(f.name)]


#: The package's classes with secret fields, plus this module's TokenSinkConfig (so the checks below
#: always run on at least one class that follows the policy).
SECRET_CLASSES = [c for c in CONFIG_CLASSES if _secret_fields(c)] + [TokenSinkConfig]
PASS_THROUGH = {
    "config",
    "options",
    "client_options",
    "producer_config",
    "consumer_config",
    "storage_options",
}
MAPPING_CLASSES = [
    c for c in CONFIG_CLASSES if any(f.init and f.name in PASS_THROUGH for f in dataclasses.fields(c))
]

#: Constructor arguments for classes the guesser below cannot build on its own.
EXAMPLES: dict[str, dict[str, Any]] = {
    "KafkaSinkConfig": {"bootstrap_servers": "127.0.0.1:9092", "topic": "t"},
    "KafkaSourceConfig": {"bootstrap_servers": "127.0.0.1:9092", "topics": ("t",)},
    "CassandraConnection": {"username": "user"},
    "ActiveMQSourceConfig": {"destination": "/queue/q"},
    "ActiveMQSinkConfig": {"destination": "/queue/q"},
    "ActiveMQTransactionalSinkConfig": {"destination": "/queue/q"},
    "MqttSourceConfig": {"topics": ("t",), "client_id": "c"},
    "MqttSinkConfig": {"topic": "t"},
    "PulsarSourceConfig": {"topics": ("t",), "subscription": "s"},
    "RedisSinkConfig": {"command": "set", "key": "k"},
    "RedisPubSubSourceConfig": {"channels": ("c",)},
}


def _guess(name: str, annotation: str) -> Any:
    by_name = {
        "host": "127.0.0.1",
        "port": 9,
        "url": "http://127.0.0.1:9",
        "bootstrap_servers": "127.0.0.1:9092",
        "path": "/tmp/arrowflow-secrets-test",
    }
    if name in by_name:
        return by_name[name]
    text = annotation.replace(" ", "")
    for token, value in (
        ("Schema", pa.schema([("a", pa.int64())])),
        ("bool", False),
        ("str", "x"),
        ("int", 1),
        ("float", 1.0),
        ("Mapping", {}),
        ("dict", {}),
        ("tuple", ("x",)),
        ("Sequence", ("x",)),
    ):
        if token in text:
            return value
    return None


def _required_kwargs(cls: type) -> dict[str, Any]:
    kwargs = dict(EXAMPLES.get(cls.__name__, {}))
    for f in dataclasses.fields(cls):
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and missing and f.name not in kwargs:
            kwargs[f.name] = _guess(f.name, str(f.type))
    return kwargs


# -- 1. configuration classes -------------------------------------------------------------------------


def test_every_module_imports() -> None:
    # The dev environment installs every optional client library: a module that does not import
    # would take its configuration classes out of every check below.
    assert not IMPORT_FAILURES, "modules that do not import: " + "; ".join(IMPORT_FAILURES)


def test_discovery_finds_the_configuration_classes() -> None:
    names = {c.__name__ for c in CONFIG_CLASSES}
    # A sample across the layers: if discovery broke, these would be missing.
    assert {
        "SocketSourceConfig",
        "SocketSinkConfig",
        "DataGenConfig",
        "RunConfig",
        "ConfluentFraming",
    } <= names
    assert len(CONFIG_CLASSES) >= 10


def test_secret_key_rule() -> None:
    for name in (
        "password",
        "sasl_password",
        "sasl.password",
        "api_key",
        "token",
        "access_token",
        "client_secret",
        "credentials",
        "secret_access_key",
        "private_key",
        "ssl.key.password",
    ):
        assert is_secret_key(name), name
    for name in (
        "key",
        "keys",
        "key_columns",
        "routing_key",
        "partition_key",
        "topic",
        "id_column",
        "monkey",
    ):
        assert not is_secret_key(name), name


@pytest.mark.parametrize("cls", SECRET_CLASSES, ids=lambda c: c.__qualname__)
def test_secret_fields_are_secrets(cls: type) -> None:
    kwargs = _required_kwargs(cls)
    fields = _secret_fields(cls)
    for f in fields:
        assert "Secret" in str(f.type), f"{cls.__qualname__}.{f.name} must be typed Secret | str"
        kwargs[f.name] = SECRET
    try:
        config = cls(**kwargs)
    except ConfigurationError as exc:
        assert SECRET not in str(exc)
        pytest.fail(f"cannot build {cls.__qualname__} with {sorted(kwargs)}: {exc}; add it to EXAMPLES")
    for f in fields:
        value = getattr(config, f.name)
        assert isinstance(value, Secret), f"{cls.__qualname__}.{f.name} is {type(value).__name__}, not Secret"
        assert reveal(value) == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config)


@pytest.mark.parametrize("cls", SECRET_CLASSES, ids=lambda c: c.__qualname__)
def test_errors_about_other_options_do_not_contain_the_secret(cls: type) -> None:
    base = _required_kwargs(cls)
    for f in _secret_fields(cls):
        base[f.name] = SECRET
    others = [f for f in dataclasses.fields(cls) if f.init and not is_secret_key(f.name)]
    raised = 0
    for f in others:
        kwargs = {**base, f.name: object()}  # the wrong type for every option
        try:
            cls(**kwargs)
        except Exception as exc:
            raised += 1
            assert SECRET not in str(exc), f"{cls.__qualname__}: error about {f.name} shows the secret"
            assert SECRET not in repr(exc.args)
    # A class whose only option is the secret (BearerToken) has no other option to get wrong.
    assert raised > 0 or not others


@pytest.mark.parametrize("cls", MAPPING_CLASSES, ids=lambda c: c.__qualname__)
def test_secret_entries_of_pass_through_mappings_are_hidden(cls: type) -> None:
    kwargs = _required_kwargs(cls)
    name = next(f.name for f in dataclasses.fields(cls) if f.init and f.name in PASS_THROUGH)
    kwargs[name] = {"sasl.password": SECRET}
    config = cls(**kwargs)
    assert SECRET not in repr(config)


def test_schema_registry_client_hides_its_password() -> None:
    client = SchemaRegistryClient("http://127.0.0.1:9", username="user", password=SECRET)
    assert SECRET not in repr(client)
    with pytest.raises(ConfigurationError) as info:
        SchemaRegistryClient("ftp://127.0.0.1:9", username="user", password=SECRET)
    assert SECRET not in str(info.value)


def test_secret_type_itself() -> None:
    s = Secret(SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in f"{s}"
    assert s == Secret(SECRET) and reveal(s) == SECRET
    with pytest.raises(ConfigurationError) as info:
        Secret(123)  # type: ignore[arg-type]
    assert "123" not in str(info.value)


# -- 3. YAML -> pipeline -> run ---------------------------------------------------------------------------

PIPELINE = """\
source:
  type: datagen
  count: 3000
  batch_size: 500
  fields:
    id: sequence
sink:
  type: "{module}:TokenSink"
  endpoint: "http://127.0.0.1:9/ingest"
  token: ${{MY_TOKEN}}
  batch_rows: {batch_rows}
run:
  checkpoint_dir: {ckpt}
  checkpoint_interval: 0.05
"""


def _write_pipeline(tmp_path: Path, batch_rows: Any = 100) -> Path:
    path = tmp_path / "pipeline.yaml"
    text = PIPELINE.format(module=__name__, batch_rows=batch_rows, ckpt=tmp_path / "ckpt")
    path.write_text(text)
    return path


def test_yaml_token_is_a_secret_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MY_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    spec = load_pipeline(_write_pipeline(tmp_path))
    sink = spec.sink
    assert isinstance(sink, TokenSink)
    assert isinstance(sink.config.token, Secret) and reveal(sink.config.token) == SECRET
    for text in (repr(spec), repr(spec.pipeline), repr(sink), repr(sink.config), str(spec.run_options)):
        assert SECRET not in text
    result = spec.run(progress=False)
    assert result.rows_written == 3000 and sink.rows == 3000
    assert result.checkpoints >= 1
    files = [p for p in (tmp_path / "ckpt").rglob("*") if p.is_file()]
    assert files, "the run wrote no checkpoint file"
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    assert any("token sink" in r.getMessage() for r in caplog.records)  # the sink did log its config
    assert SECRET not in caplog.text


def test_yaml_error_in_another_option_does_not_show_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_TOKEN", SECRET)
    with pytest.raises(ConfigurationError) as info:
        load_pipeline(_write_pipeline(tmp_path, batch_rows=-5))
    message = str(info.value)
    assert "pipeline.yaml:11: sink.batch_rows" in message
    assert SECRET not in message


def test_cli_error_does_not_show_the_token(tmp_path: Path) -> None:
    path = _write_pipeline(tmp_path, batch_rows="lots")
    env = {
        **os.environ,
        "MY_TOKEN": SECRET,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "arrowflow", "run", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "sink.batch_rows" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


def test_secret_values_in_plain_mappings_are_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    from arrowflow.pipeline_spec import load_yaml

    monkeypatch.setenv("MY_TOKEN", SECRET)
    doc = load_yaml("sink:\n  config:\n    sasl.password: ${MY_TOKEN}\n    client.id: app\n")
    cfg = doc["sink"]["config"]
    assert isinstance(cfg["sasl.password"], Secret) and cfg["client.id"] == "app"
    assert SECRET not in repr(doc)
    assert isinstance(doc, Mapping)
