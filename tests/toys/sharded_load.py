"""Run under torchrun: load each model folder sharded (meta device, own rows only), then write
what rank 0 gathers and the logits of a fixed batch to OUT/<name>.safetensors for the test to
compare with a plain load. Usage: sharded_load.py OUT FOLDER..."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from regrow.models.sharded import gathered_state_dict, load_sharded
from regrow.world import World

world = World.from_env()
world.start(torch.device("cpu"))
out = Path(sys.argv[1])
for folder in map(Path, sys.argv[2:]):
    model = load_sharded(folder, world, torch.device("cpu"), training=False)
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    state = gathered_state_dict(model)
    local = sum(p.to_local().numel() for p in model.parameters())
    if world.is_main:
        tensors = {k: v.contiguous() for k, v in state.items()}
        tensors["__logits__"] = logits.contiguous()
        tensors["__local_numel__"] = torch.tensor([local])
        save_file(tensors, out / f"{folder.name}.safetensors")
world.stop()
