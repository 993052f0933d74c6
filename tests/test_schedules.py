"""Every schedule against the formulas of docs/ALGORITHMS.md §3, at chosen points."""

import math

import pytest

from regrow.errors import RegrowError
from regrow.schedules import SCHEDULES, build_schedule

LR_MAX, LR_MIN = 3e-4, 3e-5


def make(name, **kw):
    return build_schedule({"name": name, "lr_max": LR_MAX, "lr_min": LR_MIN, **kw}, 1000)


def test_registry_has_all_schedules():
    assert set(SCHEDULES) == {"constant", "cosine", "wsd", "infinite", "inverse_sqrt"}


def test_warmup_is_linear_to_lr_max():
    for name in SCHEDULES:
        s = make(name, warmup_steps=10) if name != "infinite" else make(name, warmup_steps=10, cooldown_steps=100)
        assert s(5) == pytest.approx(LR_MAX * 5 / 10)
        assert s(10) == pytest.approx(LR_MAX)


def test_cosine_matches_ibrahim_formula():
    s = make("cosine", warmup_steps=10, total_steps=110)
    for t in (10, 35, 60, 85, 110):
        expected = LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * (t - 10) / 100))
        assert s(t) == pytest.approx(expected)
    assert s(60) == pytest.approx((LR_MAX + LR_MIN) / 2)
    assert s(500) == pytest.approx(LR_MIN)  # past the end it stays at lr_min


@pytest.mark.parametrize(
    "shape,f",
    [
        ("linear", lambda x: 1 - x),
        ("cosine", lambda x: 0.5 * (1 + math.cos(math.pi * x))),
        ("sqrt", lambda x: 1 - math.sqrt(x)),
        ("exp", lambda x: 0.5 ** (x * 200 / 40)),
    ],
)
def test_wsd_cooldown_shapes(shape, f):
    s = make("wsd", warmup_steps=10, total_steps=1000, decay_fraction=0.2, decay_shape=shape, half_life_steps=40)
    assert s(500) == pytest.approx(LR_MAX)  # stable phase
    assert s(800) == pytest.approx(LR_MAX)  # decay starts after step 800
    for t in (850, 900, 1000):
        x = (t - 800) / 200
        assert s(t) == pytest.approx(LR_MIN + (LR_MAX - LR_MIN) * f(x))


def test_infinite_cosine_cooldown_constant_and_anneal():
    lr_const = 1.65e-4
    s = make("infinite", warmup_steps=10, cooldown_steps=90, lr_const=lr_const, anneal_steps=100, total_steps=1000)
    x = (55 - 10) / 90
    assert s(55) == pytest.approx(lr_const + 0.5 * (LR_MAX - lr_const) * (1 + math.cos(math.pi * x)))
    assert s(100) == pytest.approx(lr_const)
    assert s(500) == pytest.approx(lr_const) and s(900) == pytest.approx(lr_const)
    assert s(950) == pytest.approx(lr_const * (LR_MIN / lr_const) ** 0.5)
    assert s(1000) == pytest.approx(LR_MIN)


def test_infinite_inverse_sqrt_cooldown():
    lr_const, alpha = 1.65e-4, 10.0
    s = make("infinite", warmup_steps=0, cooldown_steps=100, lr_const=lr_const, cooldown_shape="inv_sqrt", alpha=alpha)

    def g(x):
        return 1 / math.sqrt(1 + alpha * x) - 1

    for t in (10, 50, 100):
        x = t / 100
        assert s(t) == pytest.approx(LR_MAX + (lr_const - LR_MAX) * g(x) / g(1))
    assert s(100) == pytest.approx(lr_const)
    assert s(999) == pytest.approx(lr_const)  # no anneal requested: constant forever


def test_inverse_sqrt_and_constant():
    s = make("inverse_sqrt", warmup_steps=100)
    assert s(400) == pytest.approx(LR_MAX * math.sqrt(100 / 400))
    assert make("inverse_sqrt", warmup_steps=1)(10**9) == pytest.approx(LR_MIN)  # floored
    assert make("constant")(12345) == LR_MAX


def test_schedule_total_steps_is_independent_of_run_length():
    s = build_schedule({"name": "cosine", "total_steps": 200, "lr_max": 1.0, "lr_min": 0.0}, default_total_steps=50)
    assert s.total == 200 and s(100) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"name": "nope"}, r"unknown schedule 'nope'; allowed: constant, cosine"),
        ({"name": "wsd", "decay_shape": "cubic"}, r"unknown schedule.decay_shape 'cubic'; allowed: linear"),
        ({"name": "infinite", "cooldown_shape": "step"}, r"unknown schedule.cooldown_shape 'step'"),
        ({"name": "cosine", "lr_min": 1.0, "lr_max": 0.1}, r"lr_min 1.0 must be within \[0, lr_max = 0.1\]"),
        ({"name": "wsd", "warmup_steps": 950, "decay_fraction": 0.2}, r"warmup_steps 950 runs past the decay start at step 800"),
        ({"name": "infinite", "warmup_steps": 500, "cooldown_steps": 400, "anneal_steps": 200}, r"phases overlap"),
        ({"name": "cosine", "warmup_steps": 1000}, r"warmup_steps 1000 must be < total_steps 1000"),
        ({"name": "cosine", "decay": 1}, r"unknown config key 'schedule.decay'"),
    ],
)
def test_bad_schedules(spec, message):
    with pytest.raises(RegrowError, match=message):
        build_schedule(spec, 1000)
