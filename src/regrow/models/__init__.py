"""Models: load or build Hugging Face causal LMs, save them as plain HF folders, count FLOPs."""
