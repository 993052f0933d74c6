"""The calibration (or mask-training) data of a pruning run: checked against the model, then sampled."""

from __future__ import annotations

from regrow.compress.config import PruneConfig
from regrow.data.sampler import MixtureSampler, validate_weights
from regrow.data.store import TokenStore
from regrow.data.tokenizer import fingerprint
from regrow.models.hf import check_compatible
from regrow.world import World, rank_batch


def calibration_sampler(cfg: PruneConfig, tokenizer, model, world: World | None = None) -> tuple[MixtureSampler, dict[str, float]]:
    """The sampler of the run's data (`--data`, `--mixture`), after checking that the data was
    tokenized with the model's tokenizer and fits its vocabulary and positions. With several
    processes each rank draws its slice of every `--batch-size` batch."""
    world = world or World()
    micro, accum = rank_batch(cfg.batch_size, cfg.batch_size, world.world_size, "--batch-size")
    store = TokenStore(cfg.data)
    mixture = validate_weights(cfg.mixture or {name: 1.0 for name in store.domain_names}, store.domain_names)
    if tokenizer is not None:
        store.check_tokenized_with(fingerprint(tokenizer), f"the model's tokenizer ({cfg.model})", list(mixture))
    check_compatible(model, store.vocab_size(), cfg.seq_len, "--seq-len")
    return MixtureSampler(store, mixture, cfg.seq_len, micro, accum, cfg.seed, world.rank, world.world_size), mixture
