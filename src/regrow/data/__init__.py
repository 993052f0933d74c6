"""Data: tokenizers, document sources, the per-domain token store, and the mixture sampler."""
