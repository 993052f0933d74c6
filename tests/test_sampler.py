import numpy as np
import pytest

from regrow.data.sampler import MixtureSampler
from regrow.data.store import TokenStore
from regrow.errors import RegrowError


def sampler(data_dir, weights, **kw):
    args = {"seq_len": 16, "micro_batch": 4, "grad_accum": 2, "seed": 3}
    args.update(kw)
    return MixtureSampler(TokenStore(data_dir), weights, **args)


def test_proportions_are_exact_within_a_few_sequences(data_dir):
    s = sampler(data_dir, {"code": 0.95, "prose": 0.05})
    counts = s.domain_counts(range(1250))  # 10,000 sequences
    assert counts["prose"] + counts["code"] == 10_000
    assert abs(counts["prose"] - 500) <= 3  # i.i.d. draws would be off by ~22
    # and in every window of 200 sequences too (short runs get their replay)
    g = np.arange(10_000, dtype=np.uint64)
    domains = s.domains_of(g)
    prose_idx = s._names.index("prose")
    for start in range(0, 10_000, 200):
        assert abs(int((domains[start:start + 200] == prose_idx).sum()) - 10) <= 2


def test_batches_are_deterministic_and_stateless(data_dir):
    a, b = sampler(data_dir, {"code": 0.5, "prose": 0.5}), sampler(data_dir, {"code": 0.5, "prose": 0.5})
    x1, y1 = a.batch(7, 1)
    for step in range(3):  # drawing other batches first changes nothing (O(1) resume)
        b.batch(step, 0)
    x2, y2 = b.batch(7, 1)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.array_equal(x1[:, 1:], y1[:, :-1])  # targets are inputs shifted by one
    assert not np.array_equal(a.batch(8, 1)[0], x1)
    c = sampler(data_dir, {"code": 0.5, "prose": 0.5}, seed=4)
    assert not np.array_equal(c.batch(7, 1)[0], x1)


def test_global_batch_is_independent_of_world_size(data_dir):
    """Two ranks with half the accumulation draw exactly the sequences of one process."""
    weights = {"code": 0.7, "prose": 0.3}
    single = sampler(data_dir, weights, micro_batch=4, grad_accum=2, world_size=1)
    ranks = [sampler(data_dir, weights, micro_batch=4, grad_accum=1, rank=r, world_size=2) for r in range(2)]
    for step in range(5):
        one = np.concatenate([single.batch(step, m)[0] for m in range(2)])
        two = np.concatenate([r.batch(step, 0)[0] for r in ranks])
        assert np.array_equal(one, two)


def test_sequences_come_from_the_right_domain(data_dir):
    store = TokenStore(data_dir)
    only_prose = sampler(data_dir, {"prose": 1.0, "code": 0.0})
    stream = store.domain("prose").tokens("train")
    x, y = only_prose.batch(0, 0)
    for row, target in zip(x.numpy(), y.numpy()):
        full = np.concatenate([row, target[-1:]])
        starts = np.flatnonzero(stream[: len(stream) - 16] == full[0])
        assert any(np.array_equal(stream[s : s + 17], full) for s in starts)


def test_weights_can_change_and_round_trip(data_dir):
    s = sampler(data_dir, {"code": 1.0, "prose": 0.0})
    assert s.domain_counts(range(10))["prose"] == 0
    s.set_weights({"code": 0.0, "prose": 2.0})
    assert s.weights == {"code": 0.0, "prose": 1.0}
    t = sampler(data_dir, {"code": 1.0, "prose": 0.0})
    t.load_state(s.state().to_dict())
    assert np.array_equal(s.batch(3, 0)[0], t.batch(3, 0)[0])


@pytest.mark.parametrize(
    "weights,message",
    [
        ({"code": 1.0, "german": 0.5}, r"names domain 'german', which the data folder lacks; it has: code, prose"),
        ({"code": -0.1, "prose": 1.0}, r"weight of 'code' is -0.1; weights must be numbers >= 0"),
        ({"code": 0.0, "prose": 0.0}, r"weights are all zero"),
        ({}, r"data.mixture is empty"),
    ],
)
def test_bad_mixtures(data_dir, weights, message):
    with pytest.raises(RegrowError, match=message):
        sampler(data_dir, weights)
