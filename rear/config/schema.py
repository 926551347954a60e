"""How a config is read and checked: value ranges, and dataclass defaults <- YAML <- key=value overrides."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take; every float must also be finite."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        return (f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open or self.high == math.inf else ']'}")

    def check(self, name: str, value: Any) -> None:
        """Raise ValueError naming `name` when `value` (None passes: an optional setting left off) is out."""
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number in {self}, got {value}")
        if value < self.low or value > self.high or (self.low_open and value == self.low) or (
                self.high_open and value == self.high):
            raise ValueError(f"{name} must lie in {self}, got {value:g}")


AT_LEAST_0, AT_LEAST_1, POSITIVE = Range(0), Range(1), Range(0, low_open=True)
FRACTION, PROBABILITY = Range(0, 1, high_open=True), Range(0, 1)  # [0, 1) and [0, 1]


def check_ranges(config: Any, prefix: str = "") -> None:
    """Every numeric setting of a config dataclass (nested ones too) within its class's RANGES, every
    float finite; a ValueError names the first key that is not, e.g. `optim.grad_clip`."""
    ranges = getattr(type(config), "RANGES", {})
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_ranges(value, name + ".")
        elif f.name in ranges:
            ranges[f.name].check(name, value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


T = TypeVar("T")


def _source_name(source: Any) -> str:
    if isinstance(source, (list, tuple)):
        return f"override {' '.join(source)}" if len(source) == 1 else "overrides"
    return f"config {source}" if isinstance(source, str) else "settings"


def merge(schema: type[T] | T, *sources: Any) -> T:
    """Dataclass defaults <- dicts / YAML (or JSON) paths / `key=value` lists, unknown keys rejected.

    Every failure is a one-line ValueError naming the source and the key: an unknown key, a value
    of the wrong type, malformed YAML, a mandatory value left unset."""
    merged = OmegaConf.structured(schema)
    for source in sources:
        try:
            if isinstance(source, (list, tuple)):
                layer = OmegaConf.from_dotlist(list(source))
            elif isinstance(source, str):
                layer = OmegaConf.load(source)
            else:
                layer = OmegaConf.create(source)
            if not OmegaConf.is_dict(layer):  # a YAML whose top level is a list or a scalar
                raise ValueError(f"{_source_name(source)}: the top level must be a mapping of settings (key: value), "
                                 f"got a {'list' if OmegaConf.is_list(layer) else 'value'}")
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as error:
            key = f" (key {error.full_key})" if getattr(error, "full_key", None) else ""
            raise ValueError(f"{_source_name(source)}: {(str(error).strip().splitlines() or [type(error).__name__])[0]}"
                             f"{key}") from None
        except yaml.YAMLError as error:
            where = f" at line {error.problem_mark.line + 1}" if getattr(error, "problem_mark", None) else ""
            raise ValueError(f"{_source_name(source)} is not valid YAML/JSON{where}: "
                             f"{getattr(error, 'problem', None) or error}") from None
    try:
        result = OmegaConf.to_object(merged)
    except MissingMandatoryValue as error:
        raise ValueError(f"{error.full_key} is not set: give it in the config or as {error.full_key}=...") from None
    except OmegaConfBaseException as error:  # e.g. ${oc.env:VAR,default} with a value of the wrong type
        raise ValueError(f"{getattr(error, 'full_key', None) or 'a setting'}: "
                         f"{(str(error).strip().splitlines() or [type(error).__name__])[0]}") from None
    if dataclasses.is_dataclass(result):
        check_ranges(result)  # every numeric setting in range before any work
    return result


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted key of every leaf of nested dicts."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + str(key)] = value
    return flat


def chosen_keys(*sources: Any) -> set[str]:
    """The dotted keys that YAML paths, dicts or `key=value` lists set explicitly (what data-derived
    defaults must not override)."""
    keys: set[str] = set()
    for source in sources:
        if isinstance(source, (list, tuple)):
            keys |= {item.split("=", 1)[0] for item in source}
        else:
            layer = OmegaConf.load(source) if isinstance(source, str) else OmegaConf.create(source)
            keys |= set(flatten(OmegaConf.to_container(layer, resolve=False)))
    return keys


def to_dict(config: Any) -> dict:
    """A plain nested dict of a config dataclass (JSON-ready: enums become their names)."""
    return dataclasses.asdict(
        config, dict_factory=lambda items: {k: v.name if isinstance(v, Enum) else v for k, v in items}
    )
