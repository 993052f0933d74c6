from dataclasses import dataclass, field

import pytest

from regrow.config import apply_overrides, from_dict, load_config
from regrow.errors import RegrowError
from regrow.train.config import RunConfig


@dataclass
class Inner:
    n: int = 1
    rate: float = 0.5
    names: list[str] | None = None


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    table: dict = field(default_factory=dict)


def test_from_dict_builds_nested_and_coerces_numbers():
    cfg = from_dict(Outer, {"name": "a", "inner": {"n": 3, "rate": "3e-4", "names": ["p"]}, "table": {"k": 1}})
    assert cfg.inner.n == 3 and cfg.inner.rate == pytest.approx(3e-4) and cfg.inner.names == ["p"]
    assert cfg.table == {"k": 1}


def test_unknown_key_names_key_and_allowed():
    with pytest.raises(RegrowError, match=r"'inner.m'.*allowed: n, rate, names"):
        from_dict(Outer, {"inner": {"m": 1}})


def test_wrong_type_is_rejected():
    with pytest.raises(RegrowError, match=r"'inner.n' must be an integer"):
        from_dict(Outer, {"inner": {"n": "many"}})


def test_overrides_parse_yaml_values_and_check_keys(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  init: m\ndata:\n  path: d\ntrain:\n  steps: 5\n")
    cfg = load_config(RunConfig, path, ["train.steps=7", "data.mixture.code=0.25", "schedule.name=wsd",
                                        "schedule.decay_fraction=0.5"])
    assert cfg.train.steps == 7
    assert cfg.data.mixture == {"code": 0.25}
    assert cfg.schedule.name == "wsd" and cfg.schedule.decay_fraction == 0.5
    with pytest.raises(RegrowError, match=r"unknown --set key 'train.stepz'"):
        load_config(RunConfig, path, ["train.stepz=1"])


def test_apply_overrides_creates_nested_maps():
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
