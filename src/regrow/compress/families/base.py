"""The family-adapter interface: where a decoder's prunable units live and how they are cut.

An adapter is declarative: module paths for each role (query projection, key/value
projections, attention output, MLP in/out, norms, the modules that write into the residual
stream). From those roles the shared code derives the masking hooks, the slicing and folding
of every parameter, magnitude scores and the target config, so a new family is one small file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from regrow.compress.shape import SHAPE_KEYS, ArchShape, check_expert_groups
from regrow.errors import RegrowError
from regrow.registry import Registry

FAMILIES: Registry[type[FamilyAdapter]] = Registry("family")
DELTANET_KEYS = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim")


@dataclass(frozen=True)
class Axis:
    """One tensor dimension indexed by a unit: `block` elements per unit (e.g. head_dim per head).

    fold: None (slice only), "unit" (multiply by the unit's mask value) or "writer" (multiply by
    the layer gate times the hidden mask: the module writes this dimension into the residual).
    stacked: a fused projection whose dimension is several unit ranges one after another (Phi-3's
    qkv_proj: all query heads, then all key heads, then all value heads), as (unit, block) pairs;
    sliced part by part, never folded.
    groups: the stacked parts repeat once per unit of this kind, each repeat over that unit's
    share of every part's units (Qwen3-Next's in_proj_qkvz: per key head [its q | its k | its value
    heads' v | their z]).
    inner: each unit's `block` entries are themselves units of this kind, the same kept ones in
    every unit (a Mamba-2 head's channels, `mamba_channel`); a stacked part names it third.
    """

    dim: int
    unit: str
    block: int = 1
    fold: str | None = None
    offset: float = 0.0  # a norm gain applied as (offset + weight) (Gemma: 1): folds as (offset + w) m - offset
    stacked: tuple[tuple, ...] = ()  # (unit, block) or (unit, block, inner) parts
    groups: str | None = None
    inner: str | None = None

    def parts(self) -> tuple[tuple[str, int, str | None], ...]:
        """The (unit, block, inner) ranges along the dimension, in order (one repeat of them, if grouped)."""
        return tuple((*part, None)[:3] for part in self.stacked) or ((self.unit, self.block, self.inner),)

    def segments(self, shape: ArchShape) -> list[tuple[str, int, int, int, str | None]]:
        """The dimension as consecutive (unit, block, first unit, unit count, inner) runs."""
        repeats = shape.units(self.groups) if self.groups else 1
        return [(unit, block, g * (shape.units(unit) // repeats), shape.units(unit) // repeats, inner)
                for g in range(repeats) for unit, block, inner in self.parts()]


@dataclass(frozen=True)
class LayerRoles:
    """Module paths inside one decoder layer, by role."""

    q: tuple[str, ...] = ()  # output rows = query heads x head_dim
    qkv_fused: str | None = None  # output rows = heads x (q, k, v) x head_dim, interleaved per head
    qkv_stacked: str | None = None  # output rows = [all q heads | all k heads | all v heads] (Phi-3)
    kv: tuple[str, ...] = ()  # output rows = kv heads x head_dim
    attn_out: str = ""  # input = concatenated head contexts; output = hidden
    mlp_in: tuple[str, ...] = ()  # output rows = MLP channels
    mlp_in_stacked: str | None = None  # output rows = [gate channels | up channels] (Phi-3's gate_up_proj)
    mlp_out: str = ""  # input = MLP channels; output = hidden
    norms: tuple[str, ...] = ()  # norms over hidden whose output feeds a sublayer
    writers: tuple[str, ...] = ()  # modules whose output is added to the residual stream
    q_norm: str | None = None  # norm over the whole query projection (OLMo-2)
    k_norm: str | None = None  # norm over the whole key projection (OLMo-2)
    head_norms: tuple[str, ...] = ()  # norms over one head's head_dim, shared by every head (Qwen3): kept whole
    head_params: tuple[str, ...] = ()  # parameters with one entry per query head (gpt-oss's attention sinks)
    # a mixture of experts (transformers 5 layout): the router's weight is [experts, hidden]; the
    # experts module holds gate_up_proj [experts, 2 x width, hidden] ([gate | up] rows) and
    # down_proj [experts, hidden, width]; the block (`moe_block`) writes into the residual stream
    router: str | None = None
    experts: str | None = None
    moe_block: str | None = None
    shared_in: tuple[str, ...] = ()  # the shared expert's gate and up projections (Qwen2-MoE)
    shared_out: str | None = None  # the shared expert's down projection
    shared_gate: str | None = None  # Linear(hidden, 1): sigmoid gate of the shared expert
    router_bias: str | None = None  # a per-expert bias added to the scores that choose experts (a saved buffer)
    shared_in_stacked: str | None = None  # the shared expert's fused [gate | up] projection (Granite-4)
    experts_gated: bool = True  # False: the experts hold up_proj [experts, width, in] and act(up) feeds down (Nemotron-H)
    latent_in: str | None = None  # Linear(hidden, latent): the experts run in a latent space (Nemotron-H's
    latent_out: str | None = None  # moe_latent_size, kept whole); Linear(latent, hidden) writes their sum back
    # a Mamba-2 mixer (hybrids): in_proj rows [z | x | B | C | dt], conv1d over [x | B | C], per-head
    # dt_bias / A_log / D, a gated RMSNorm over groups of channels (`norm`), out_proj; layers
    # without it (attention layers) simply lack the module, as dense layers lack the experts
    mamba: str | None = None
    # a short-convolution operator (LFM2): in_proj rows [B | C | x], a depthwise conv over B x, C
    # times it, out_proj; its channels (`conv` units) are as many as the hidden size
    short_conv: str | None = None
    # a gated DeltaNet (Qwen3-Next, Qwen3.5): the output projection, whose input is the value heads'
    # gated-normed outputs (head_v_dim each); its other parameters are the family's `deltanet_axes`
    deltanet_out: str | None = None
    # multi-head latent attention (DeepSeek-V2/V3): the attention module holding q_a_proj, q_a_layernorm,
    # q_b_proj (or q_proj), kv_a_proj_with_mqa, kv_a_layernorm and kv_b_proj; `attn_out` is its o_proj
    mla: str | None = None


class FamilyAdapter:
    """Base class; a family sets the class attributes and overrides the few hooks it needs."""

    name: str = ""  # set by FAMILIES.register
    model_types: tuple[str, ...] = ()
    layers_path: str = ""
    embedding: str = ""
    embedding_norm: str | None = None
    final_norm: str = ""
    lm_head: str = ""
    roles: LayerRoles = LayerRoles()
    # a hybrid whose kinds of layer use one module name in different roles (OLMo-hybrid: the
    # post-attention norm writes into the residual in attention layers and feeds the MLP in
    # DeltaNet layers): layer kind -> that kind's roles; other kinds use `roles`
    kind_roles: dict[str, LayerRoles] = {}
    head_dim_from_hidden: bool = False  # the HF class derives head_dim = hidden_size / heads
    grouped_attention: bool = True  # the HF class has num_key_value_heads
    mlp_ratio_fixed: int | None = None  # the HF class fixes intermediate = ratio * hidden (Bloom)
    norm_weights: bool = True  # False: norms have no gain (OLMo-1), so the hidden mask folds into their consumers
    norm_offset: float = 0.0  # norms scale by (norm_offset + weight) (Gemma: 1.0)
    per_layer_fields: tuple[str, ...] = ("layer_types",)  # config lists with one entry per layer: follow the kept layers
    experts_key: str | None = None  # the config's expert count (num_experts, Mixtral's num_local_experts); None: dense
    expert_width_key: str = "moe_intermediate_size"  # the config's expert width (Mixtral, OLMoE: intermediate_size)
    shared_width_key: str | None = None  # the config's shared-expert width (Qwen2-MoE)
    # Mamba-2 config names (hybrids): heads, head size, groups, state size, and the expansion
    # factor the HF class derives its Mamba width from (width = expand x hidden_size)
    mamba_keys: dict[str, str] = {}  # ArchShape field -> the config's name (mamba_num_heads -> mamba_n_heads ...)
    mamba_expand_key: str | None = None
    mamba_width_key: str | None = None  # or the config states the Mamba width itself (Falcon-H1: mamba_d_ssm)
    query_gate: bool = False  # gated attention (Qwen3-Next): q_proj rows are per head [query | output gate]
    min_experts_per_group: int = 2  # group-limited routing: the fewest experts a kept group may keep
    first_layer_kinds: tuple[str, ...] = ()  # the kinds a pruned model may start with (select.keep_first_layer); () any

    # ---- reading the model -------------------------------------------------------------------
    def shape(self, config) -> ArchShape:
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) if self.grouped_attention else None
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        intermediate = getattr(config, "intermediate_size", None) or (self.mlp_ratio_fixed or 4) * config.hidden_size
        shape = ArchShape(config.num_hidden_layers, config.hidden_size, heads, kv or heads, intermediate, head_dim)
        if self.mamba_keys:
            shape = shape.replace(**{field: getattr(config, key) for field, key in self.mamba_keys.items()})
        if self.roles.deltanet_out:
            shape = shape.replace(**{key: getattr(config, key) for key in DELTANET_KEYS})
        if self.experts_key is None:
            return shape
        if getattr(config, "n_group", None):  # group-limited routing (DeepSeek-V3, Nemotron-H)
            shape = shape.replace(n_group=config.n_group, topk_group=config.topk_group,
                                  moe_latent_size=getattr(config, "moe_latent_size", None) or 0)
        moe = self.moe_layers(config)
        return shape.replace(
            intermediate_size=intermediate if self.expert_width_key != "intermediate_size" and not all(moe) else 0,
            num_experts=getattr(config, self.experts_key), num_experts_per_tok=config.num_experts_per_tok,
            moe_intermediate_size=getattr(config, self.expert_width_key),
            shared_expert_intermediate_size=getattr(config, self.shared_width_key) if self.shared_width_key else 0,
        )

    def moe_layers(self, config) -> list[bool]:
        """Which layers are mixtures of experts (all of them unless the family mixes in dense MLPs)."""
        return [self.experts_key is not None] * config.num_hidden_layers

    def layer_overrides(self, config, index: int) -> dict:
        """Config fields that make a one-layer model of the same config build layer `index`'s
        own kind (its per-layer list entries): the streaming path's skeletons."""
        return {field: [values[index]] for field in self.per_layer_fields
                if isinstance(values := getattr(config, field, None), list) and len(values) == config.num_hidden_layers}

    def renormalises_top_k(self, config) -> bool:
        """Whether the router divides the chosen experts' probabilities by their sum."""
        return bool(getattr(config, "norm_topk_prob", False))

    def route(self, config, router: nn.Module, router_args: tuple, logits: torch.Tensor, dropped: torch.Tensor,
              top_k: int, top_groups: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The family's routing among the kept experts (`dropped`: bool [experts]; the router
        module, its call's arguments and its logits given; `top_groups`: the target's topk_group
        where it changes): (gate weights, chosen experts), what the sliced router computes. Here:
        softmax, top-k, renormalised over the chosen if the family does."""
        masked = logits.float().masked_fill(dropped, torch.finfo(torch.float32).min)
        top, chosen = torch.topk(torch.softmax(masked, dim=-1), top_k, dim=-1)
        if self.renormalises_top_k(config):
            top = top / top.sum(dim=-1, keepdim=True)
        return top, chosen

    def check_model(self, model) -> None:
        """Refuse configurations of the family that the adapter does not handle."""

    def layers(self, model) -> nn.ModuleList:
        return model.get_submodule(self.layers_path)

    # ---- the target -----------------------------------------------------------------------------
    def complete_spec(self, spec: dict, source: ArchShape) -> dict:
        """Fill sizes the family derives from others when the user did not name them: with
        head_dim = hidden / heads, naming only the heads implies the hidden size; a fixed MLP
        ratio implies the intermediate size."""
        spec = dict(spec)
        if self.head_dim_from_hidden:
            if "num_attention_heads" in spec and "hidden_size" not in spec:
                spec["hidden_size"] = spec["num_attention_heads"] * source.head_dim
            if not self.grouped_attention and "num_attention_heads" in spec:
                spec.setdefault("num_key_value_heads", spec["num_attention_heads"])
        if self.mlp_ratio_fixed and "intermediate_size" not in spec and "hidden_size" in spec:
            spec["intermediate_size"] = self.mlp_ratio_fixed * spec["hidden_size"]
        return spec

    def canonical_spec(self, spec: dict, where: str) -> dict:
        """A target spec with the family's own config names mapped to regrow's: the expert width to
        `moe_intermediate_size` (Mixtral and OLMoE call it intermediate_size), a Mamba head count
        to `mamba_num_heads` (Granite-4: mamba_n_heads), the expert count and the shared-expert width
        from the config's names (Mixtral's num_local_experts, Granite's shared_intermediate_size)."""
        own = {key: field for field, key in self.mamba_keys.items() if key != field and field in SHAPE_KEYS}
        for key, field in ((self.shared_width_key, "shared_expert_intermediate_size"), (self.experts_key, "num_experts")):
            if key and key != field:
                own[key] = field
        for key, field in own.items():
            if key in spec and field in spec and spec[key] != spec[field]:
                raise RegrowError(f"{where}: {key} {spec[key]} and {field} {spec[field]} name the same size of {self.name} "
                                  "with different values; give one of them")
        if any(key in spec for key in own):
            spec = {own.get(key, key): value for key, value in spec.items()}
        if self.experts_key is None or self.expert_width_key == "moe_intermediate_size" or self.expert_width_key not in spec:
            return spec
        spec = dict(spec)
        width = spec.pop(self.expert_width_key)
        if spec.setdefault("moe_intermediate_size", width) != width:
            raise RegrowError(f"{where}: {self.expert_width_key} {width} and moe_intermediate_size "
                              f"{spec['moe_intermediate_size']} disagree; {self.name} has one expert width: give one of them")
        return spec

    def check_target(self, source: ArchShape, target: ArchShape) -> None:
        """Family rules on top of the shared ones (shape.check_target)."""
        if source.n_group:
            check_expert_groups(source, target, self.min_experts_per_group)
        if not self.grouped_attention and target.num_key_value_heads != target.num_attention_heads:
            raise RegrowError(f"{self.name} has no grouped-query attention: target num_key_value_heads must equal "
                              f"num_attention_heads ({target.num_attention_heads})")
        if self.head_dim_from_hidden and target.hidden_size != target.num_attention_heads * source.head_dim:
            raise RegrowError(
                f"{self.name} derives head_dim = hidden_size / num_attention_heads, so a model with hidden_size "
                f"{target.hidden_size} and {target.num_attention_heads} heads would not load with the pruned "
                f"head_dim {source.head_dim}; allowed: hidden_size = num_attention_heads x {source.head_dim} "
                f"(= {target.num_attention_heads * source.head_dim})"
            )
        for key in ("hidden_size", "moe_intermediate_size") if self.experts_key else ():
            if getattr(source, key) % 8 == 0 and getattr(target, key) % 8:
                raise RegrowError(f"target {key} {getattr(target, key)} would not run in transformers' grouped expert "
                                  "kernels (rows of 16 bytes); allowed: multiples of 8")
        width = target.mamba_num_heads * target.mamba_head_dim
        if self.mamba_expand_key and width % target.hidden_size:
            raise RegrowError(f"{self.name} derives its Mamba width as the whole number {self.mamba_expand_key} x hidden_size, "
                              f"but mamba heads {target.mamba_num_heads} x head_dim {target.mamba_head_dim} = {width} is not a "
                              f"multiple of hidden_size {target.hidden_size}; choose mamba heads and hidden_size so that it is")
        if self.mlp_ratio_fixed and target.intermediate_size != self.mlp_ratio_fixed * target.hidden_size:
            raise RegrowError(f"{self.name} fixes intermediate_size = {self.mlp_ratio_fixed} x hidden_size; allowed: "
                              f"intermediate_size {self.mlp_ratio_fixed * target.hidden_size} for hidden_size {target.hidden_size}")

    def config_error(self, config, target: ArchShape) -> str | None:
        """Why the HF config class would refuse the target shape (its own validators), or None."""
        kinds = self.shape(config).layer_kinds  # a hybrid: the check keeps a layer of each kind, as selection will
        firsts = [kinds.index(kind) for kind in dict.fromkeys(kinds)]
        others = [i for i in range(config.num_hidden_layers) if i not in firsts]
        layers = sorted(firsts + others[: target.num_hidden_layers - len(firsts)])
        try:
            new = self.target_config(config, target, layers)
            validate = getattr(new, "validate", None)
            if validate is not None:
                validate()
        except Exception as err:  # noqa: BLE001  (HF raises its own validation error types)
            return str(err).strip().splitlines()[-1].strip()
        return None

    def target_config(self, config, target: ArchShape, kept_layers: list[int]):
        """The source config with the target sizes; per-layer lists follow the kept layers."""
        new = copy.deepcopy(config)
        new.num_hidden_layers = target.num_hidden_layers
        new.hidden_size = target.hidden_size
        new.num_attention_heads = target.num_attention_heads
        if self.grouped_attention:
            new.num_key_value_heads = target.num_key_value_heads
        if not self.mlp_ratio_fixed and (target.intermediate_size or hasattr(config, "intermediate_size")):
            new.intermediate_size = target.intermediate_size
        if not self.head_dim_from_hidden:
            new.head_dim = target.head_dim  # stated explicitly: hidden_size / heads may no longer give it
        for field in self.per_layer_fields:
            values = getattr(new, field, None)
            if isinstance(values, list) and len(values) == config.num_hidden_layers:
                setattr(new, field, [values[i] for i in kept_layers])
        if self.experts_key is not None:
            if self.expert_width_key == "intermediate_size":
                new.intermediate_size = target.moe_intermediate_size
            else:
                new.moe_intermediate_size = target.moe_intermediate_size
                if hasattr(config, "intermediate_size"):  # Qwen3.5-MoE's config has no dense width
                    new.intermediate_size = target.intermediate_size or config.intermediate_size
            setattr(new, self.experts_key, target.num_experts)
            new.num_experts_per_tok = target.num_experts_per_tok
            if self.shared_width_key:
                setattr(new, self.shared_width_key, target.shared_expert_intermediate_size)
            if target.n_group:
                new.n_group, new.topk_group = target.n_group, target.topk_group
        if self.mamba_keys:
            setattr(new, self.mamba_keys["mamba_num_heads"], target.mamba_num_heads)
            setattr(new, self.mamba_keys["mamba_head_dim"], target.mamba_head_dim)
            setattr(new, self.mamba_keys["mamba_groups"], target.mamba_groups)
        if self.mamba_expand_key:
            setattr(new, self.mamba_expand_key, target.mamba_num_heads * target.mamba_head_dim // target.hidden_size)
        if self.mamba_width_key:
            setattr(new, self.mamba_width_key, target.mamba_num_heads * target.mamba_head_dim)
        if self.roles.deltanet_out:
            new.linear_num_key_heads, new.linear_num_value_heads = target.linear_num_key_heads, target.linear_num_value_heads
        return new

    # ---- parameters ---------------------------------------------------------------------------
    def roles_of(self, kind: str | None) -> LayerRoles:
        """The roles in a layer of `kind` (a hybrid's layer kind; None: the family's roles)."""
        return self.kind_roles.get(kind, self.roles)

    def layer_kind(self, shape: ArchShape, index: int) -> str | None:
        return shape.layer_kinds[index] if shape.layer_kinds else None

    def layer_axes(self, shape: ArchShape, kind: str | None = None) -> dict[str, tuple[Axis, ...]]:
        """Every parameter of one decoder layer of `kind` (relative name) -> the unit axes of its
        dims (without per-kind roles, the union over the kinds of layer: a parameter a layer lacks
        is simply not looked up)."""
        r, head_dim = self.roles_of(kind), shape.head_dim
        hidden_in = Axis(1, "hidden", 1, None if self.norm_weights else "unit")
        axes: dict[str, tuple[Axis, ...]] = {}

        def out_rows(name: str, unit: str, block: int) -> None:
            axes[f"{name}.weight"] = (Axis(0, unit, block), hidden_in)
            axes[f"{name}.bias"] = (Axis(0, unit, block),)

        for name in r.q:
            out_rows(name, "head", 2 * head_dim if self.query_gate else head_dim)
        if r.qkv_fused:
            out_rows(r.qkv_fused, "head", 3 * head_dim)
        for name in r.kv:
            out_rows(name, "kv", head_dim)
        for name in r.mlp_in:
            out_rows(name, "mlp", 1)
        for name, parts in ((r.qkv_stacked, (("head", head_dim), ("kv", head_dim), ("kv", head_dim))),
                            (r.mlp_in_stacked, (("mlp", 1), ("mlp", 1)))):
            if name:
                rows = Axis(0, parts[0][0], parts[0][1], stacked=parts)
                axes[f"{name}.weight"], axes[f"{name}.bias"] = (rows, hidden_in), (rows,)
        block_writes = r.moe_block is not None and r.moe_block in r.writers  # the whole MLP block writes
        for name, unit, block in ((r.attn_out, "head", shape.head_out_dim), (r.mlp_out, "mlp", 1), (r.shared_out, "shared_mlp", 1)):
            if not name:
                continue
            writer = "writer" if name in r.writers or (block_writes and name != r.attn_out) else None
            axes[f"{name}.weight"] = (Axis(0, "hidden", 1, writer), Axis(1, unit, block, "unit"))
            axes[f"{name}.bias"] = (Axis(0, "hidden", 1, writer),)
        for name in r.shared_in:
            out_rows(name, "shared_mlp", 1)
        if r.shared_in_stacked:
            rows = Axis(0, "shared_mlp", stacked=(("shared_mlp", 1), ("shared_mlp", 1)))
            axes[f"{r.shared_in_stacked}.weight"], axes[f"{r.shared_in_stacked}.bias"] = (rows, hidden_in), (rows,)
        if r.mamba:
            axes.update(self.mamba_axes(r, shape, hidden_in))
        if r.mla:
            axes.update(self.mla_axes(r.mla, shape, hidden_in))
        if r.deltanet_out:
            writer = "writer" if r.deltanet_out in r.writers else None
            axes.update(self.deltanet_axes(r.deltanet_out.rsplit(".", 1)[0], shape, hidden_in))
            axes[f"{r.deltanet_out}.weight"] = (Axis(0, "hidden", 1, writer),
                                                Axis(1, "linear_head", shape.linear_value_head_dim, "unit"))
            axes[f"{r.deltanet_out}.bias"] = (Axis(0, "hidden", 1, writer),)
        if r.short_conv:
            rows = Axis(0, "conv", stacked=(("conv", 1), ("conv", 1), ("conv", 1)))
            writer = "writer" if f"{r.short_conv}.out_proj" in r.writers else None
            axes.update({
                f"{r.short_conv}.in_proj.weight": (rows, hidden_in), f"{r.short_conv}.in_proj.bias": (rows,),
                f"{r.short_conv}.conv.weight": (Axis(0, "conv"),), f"{r.short_conv}.conv.bias": (Axis(0, "conv"),),
                f"{r.short_conv}.out_proj.weight": (Axis(0, "hidden", 1, writer), Axis(1, "conv", 1, "unit")),
                f"{r.short_conv}.out_proj.bias": (Axis(0, "hidden", 1, writer),),
            })
        if r.shared_gate:
            axes[f"{r.shared_gate}.weight"] = (hidden_in,)
        if r.router:
            axes[f"{r.router}.weight"] = (Axis(0, "expert"), hidden_in)
        if r.router_bias:
            axes[r.router_bias] = (Axis(0, "expert"),)
        if r.experts:
            axes.update(self.expert_axes(r, shape, hidden_in))
        for name in r.norms:
            axes[f"{name}.weight"] = (Axis(0, "hidden", 1, "unit", self.norm_offset),)
            axes[f"{name}.bias"] = (Axis(0, "hidden", 1, "unit"),)
        for name in self.norm_writers(kind):  # a norm that writes into the residual (OLMo-2, Gemma-2/3)
                axes[f"{name}.weight"] = (Axis(0, "hidden", 1, "writer", self.norm_offset),)
                axes[f"{name}.bias"] = (Axis(0, "hidden", 1, "writer"),)
        if r.q_norm:
            axes[f"{r.q_norm}.weight"] = (Axis(0, "head", head_dim),)
        if r.k_norm:
            axes[f"{r.k_norm}.weight"] = (Axis(0, "kv", head_dim),)
        for name in r.head_norms:
            axes[f"{name}.weight"] = ()
        for name in r.head_params:
            axes[name] = (Axis(0, "head"),)
        return axes

    def expert_axes(self, r: LayerRoles, shape: ArchShape, hidden_in: Axis) -> dict[str, tuple[Axis, ...]]:
        """Fused experts: gate_up_proj [experts, gate | up rows, in] (or up_proj [experts, width,
        in]) and down_proj [experts, out, width]; in and out are the hidden size, or a latent size
        (kept whole) between the latent projections, which then take the hidden axes."""
        width = Axis(1, "expert_mlp", stacked=(("expert_mlp", 1), ("expert_mlp", 1)) if r.experts_gated else ())
        latent = bool(shape.moe_latent_size and r.latent_in)
        inner = () if latent else (Axis(2, "hidden", 1, hidden_in.fold),)
        outer = () if latent else (Axis(1, "hidden", 1, "writer"),)
        axes = {f"{r.experts}.{'gate_up_proj' if r.experts_gated else 'up_proj'}": (Axis(0, "expert"), width, *inner),
                f"{r.experts}.down_proj": (Axis(0, "expert", 1, "unit"), *outer, Axis(2, "expert_mlp", 1, "unit"))}
        if latent:
            axes.update({f"{r.latent_in}.weight": (hidden_in,), f"{r.latent_in}.bias": (),
                         f"{r.latent_out}.weight": (Axis(0, "hidden", 1, "writer"),),
                         f"{r.latent_out}.bias": (Axis(0, "hidden", 1, "writer"),)})
        return axes

    def mamba_axes(self, r: LayerRoles, shape: ArchShape, hidden_in: Axis) -> dict[str, tuple[Axis, ...]]:
        """A Mamba-2 mixer's parameters: whole heads (their z and x channels, dt, A, D, conv and
        norm channels) are cut; a group's B and C (`mamba_group`, shared by its heads) go when all
        its heads go; the heads' channels (`mamba_channel`: the same ones in every head) go from
        z, x, conv, norm and out_proj. A head's and a channel's mask values fold into out_proj's
        columns, as an attention head's into o_proj's."""
        head, state, channel = shape.mamba_head_dim, shape.mamba_state, "mamba_channel"
        rows = Axis(0, "mamba_head", head, stacked=(("mamba_head", head, channel), ("mamba_head", head, channel),
                                                    ("mamba_group", state), ("mamba_group", state), ("mamba_head", 1)))
        conv = Axis(0, "mamba_head", head, stacked=(("mamba_head", head, channel), ("mamba_group", state),
                                                    ("mamba_group", state)))
        mamba = r.mamba
        writer = "writer" if f"{mamba}.out_proj" in r.writers else None
        return {
            f"{mamba}.in_proj.weight": (rows, hidden_in), f"{mamba}.in_proj.bias": (rows,),
            f"{mamba}.conv1d.weight": (conv,), f"{mamba}.conv1d.bias": (conv,),
            **{f"{mamba}.{name}": (Axis(0, "mamba_head"),) for name in ("dt_bias", "A_log", "D")},
            f"{mamba}.norm.weight": (Axis(0, "mamba_head", head, inner=channel),),
            f"{mamba}.out_proj.weight": (Axis(0, "hidden", 1, writer), Axis(1, "mamba_head", head, "unit", inner=channel)),
            f"{mamba}.out_proj.bias": (Axis(0, "hidden", 1, writer),),
        }

    def mla_axes(self, attention: str, shape: ArchShape, hidden_in: Axis) -> dict[str, tuple[Axis, ...]]:
        """Multi-head latent attention's input side: a head's query rows [nope | rope] in q_b_proj
        (or q_proj) and its key-nope and value rows in kv_b_proj; the latents (`q_latent`,
        `kv_latent`) are rows of q_a_proj / kv_a_proj_with_mqa, their norms' channels and columns of
        q_b_proj / kv_b_proj (where their mask values fold); the shared rope key rows of
        kv_a_proj_with_mqa stay whole."""
        qk, kv = shape.head_dim + shape.qk_rope_head_dim, shape.head_dim + shape.head_out_dim  # head_dim: the nope part
        kv_rows = Axis(0, "kv_latent", stacked=(("kv_latent", 1), ("rope_key", shape.qk_rope_head_dim)))
        axes = {
            f"{attention}.q_proj.weight": (Axis(0, "head", qk), hidden_in),
            f"{attention}.q_a_proj.weight": (Axis(0, "q_latent"), hidden_in), f"{attention}.q_a_proj.bias": (Axis(0, "q_latent"),),
            f"{attention}.q_a_layernorm.weight": (Axis(0, "q_latent"),),
            f"{attention}.q_b_proj.weight": (Axis(0, "head", qk), Axis(1, "q_latent", 1, "unit")),
            f"{attention}.kv_a_proj_with_mqa.weight": (kv_rows, hidden_in), f"{attention}.kv_a_proj_with_mqa.bias": (kv_rows,),
            f"{attention}.kv_a_layernorm.weight": (Axis(0, "kv_latent"),),
            f"{attention}.kv_b_proj.weight": (Axis(0, "head", kv), Axis(1, "kv_latent", 1, "unit")),
        }
        return axes

    def deltanet_axes(self, mixer: str, shape: ArchShape, hidden_in: Axis) -> dict[str, tuple[Axis, ...]]:
        """A gated DeltaNet's input side, laid out as Qwen3.5's: in_proj_qkv rows [all q | all k |
        all v] (the depthwise conv1d's channels likewise), in_proj_z (the output gate, per value
        channel), in_proj_b / in_proj_a (one row per value head), per-value-head dt_bias and
        A_log; the gated norm is over one head's channels, shared by every head (kept whole).
        A key head goes when all the value heads it serves go (`linear_key`)."""
        k, v = shape.linear_key_head_dim, shape.linear_value_head_dim
        qkv = Axis(0, "linear_key", k, stacked=(("linear_key", k), ("linear_key", k), ("linear_head", v)))
        return {
            f"{mixer}.in_proj_qkv.weight": (qkv, hidden_in), f"{mixer}.conv1d.weight": (qkv,),
            f"{mixer}.in_proj_z.weight": (Axis(0, "linear_head", v), hidden_in),
            **{f"{mixer}.{name}.weight": (Axis(0, "linear_head"), hidden_in) for name in ("in_proj_b", "in_proj_a")},
            **{f"{mixer}.{name}": (Axis(0, "linear_head"),) for name in ("dt_bias", "A_log")},
            f"{mixer}.norm.weight": (),
        }

    def model_axes(self) -> dict[str, tuple[Axis, ...]]:
        """Parameters outside the decoder layers. The final norm's mask value is folded into the
        LM head, or is already in the embedding when they are tied (then `named_parameters`
        yields only the embedding), so the final norm is only sliced."""
        axes = {f"{self.embedding}.weight": (Axis(1, "hidden", 1, "unit"),)}
        if self.embedding_norm:
            axes[f"{self.embedding_norm}.weight"] = (Axis(0, "hidden", 1, "unit", self.norm_offset),)
            axes[f"{self.embedding_norm}.bias"] = (Axis(0, "hidden", 1, "unit"),)
        axes[f"{self.final_norm}.weight"] = (Axis(0, "hidden", offset=self.norm_offset),)
        axes[f"{self.final_norm}.bias"] = (Axis(0, "hidden"),)
        axes[f"{self.lm_head}.weight"] = (Axis(1, "hidden", 1, "unit"),)
        return axes

    def parameter_axes(self, name: str, shape: ArchShape) -> tuple[int | None, str, tuple[Axis, ...]]:
        """(layer index or None, name inside the layer, unit axes) of a parameter of the model;
        a parameter the adapter does not describe cannot be pruned."""
        prefix = self.layers_path + "."
        if name.startswith(prefix):
            index_text, rel = name[len(prefix):].split(".", 1)
            index = int(index_text)
            axes = self.layer_axes(shape, self.layer_kind(shape, index)).get(rel)
        else:
            index, rel, axes = None, name, self.model_axes().get(name)
        if axes is None:
            raise RegrowError(f"parameter {name!r} is not described by the {self.name} adapter; pruning it is unsupported")
        return index, rel, axes

    def embedding_scale(self, config) -> float:
        """The factor the model multiplies its embedding output by (Gemma: sqrt(hidden_size))."""
        return 1.0

    def rescale(self, name: str, tensor, source_hidden: int, target_hidden: int, tied: bool):
        """A pruned parameter corrected for what the pruned config changes on its own (Gemma: the
        embedding scale follows the hidden size); identity for most families."""
        return tensor

    # ---- masking extras -------------------------------------------------------------------------
    def norm_writers(self, kind: str | None = None) -> tuple[str, ...]:
        """The writers that are norms (OLMo-2's and Gemma's post-sublayer norms)."""
        r = self.roles_of(kind)
        mixers = (r.attn_out, r.mlp_out, r.moe_block, r.shared_out, r.deltanet_out, f"{r.mamba}.out_proj" if r.mamba else None,
                  f"{r.short_conv}.out_proj" if r.short_conv else None)
        return tuple(w for w in r.writers if w not in mixers)

    def extra_mask_hooks(self, model, hooks) -> list:
        """Family-specific hooks for the masked model (Bloom: ALiBi slopes); returns handles."""
        return []
