"""What regrow's input checks cost, against the same operations without them (same run, medians).

- model load: `regrow.models.hf.load_model` (every shard header read and checked first) against
  plain `AutoModelForCausalLM.from_pretrained` of the same folder;
- checkpoint metadata: the restricted DCP unpickler against `pickle.load` on the metadata of a
  real sharded checkpoint (model + AdamW state);
- data folder open: `TokenStore` (manifest structure and every token file's size checked)
  against reading the manifest alone.

    python benchmarks/safety_overhead.py [--layers 12] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_data, median, timed  # noqa: E402

from regrow.data.store import TokenStore  # noqa: E402
from regrow.models.hf import load_model  # noqa: E402
from regrow.train.checkpoint import read_metadata_safely  # noqa: E402


def build_model(folder: Path, layers: int) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("llama", hidden_size=1024, num_hidden_layers=layers, num_attention_heads=16,
                                  num_key_value_heads=8, intermediate_size=2816, vocab_size=32000)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder, max_shard_size="200MB")
    return sum(p.numel() for p in model.parameters())


def build_metadata(folder: Path) -> Path:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("llama", hidden_size=256, num_hidden_layers=24, num_attention_heads=8,
                                  intermediate_size=688, vocab_size=4096)
    model = AutoModelForCausalLM.from_config(config)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 4, dtype=torch.long)).logits.sum().backward()
    optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(dict(zip(("model", "optim"), get_state_dict(model, optimizer))), checkpoint_id=folder)
    return folder / ".metadata"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=12, help="decoder layers of the ~hidden-1024 model loaded")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n_params = build_model(work / "model", args.layers)
        size = sum(f.stat().st_size for f in (work / "model").glob("*.safetensors"))
        plain = timed(lambda: AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32), args.repeats)
        checked = timed(lambda: load_model(work / "model"), args.repeats)
        print(f"model load ({n_params / 1e6:.0f}M parameters, {size / 2**20:.0f} MiB in "
              f"{len(list((work / 'model').glob('*.safetensors')))} shards): from_pretrained {median(plain):.3f} s, "
              f"regrow load_model {median(checked):.3f} s, ratio {median(checked) / median(plain):.3f}")

        metadata = build_metadata(work / "shards")
        raw = metadata.read_bytes()
        plain = timed(lambda: [pickle.load(io.BytesIO(raw)) for _ in range(20)], args.repeats)
        safe = timed(lambda: [read_metadata_safely(metadata) for _ in range(20)], args.repeats)
        print(f"DCP metadata ({len(raw) / 1024:.0f} KiB, x20): pickle.load {median(plain) * 1e3:.1f} ms, "
              f"restricted unpickler {median(safe) * 1e3:.1f} ms, ratio {median(safe) / median(plain):.3f}")

        _, data_dir = make_data(work)
        plain = timed(lambda: [json.loads((data_dir / "manifest.json").read_text()) for _ in range(100)], args.repeats)
        checked = timed(lambda: [TokenStore(data_dir) for _ in range(100)], args.repeats)
        print(f"data folder open (x100): manifest only {median(plain) * 1e3:.1f} ms, TokenStore with checks "
              f"{median(checked) * 1e3:.1f} ms ({(median(checked) - median(plain)) * 10:.2f} ms per open)")


if __name__ == "__main__":
    main()
