"""OLMo (dense OLMo-1): Llama-like projections and SwiGLU, but LayerNorms without gain or bias
and an optional clamp of q/k/v (`clip_qkv`, elementwise, so slicing keeps it exact). With no
norm weight to fold into, the hidden mask's values fold into the columns of the projections
that read each norm's output."""

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.llama import LlamaAdapter


@FAMILIES.register("olmo")
class OlmoAdapter(LlamaAdapter):
    model_types = ("olmo",)
    norm_weights = False
