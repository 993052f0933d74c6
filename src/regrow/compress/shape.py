"""Architecture shapes: the prunable sizes of a decoder, and the target a user asks for.

Five sizes every decoder has (layers, hidden, heads, kv heads, MLP width), four a mixture of
experts adds (experts, experts per token, expert width, shared-expert width; with group-limited
routing its groups and groups per token) and the Mamba-2 heads of a hybrid (`mamba_num_heads`,
their size `mamba_head_dim` and groups `mamba_groups`; the state size is kept) and its
gated-DeltaNet key and value heads (`linear_num_key_heads`, `linear_num_value_heads`; their head
sizes are kept; each key head serves the same number of consecutive value heads). A target is a
YAML/JSON file with any of the model's keys (others kept), an existing HF `config.json` to
match, or a fraction of parameters to keep (`--target-ratio`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from regrow.errors import RegrowError
from regrow.reading import read_json, read_yaml

DENSE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size")
EXPERT_KEYS = ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size", "n_group",
               "topk_group")
LATENT_KEYS = ("q_lora_rank", "kv_lora_rank")  # multi-head latent attention (DeepSeek-V2/V3)
HYBRID_KEYS = ("mamba_num_heads", "mamba_head_dim", "mamba_groups", "linear_num_key_heads", "linear_num_value_heads")
SHAPE_KEYS = DENSE_KEYS + EXPERT_KEYS + HYBRID_KEYS + LATENT_KEYS
LAYER_COUNTS = "num_layers_by_kind"  # a hybrid target's layers per kind, e.g. {attention: 4}


@dataclass(frozen=True)
class ArchShape:
    """The sizes pruning can change; head_dim is never pruned (heads are kept or dropped whole).
    A size of 0 means the model has no such part: intermediate_size 0 = no dense MLP layer (every
    layer is a mixture of experts), num_experts 0 = a dense model."""

    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    head_dim: int
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    n_group: int = 0  # group-limited routing (DeepSeek-V3, Nemotron-H): experts in n_group equal groups,
    topk_group: int = 0  # a token's experts chosen from its best topk_group groups
    moe_latent_size: int = 0  # experts computed in a latent space of this size (Nemotron-H; kept whole)
    mamba_num_heads: int = 0
    mamba_head_dim: int = 0
    mamba_groups: int = 0
    mamba_state: int = 0
    linear_num_key_heads: int = 0  # gated DeltaNet (Qwen3-Next, Qwen3.5): query/key heads
    linear_num_value_heads: int = 0  # value heads, a whole multiple of the key heads
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    q_lora_rank: int = 0  # multi-head latent attention (DeepSeek-V2/V3): the query's latent rank (0: no latent)
    kv_lora_rank: int = 0  # the keys' and values' shared latent rank
    qk_rope_head_dim: int = 0  # a head's query/key dims with RoPE (the rope key is shared by every head; head_dim is then the rest)
    v_head_dim: int = 0  # a head's value dims when they differ from head_dim (what o_proj reads per head)
    # a hybrid's layers by kind ("mamba", "attention"; () = one kind): a fact of the model the shape
    # was read from, not a size, so shapes compare without it
    layer_kinds: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    # a target's layers to keep of some kinds ((kind, count), ...; the others share the rest)
    layers_by_kind: tuple[tuple[str, int], ...] = dataclasses.field(default=(), compare=False)

    def keys(self) -> tuple[str, ...]:
        """The sizes this model has (a target may name these)."""
        return tuple(k for k in SHAPE_KEYS if getattr(self, k) > 0)

    @property
    def group_size(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def units(self, unit: str) -> int:
        """How many units of a kind one layer (or the model, for hidden) has."""
        return {"hidden": self.hidden_size, "head": self.num_attention_heads, "kv": self.num_key_value_heads,
                "mlp": self.intermediate_size, "expert": self.num_experts, "expert_mlp": self.moe_intermediate_size,
                "shared_mlp": self.shared_expert_intermediate_size, "mamba_head": self.mamba_num_heads,
                "mamba_channel": self.mamba_head_dim,
                "mamba_group": self.mamba_groups, "linear_key": self.linear_num_key_heads,
                "linear_head": self.linear_num_value_heads,
                "q_latent": self.q_lora_rank, "kv_latent": self.kv_lora_rank, "rope_key": 1,  # one shared rope key
                "conv": self.hidden_size}[unit]  # a short conv's channels: as many as the hidden size

    def replace(self, **changes) -> ArchShape:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        text = (f"layers {self.num_hidden_layers}, hidden {self.hidden_size}, heads {self.num_attention_heads} "
                f"(kv {self.num_key_value_heads}, head_dim {self.head_dim})")
        if self.intermediate_size:
            text += f", mlp {self.intermediate_size}"
        if self.num_experts:
            text += f", experts {self.num_experts} (top-{self.num_experts_per_tok}, width {self.moe_intermediate_size})"
        if self.n_group > 1:
            text += f" in {self.n_group} groups (top-{self.topk_group} groups)"
        if self.shared_expert_intermediate_size:
            text += f", shared expert {self.shared_expert_intermediate_size}"
        if self.mamba_num_heads:
            text += f", mamba heads {self.mamba_num_heads} (head_dim {self.mamba_head_dim}, groups {self.mamba_groups})"
        if self.kv_lora_rank:
            text += f", latent ranks q {self.q_lora_rank or 'none'} / kv {self.kv_lora_rank}"
        if self.linear_num_value_heads:
            text += (f", linear-attention heads {self.linear_num_key_heads} key x {self.linear_key_head_dim} / "
                     f"{self.linear_num_value_heads} value x {self.linear_value_head_dim}")
        return text

    @property
    def head_out_dim(self) -> int:
        """What one attention head hands the output projection (MLA: its value dims)."""
        return self.v_head_dim or self.head_dim

    @property
    def linear_group_size(self) -> int:
        """Value heads per key head of a gated DeltaNet."""
        return self.linear_num_value_heads // max(self.linear_num_key_heads, 1)


def read_target_spec(path: str | Path) -> dict:
    """The raw mapping of a target file (YAML or JSON)."""
    path = Path(path)
    if not path.is_file():
        raise RegrowError(f"--target {str(path)!r} is not a file; give a YAML/JSON shape or an HF config.json")
    data = read_json(path, "--target") if path.suffix == ".json" else read_yaml(path, "--target")
    if not isinstance(data, dict) or not data:
        raise RegrowError(f"--target {str(path)!r} must be a mapping with any of: {', '.join(SHAPE_KEYS)}")
    return data


def allowed_keys(source: ArchShape) -> tuple[str, ...]:
    return source.keys() + ((LAYER_COUNTS,) if len(set(source.layer_kinds)) > 1 else ())


def layer_counts(value, source: ArchShape, where: str) -> tuple[tuple[str, int], ...]:
    """A target's `num_layers_by_kind` checked against the source: kinds it has, 1..its count of each."""
    have = {kind: source.layer_kinds.count(kind) for kind in dict.fromkeys(source.layer_kinds)}
    if not isinstance(value, dict) or not value:
        raise RegrowError(f"{where}: {LAYER_COUNTS} must map layer kinds to counts, e.g. {{{next(iter(have))}: 1}}; "
                          f"kinds of this model: {', '.join(f'{k} ({n})' for k, n in have.items())}")
    for kind, count in value.items():
        if kind not in have:
            raise RegrowError(f"{where}: {LAYER_COUNTS} names layer kind {kind!r}, which the model does not have; "
                              f"allowed: {', '.join(f'{k} (1..{n})' for k, n in have.items())}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= have[kind]:
            raise RegrowError(f"{where}: {LAYER_COUNTS} asks for {count!r} {kind} layers; the source has {have[kind]} "
                              f"(allowed: 1..{have[kind]}: every kind keeps at least one layer)")
    return tuple(value.items())


def shape_from_spec(spec: dict, source: ArchShape, where: str) -> ArchShape:
    """Apply a shape spec (any of the source's keys) to the source shape; everything unnamed is kept.
    Layers per kind (`num_layers_by_kind`) set the layer count when it is not named: the named
    kinds' counts plus every layer of the other kinds."""
    unknown = sorted(set(spec) - set(SHAPE_KEYS) - {LAYER_COUNTS})
    if unknown:
        raise RegrowError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed_keys(source))} "
                          "(or pass a full HF config.json)")
    spec = dict(spec)
    by_kind = ()
    if LAYER_COUNTS in spec:
        if len(set(source.layer_kinds)) < 2:
            raise RegrowError(f"{where}: {LAYER_COUNTS} names layer kinds, but this model's layers are all of one kind; "
                              "give num_hidden_layers")
        by_kind = layer_counts(spec.pop(LAYER_COUNTS), source, where)
        named = dict(by_kind)
        spec.setdefault("num_hidden_layers", sum(named.values()) + sum(k not in named for k in source.layer_kinds))
    absent = [k for k in spec if k not in source.keys()]
    if absent:
        what = {"shared_expert_intermediate_size": "no shared expert",
                "intermediate_size": "no dense MLP layer (every layer is a mixture of experts)",
                "mamba_num_heads": "no Mamba-2 layer", "mamba_groups": "no Mamba-2 layer",
                "mamba_head_dim": "no Mamba-2 layer", "q_lora_rank": "no query latent (q_lora_rank is null)",
                "kv_lora_rank": "no latent attention", "linear_num_key_heads": "no gated-DeltaNet layer",
                "linear_num_value_heads": "no gated-DeltaNet layer"}.get(absent[0], "no experts (a dense model)")
        raise RegrowError(f"{where}: {absent[0]} names a part the model does not have ({what}); allowed: "
                          f"{', '.join(allowed_keys(source))}")
    values = {}
    for key, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise RegrowError(f"{where}: {key} is {value!r}; it must be a whole number")
        values[key] = value
    return source.replace(**values, layers_by_kind=by_kind)


def check_expert_groups(source: ArchShape, target: ArchShape, least: int = 2) -> None:
    """Group-limited routing: the kept experts fill the kept groups evenly (at least `least` each:
    DeepSeek-V3's router scores a group by its best two), the kept groups can serve a token's top-k."""
    experts, groups, top_groups = target.num_experts, target.n_group, target.topk_group
    per_group = source.num_experts // source.n_group
    if experts % groups or not least <= experts // groups <= per_group:
        allowed = ", ".join(str(groups * n) for n in range(least, per_group + 1))
        raise RegrowError(f"target num_experts {experts} does not divide into the {groups} kept expert groups (n_group) "
                          f"with {least}..{per_group} experts in each; allowed num_experts: {allowed}")
    if top_groups > groups:
        raise RegrowError(f"target topk_group {top_groups} is larger than the {groups} expert groups left (n_group); "
                          f"allowed: 1..{groups}")
    if target.num_experts_per_tok > top_groups * (experts // groups):
        raise RegrowError(f"target num_experts_per_tok {target.num_experts_per_tok} is more than the experts of the "
                          f"topk_group {top_groups} groups a token may use ({top_groups} x {experts // groups}); allowed: "
                          f"1..{top_groups * (experts // groups)}")


def check_target(source: ArchShape, target: ArchShape, family_rules=None, config_error=None) -> None:
    """Rules every family shares: positive, no larger than the source, legal grouped attention;
    `family_rules(source, target)` runs between the size and the grouping checks; last,
    `config_error(target)` gives the HF config class's own objection, if any."""
    for key in source.keys():
        value, limit = getattr(target, key), getattr(source, key)
        if value < 1:
            raise RegrowError(f"target {key} is {value}; it must be >= 1")
        if value > limit:
            raise RegrowError(f"target {key} {value} is larger than the source's {limit}; pruning can only shrink "
                              f"(allowed: 1..{limit})")
    if target.num_experts_per_tok > target.num_experts:
        raise RegrowError(f"target num_experts_per_tok {target.num_experts_per_tok} is above the kept experts "
                          f"({target.num_experts}); allowed: 1..{target.num_experts}")
    kinds = sorted(set(source.layer_kinds))
    if target.num_hidden_layers < len(kinds):
        raise RegrowError(f"target num_hidden_layers {target.num_hidden_layers} cannot keep a layer of each kind the "
                          f"source has ({', '.join(kinds)}); allowed: {len(kinds)}..{source.num_hidden_layers}")
    if target.layers_by_kind:
        named = dict(target.layers_by_kind)
        others = [k for k in source.layer_kinds if k not in named]
        low, high = sum(named.values()) + len(set(others)), sum(named.values()) + len(others)
        if not low <= target.num_hidden_layers <= high:
            described = ", ".join(f"{k} {n}" for k, n in named.items())
            raise RegrowError(f"target num_hidden_layers {target.num_hidden_layers} does not fit {LAYER_COUNTS} "
                              f"({described}) and at least one, at most all, layers of each other kind; allowed: "
                              f"{low}..{high}" if low < high else f"target num_hidden_layers {target.num_hidden_layers} "
                              f"does not fit {LAYER_COUNTS} ({described}); allowed: {low}")
    if target.mamba_num_heads % max(target.mamba_groups, 1):
        per_group = source.mamba_num_heads // source.mamba_groups
        raise RegrowError(f"target mamba_num_heads {target.mamba_num_heads} does not divide into the {target.mamba_groups} "
                          f"Mamba groups (heads share B and C within a group, each keeps the same number); allowed: "
                          f"multiples of {target.mamba_groups} up to {target.mamba_groups * per_group} ({per_group} per group)")
    if target.mamba_groups and target.mamba_num_heads // target.mamba_groups > source.mamba_num_heads // source.mamba_groups:
        per_group = source.mamba_num_heads // source.mamba_groups
        raise RegrowError(f"target has {target.mamba_num_heads // target.mamba_groups} Mamba heads per group but the source "
                          f"only {per_group}; with {target.mamba_groups} groups allowed mamba_num_heads: multiples of "
                          f"{target.mamba_groups} up to {target.mamba_groups * per_group}")
    keys, values = target.linear_num_key_heads, target.linear_num_value_heads
    if values % max(keys, 1):
        raise RegrowError(f"target linear_num_value_heads {values} is not a multiple of linear_num_key_heads {keys}; every "
                          "key head of a gated DeltaNet serves the same number of value heads")
    if keys and values // keys > source.linear_group_size:
        raise RegrowError(
            f"target has {values // keys} value heads per linear-attention key head but the source only "
            f"{source.linear_group_size}; with {keys} key heads allowed linear_num_value_heads: multiples of {keys} up to "
            f"{keys * source.linear_group_size}")
    if family_rules is not None:
        family_rules(source, target)
    heads, groups = target.num_attention_heads, target.num_key_value_heads
    if heads % groups:
        raise RegrowError(f"target num_attention_heads {heads} is not divisible by num_key_value_heads {groups}; "
                          "every key/value head must serve the same number of query heads")
    if heads // groups > source.group_size:
        raise RegrowError(
            f"target has {heads // groups} query heads per key/value head but the source only {source.group_size}; "
            f"with {groups} kv heads allowed num_attention_heads: multiples of {groups} up to {groups * source.group_size}"
        )
    problem = config_error(target) if config_error is not None else None
    if problem:
        raise RegrowError(f"the HF config class rejects the target shape ({target.describe()}): {problem}")
