"""regrow: compress a large language model, continue pre-training it cheaply, measure what it buys."""

__version__ = "0.1.0"
