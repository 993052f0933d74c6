"""Models sharded over the processes of a run (FSDP2) before any weight exists, as torchtitan
and OLMo-core build them: the HF model is made on the meta device (its buffers, e.g. rotary
frequencies, computed for real), `fully_shard` is applied to it, each process allocates only
the shards it owns and reads from the safetensors only those rows. Host memory per process is
about checkpoint size / world size, where `from_pretrained` on every rank needs the whole model
on each.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from regrow.errors import RegrowError
from regrow.models.hf import quiet_transformers
from regrow.models.lazy import LazyCheckpoint
from regrow.world import World


def decoder_layers(model) -> list[torch.nn.Module]:
    """The repeated blocks of an HF model, found by the classes it declares unsplittable."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise RegrowError(f"cannot find the decoder layers of {type(model).__name__} (its _no_split_modules is {sorted(names)})")
    return layers


def shard(model, world: World, device: torch.device, precision: str, training: bool = True):
    """FSDP2: `fully_shard` on each decoder layer, then on the root, over the processes' `device`s
    (a no-op for one process, unless its caller set up a process group: FSDP2 over one GPU).
    bf16: bf16 compute and all-gathers, fp32 gradient reduction and master weights. A model that
    trains keeps its last layer gathered after the forward (the backward needs it at once)."""
    import torch.distributed as dist

    if not (world.distributed or dist.is_initialized()):
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if precision == "bf16" else MixedPrecisionPolicy()
    layers = decoder_layers(model)
    for index, layer in enumerate(layers):
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=not training or index < len(layers) - 1)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def empty_from_folder(path: str | Path, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32):
    """The HF model of a folder's config.json with its parameters on the meta device (no memory,
    no initialisation) and its buffers computed on the CPU, in `dtype` whatever the checkpoint
    stores (as `load_model`); plus the folder's checkpoint, bound
    to the model's names and checked to hold every tensor the model needs."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    quiet_transformers()
    path = Path(path)
    checkpoint = LazyCheckpoint(path)
    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise RegrowError(f"config.json of {str(path)!r} is not a valid config: {str(err).splitlines()[0]}") from err
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code, dtype=dtype)
    model.tie_weights()  # the empty-weights context re-creates parameters, which unties them
    checkpoint.bind(model)
    missing = [name for name, aliases in _parameter_names(model).items()
               if not any(a in checkpoint.shapes for a in aliases)]
    if missing:
        raise RegrowError(f"model folder {str(path)!r} lacks tensors the model needs: {', '.join(missing[:8])}"
                          + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
    known = set(model.state_dict()) | {a for aliases in _parameter_names(model).values() for a in aliases}
    extra = sorted(set(checkpoint.shapes) - known)
    if extra:
        raise RegrowError(f"model folder {str(path)!r} holds tensors its config.json's model does not have (another "
                          f"architecture's weights?): {', '.join(extra[:5])}" + (f" and {len(extra) - 5} more"
                                                                                   if len(extra) > 5 else ""))
    params = dict(model.named_parameters())
    for name, aliases in _parameter_names(model).items():
        stored = checkpoint.shapes[next(a for a in aliases if a in checkpoint.shapes)]
        wanted = list(params[name].shape)
        if stored != wanted:
            raise RegrowError(f"config.json of {str(path)!r} does not match its weights: "
                              f"{name} is {stored} in the weights but {wanted} by the config")
    if (path / "generation_config.json").is_file():  # exported with the model, as from_pretrained keeps it
        with contextlib.suppress(OSError, ValueError):  # a damaged generation config only changes defaults
            model.generation_config = GenerationConfig.from_pretrained(str(path))
    return model, checkpoint


def _parameter_names(model) -> dict[str, list[str]]:
    """Each distinct parameter's first name -> all its names (tied weights share one parameter)."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return {aliases[0]: aliases for aliases in names.values()}


def materialize(model, device: torch.device, checkpoint: LazyCheckpoint | None) -> None:
    """Allocate this process's shards on `device` and fill them from `checkpoint` (only the rows
    this process owns); None leaves them empty (a resume loads its own shards next)."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    model.to_empty(device=device)
    with torch.no_grad():
        for name, buffer in model.named_buffers():  # as computed, or as stored when the checkpoint has it
            stored = checkpoint is not None and name in checkpoint.shapes
            buffer.copy_(checkpoint.read([name])[name] if stored else buffers[name])
        if checkpoint is None:
            return
        params = dict(model.named_parameters(remove_duplicate=False))
        for name, aliases in _parameter_names(model).items():
            stored = next(a for a in aliases if a in checkpoint.shapes)
            param = params[name]
            local = param.to_local() if hasattr(param, "to_local") else param.data
            start = 0
            if hasattr(param, "to_local"):  # FSDP2 gives rank r rows [r * c, (r + 1) * c), c = ceil(rows / world)
                mesh = param.device_mesh
                start = mesh.get_local_rank() * math.ceil(param.shape[0] / mesh.size())
            if local.dim() == 0 or local.shape[0]:  # a process may own no rows of a small tensor
                checkpoint.read_rows_into(stored, start, local)
    model.tie_weights()


def load_sharded(path: str | Path, world: World, device: torch.device, precision: str = "fp32",
                 training: bool = True, trust_remote_code: bool = False):
    """An HF folder's model sharded over the processes, each reading only its own rows."""
    model, checkpoint = empty_from_folder(path, trust_remote_code)
    shard(model, world, device, precision, training)
    materialize(model, device, checkpoint)
    return model.train(training)


def gathered_state_dict(model) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights on rank 0's CPU; an empty dict on the other ranks (every
    process must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
