"""A bf16 FSDP2 training step on one GPU: a process group of one (NCCL), the model built on the
meta device and sharded over it, three AdamW steps; prints the losses and then those of the same
steps without FSDP (JSON). Usage: gpu_fsdp_step.py MODEL_FOLDER"""

import json
import os
import sys

import torch
import torch.distributed as dist

from regrow.device import autocast
from regrow.models.hf import load_model
from regrow.models.sharded import gathered_state_dict, load_sharded
from regrow.world import World

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29533")
device = torch.device("cuda", 0)
torch.cuda.set_device(device)
dist.init_process_group("nccl", rank=0, world_size=1, device_id=device)
ids = torch.randint(0, 256, (4, 64), generator=torch.Generator().manual_seed(0)).to(device)


def losses(model) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    out = []
    for _ in range(3):
        with autocast(device, "bf16"):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out.append(float(loss))
    return out


sharded = load_sharded(sys.argv[1], World(), device, "bf16")
kinds = sorted({type(p).__name__ for p in sharded.parameters()})
fsdp = losses(sharded)
full = gathered_state_dict(sharded)
dist.destroy_process_group()
plain = losses(load_model(sys.argv[1]).to(device).train())
print(json.dumps({"fsdp": fsdp, "plain": plain, "parameter_types": kinds, "gathered": len(full)}))
