"""Compression: cut a Hugging Face decoder down to a target architecture (`regrow prune`).

A family adapter says where a model's units live; a method scores the units; the shared
selection, masking and slicing code turns scores into an exact smaller HF model.
"""
