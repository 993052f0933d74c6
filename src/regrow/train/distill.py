"""Knowledge distillation during continued pre-training: a frozen teacher (usually the unpruned
source) supplies soft targets.

    loss = (1 - weight) * CE(student, next token) + weight * T^2 * KL(softmax(t / T) || softmax(s / T))

averaged over tokens (Hinton et al. 2015; the T^2 keeps gradient scale independent of T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regrow.errors import RegrowError
from regrow.models.flops import forward_flops_per_token, model_shape
from regrow.models.hf import load_model
from regrow.models.sharded import load_sharded
from regrow.world import World


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      weight: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, cross-entropy, KL) over all tokens; logits are [batch, seq, vocab]."""
    vocab = student_logits.shape[-1]
    s = student_logits.float().reshape(-1, vocab)
    t = teacher_logits.float().reshape(-1, vocab)
    ce = F.cross_entropy(s, targets.reshape(-1))
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True,
                  reduction="batchmean") * temperature**2
    return (1 - weight) * ce + weight * kl, ce, kl


class Teacher:
    """A frozen HF model in inference mode; counts its forward FLOPs. Under torchrun it is sharded
    with FSDP2 like the student (no gradients, no optimizer state): memory per process falls with
    the number of processes instead of every process holding the whole teacher."""

    def __init__(self, path: str, student, seq_len: int, device: torch.device, world: World | None = None,
                 precision: str = "fp32", trust_remote_code: bool = False):
        world = world or World()
        if world.distributed:  # sharded like the student (FSDP2), each process reading its own rows
            self.model = load_sharded(path, world, device, precision, training=False, trust_remote_code=trust_remote_code)
        else:
            self.model = load_model(path, trust_remote_code).to(device).eval()
        self.model.requires_grad_(False)
        theirs = self.model.get_output_embeddings().weight.shape[0]
        ours = student.get_output_embeddings().weight.shape[0]
        if theirs != ours:
            raise RegrowError(f"train.distill.teacher {path!r} has {theirs} output tokens but the student {ours}; "
                              "teacher and student must share the vocabulary")
        self.flops_per_token = forward_flops_per_token(model_shape(self.model), seq_len)

    @torch.no_grad()  # not inference_mode: FSDP2's gathered parameters must stay ordinary tensors
    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=inputs, use_cache=False).logits
