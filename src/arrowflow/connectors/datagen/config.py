"""Options of :class:`~arrowflow.connectors.datagen.DataGenSource`, validated in one place."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

from ...config import check_non_negative, check_positive, check_type
from ...errors import ConfigurationError
from .generators import FieldGenerator, GeneratorFunction

__all__ = ["DataGenConfig", "FieldsLike"]


FieldsLike = Mapping[str, FieldGenerator] | Seq[tuple[str, FieldGenerator]]


@dataclass(frozen=True, kw_only=True)
class DataGenConfig:
    """Options of :class:`DataGenSource` (see the module docstring)."""

    fields: tuple[tuple[str, FieldGenerator], ...] = ()
    count: int | None = None
    rows_per_second: float | None = None
    seed: int = 0
    batch_size: int = 65536
    num_splits: int = 1
    threads: int = 1
    generator: GeneratorFunction | None = None
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if bool(self.fields) == (self.generator is not None):
            raise ConfigurationError(
                "give either fields (a schema spec) or generator=, not both", option="fields"
            )
        names = [name for name, _ in self.fields]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"duplicate field names in {names}", option="fields")
        for name, gen in self.fields:
            check_type("fields", name, str)
            if not isinstance(gen, FieldGenerator):
                raise ConfigurationError(f"field {name!r}: {gen!r} is not a field generator", option="fields")
        if self.generator is not None and not callable(self.generator):
            raise ConfigurationError("generator must be callable(indices) -> batch", option="generator")
        check_type("count", self.count, int, allow_none=True)
        check_non_negative("count", self.count, allow_none=True)
        check_positive("rows_per_second", self.rows_per_second, allow_none=True)
        check_type("seed", self.seed, int)
        if self.seed < 0 or self.seed >= 2**128:
            raise ConfigurationError("seed must be within [0, 2**128)", option="seed")
        check_type("batch_size", self.batch_size, int)
        check_positive("batch_size", self.batch_size)
        check_type("num_splits", self.num_splits, int)
        check_positive("num_splits", self.num_splits)
        check_type("threads", self.threads, int)
        check_non_negative("threads", self.threads)
