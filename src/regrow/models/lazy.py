"""An HF safetensors checkpoint read one tensor group at a time, never whole.

The folder's `model.safetensors.index.json` (or its single `model.safetensors`) says which
file holds each tensor; every file's header is checked up front, so a missing, truncated or
corrupt shard is named before any work starts. Each `read` opens the files it needs and closes
them again, so their memory-mapped pages do not pile up in the process's resident memory.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from regrow.errors import RegrowError
from regrow.reading import read_json

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def _data_starts(path: Path) -> tuple[dict[str, int], int]:
    """(where each tensor's bytes start in a safetensors file, the bytes the file must have:
    8 + header + the largest data offset in its header)."""
    with open(path, "rb") as handle:
        size_bytes = handle.read(8)
        if len(size_bytes) < 8:
            raise ValueError("shorter than a safetensors header")
        header_size = int.from_bytes(size_bytes, "little")
        header = json.loads(handle.read(header_size))
    entries = {key: entry["data_offsets"] for key, entry in header.items() if key != "__metadata__"}
    base = 8 + header_size
    return {key: base + int(begin) for key, (begin, _) in entries.items()}, base + max((e for _, e in entries.values()), default=0)


def _read_exactly(handle, view: memoryview) -> None:
    while len(view):
        got = handle.readinto(view)
        if not got:
            raise RegrowError(f"{handle.name!r} ended before a tensor's last byte (truncated while being read?)")
        view = view[got:]


class LazyCheckpoint:
    """Names, shapes and dtypes of every tensor of an HF folder; tensors on demand."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise RegrowError(f"model folder {str(self.folder)!r} has no config.json")
        self.file_of = self._weight_map()
        files = sorted(set(self.file_of.values()))
        missing = [f for f in files if not (self.folder / f).is_file()]
        if missing:
            raise RegrowError(f"model folder {str(self.folder)!r} is missing shard files: {', '.join(missing)}")
        self.shapes: dict[str, list[int]] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self._start: dict[str, int] = {}  # checkpoint key -> offset of its first byte in its file
        holder: dict[str, str] = {}  # checkpoint key -> the file whose header lists it
        bad = []
        for name in files:
            path = self.folder / name
            try:
                starts, end = _data_starts(path)
                if path.stat().st_size < end:
                    raise ValueError("truncated")
                self._start.update(starts)
                with safe_open(path, framework="pt") as handle:
                    for key in handle.keys():
                        piece = handle.get_slice(key)
                        self.shapes[key] = list(piece.get_shape())
                        self.dtypes[key] = _DTYPES[piece.get_dtype()]
                        holder[key] = name
            except Exception:  # noqa: BLE001  (a damaged header can fail in many ways)
                bad.append(name)
        if bad:
            raise RegrowError(f"model folder {str(self.folder)!r} has corrupt or truncated shard files: {', '.join(bad)}")
        absent = sorted(set(self.file_of) - set(self.shapes))
        if absent:
            raise RegrowError(f"{INDEX} of {str(self.folder)!r} names tensors its shards lack: {', '.join(absent[:5])}")
        wrong = sorted(key for key, file in self.file_of.items() if holder[key] != file)
        if wrong:
            raise RegrowError(f"{INDEX} of {str(self.folder)!r} maps tensors to the wrong shard files: "
                              + ", ".join(f"{k} to {self.file_of[k]} (it is in {holder[k]})" for k in wrong[:3]))
        self.file_of = holder
        self._key_file = dict(self.file_of)  # checkpoint key -> file, kept when names are bound to a model
        self._key_shapes, self._key_dtypes = dict(self.shapes), dict(self.dtypes)
        self._disk_key = {key: key for key in self.shapes}
        self.merged: dict[str, Merged] = {}  # model tensors stored as one tensor per expert (bound models only)
        self.disk_name = str  # model name -> checkpoint name (identity until bound to a model)
        self.bytes_read = 0  # tensor bytes read so far (what an I/O budget is measured in)

    def _weight_map(self) -> dict[str, str]:
        index = self.folder / INDEX
        if index.is_file():
            try:
                weight_map = dict(read_json(index, "safetensors index")["weight_map"])
                if not all(isinstance(v, str) and "/" not in v and not v.startswith(".") for v in weight_map.values()):
                    raise ValueError("a shard name is not a file of the folder")
                return weight_map
            except (ValueError, KeyError, TypeError) as err:
                raise RegrowError(f"{str(index)!r} is not a valid safetensors index ({err})") from err
        if (self.folder / SINGLE).is_file():
            try:
                with safe_open(self.folder / SINGLE, framework="pt") as handle:
                    return {key: SINGLE for key in handle.keys()}
            except Exception as err:  # noqa: BLE001  (SafetensorError and OS errors of a damaged file)
                raise RegrowError(f"model folder {str(self.folder)!r} has a corrupt or truncated {SINGLE}: "
                                  f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
        raise RegrowError(f"model folder {str(self.folder)!r} has neither {INDEX} nor {SINGLE}")

    def bind(self, model) -> None:
        """Name tensors as `model` (e.g. on the meta device) names its parameters: transformers
        renames some checkpoint keys on load (GPT-NeoX's embed_out is lm_head; Bloom's hub
        checkpoints lack the transformer. prefix), stacks per-expert tensors into fused ones
        (mixtures of experts) and concatenates parts (OLMo-hybrid's q / k / v convolutions); all
        are read that way here. Other conversions are refused."""
        names = KeyNames(model)
        renamed, merged = {}, {}
        for key in self.shapes:
            name, pattern = names.to_model(key)
            if pattern is None:
                renamed[name] = key
                continue
            found = names.stacking(pattern)
            if found is None:
                raise RegrowError(f"tensor {key!r} of {str(self.folder)!r} is converted by transformers on load; "
                                  "--streaming reads checkpoints stored in the model's own layout or one tensor per expert")
            part, patterns, target, stacked = found
            expert = int(re.search(re.escape(pattern).replace(r"\*", r"(\d+)"), key).group(1)) if stacked else 0
            entry = merged.setdefault(name, Merged(patterns, target, {}, stacked))
            entry.keys[(part, expert)] = key
        for name, entry in merged.items():
            experts = 1 + max(e for _, e in entry.keys)
            if len(entry.keys) != experts * len(entry.patterns):
                raise RegrowError(f"{str(self.folder)!r} lacks some parts of {name!r}")
            first = self.shapes[entry.keys[(0, 0)]]
            if entry.stacked:
                self.shapes[name] = [experts, first[0] * len(entry.patterns), *first[1:]]
            else:  # parts one after another along dim 0
                self.shapes[name] = [sum(self.shapes[entry.keys[(p, 0)]][0] for p in range(len(entry.patterns))), *first[1:]]
            self.dtypes[name] = self.dtypes[entry.keys[(0, 0)]]
            self.file_of[name] = self.file_of[entry.keys[(0, 0)]]
            renamed[name] = name
        self.merged = merged
        self._disk_key = renamed
        self.shapes = {name: self.shapes[key] for name, key in renamed.items()}
        self.dtypes = {name: self.dtypes[key] for name, key in renamed.items()}
        self.file_of = {name: self.file_of[key] for name, key in renamed.items()}
        self.disk_name = names.to_disk

    def disk_tensors(self, name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """A model tensor as the checkpoint stores it: fused experts back to one tensor per expert
        and part (as `save_pretrained` writes them), anything else under its disk name."""
        kind = next((m for m in self.merged.values() if name.endswith(m.target)), None)
        if kind is None:
            return {self.disk_name(name): tensor}
        if not kind.stacked:  # as save_pretrained splits a concatenation: equal chunks, reloaded by concatenating
            return {self.disk_name(name[: -len(kind.target)] + pattern): piece.contiguous()
                    for pattern, piece in zip(kind.patterns, tensor.chunk(len(kind.patterns), dim=0))}
        out = {}
        for expert, stacked in enumerate(tensor):
            for pattern, piece in zip(kind.patterns, stacked.chunk(len(kind.patterns), dim=0)):
                key = name[: -len(kind.target)] + pattern.replace("*", str(expert))
                out[self.disk_name(key)] = piece.contiguous()
        return out

    @property
    def names(self) -> list[str]:
        return list(self.shapes)

    def nbytes(self) -> int:
        return sum((self.folder / f).stat().st_size for f in set(self.file_of.values()))

    def read(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """The named tensors. They are backed by the file's memory map (pages become resident
        as they are touched and are released with the tensor); the file handle is closed."""
        by_file: dict[str, list[str]] = {}
        out = {}
        for name in names:
            if name in self.merged:  # experts stacked, each expert's parts one after another (gate | up)
                entry = self.merged[name]
                parts = self.read_keys(entry.keys.values())
                if not entry.stacked:
                    out[name] = torch.cat([parts[entry.keys[(p, 0)]] for p in range(len(entry.patterns))])
                    continue
                experts = self.shapes[name][0]
                out[name] = torch.stack([torch.cat([parts[entry.keys[(p, e)]] for p in range(len(entry.patterns))])
                                         for e in range(experts)])
            else:
                by_file.setdefault(self.file_of[name], []).append(name)
        for file, keys in by_file.items():
            with safe_open(self.folder / file, framework="pt") as handle:
                for key in keys:
                    out[key] = self._counted(handle.get_tensor(self._disk_key[key]))
        return out

    def _counted(self, tensor: torch.Tensor) -> torch.Tensor:
        self.bytes_read += tensor.numel() * tensor.element_size()
        return tensor

    def read_rows_into(self, name: str, start: int, out: torch.Tensor) -> None:
        """Rows [start, start + len(out)) of a tensor (of a fused expert tensor: those experts)
        read straight from the file into `out` (converted to its dtype): only those bytes are
        read, with no memory map and no copy of the whole rows - what one process of a sharded
        model owns."""
        if name in self.merged and not self.merged[name].stacked:  # a small concatenation: read whole, copy the rows
            out.copy_(self.read([name])[name][start : start + out.shape[0]])
            return
        if name in self.merged:
            entry = self.merged[name]
            parts = len(entry.patterns)
            for index, expert in enumerate(range(start, start + out.shape[0])):
                for part, piece in enumerate(out[index].chunk(parts, dim=0)):
                    self._read_key_into(entry.keys[(part, expert)], 0, piece)
            return
        self._read_key_into(self._disk_key[name], start, out)

    def _read_key_into(self, key: str, first_row: int, out: torch.Tensor, block_bytes: int = 16 << 20) -> None:
        if not out.is_contiguous():
            staged = torch.empty(out.shape, dtype=out.dtype, device=out.device)
            self._read_key_into(key, first_row, staged, block_bytes)
            out.copy_(staged)
            return
        shape, dtype = self._key_shapes[key], self._key_dtypes[key]
        row_bytes = dtype.itemsize * math.prod(shape[1:])
        rows = out.shape[0] if out.dim() else 1
        with open(self.folder / self._key_file[key], "rb", buffering=0) as handle:
            handle.seek(self._start[key] + first_row * row_bytes)
            if out.dtype == dtype and out.device.type == "cpu":
                _read_exactly(handle, memoryview(out.view(torch.uint8).reshape(-1).numpy()))
            else:  # another dtype or device: block by block
                step = max(1, block_bytes // max(row_bytes, 1))
                flat = out.view(rows, -1) if out.dim() else out.view(1, 1)
                for begin in range(0, rows, step):
                    count = min(step, rows - begin)
                    buffer = bytearray(count * row_bytes)
                    _read_exactly(handle, memoryview(buffer))
                    flat[begin : begin + count].copy_(torch.frombuffer(buffer, dtype=dtype).view(count, -1))
        self.bytes_read += rows * row_bytes

    def read_keys(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        """Tensors by their checkpoint keys (the parts of a merged tensor)."""
        by_file: dict[Path, list[str]] = {}
        for key in keys:
            by_file.setdefault(self.folder / self._key_file[key], []).append(key)
        out = {}
        for path, group in by_file.items():
            with safe_open(path, framework="pt") as handle:
                for key in group:
                    out[key] = self._counted(handle.get_tensor(key))
        return out

    def row_chunks(self, name: str, max_bytes: int = 16 << 20) -> Iterable[torch.Tensor]:
        """Consecutive blocks of rows (dim 0) of a tensor, each at most about `max_bytes`."""
        shape = self.shapes[name]
        row_bytes = max(1, self.dtypes[name].itemsize * (int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1))
        step = max(1, max_bytes // row_bytes)
        for start in range(0, shape[0], step):
            with safe_open(self.folder / self.file_of[name], framework="pt") as handle:
                yield self._counted(handle.get_slice(self._disk_key[name])[start : start + step])

    def rows(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` of a matrix (an embedding lookup): each distinct row is read once, straight
        from the file (runs of consecutive rows in one read), never the whole table."""
        unique, inverse = torch.unique(ids.flatten(), sorted=True, return_inverse=True)
        table = torch.empty((len(unique), *self.shapes[name][1:]), dtype=self.dtypes[name])
        for begin, end in _runs(unique):
            self.read_rows_into(name, int(unique[begin]), table[begin:end])
        return table[inverse].view(*ids.shape, *table.shape[1:])

    def kept_rows(self, name: str, rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The whole tensor in `dtype` with only `rows` (sorted, distinct) of dim 0 read from the
        file and the others zero: what a pruned tensor needs of its source when its removed rows
        would be masked out anyway."""
        out = torch.zeros(self.shapes[name], dtype=dtype)
        for begin, end in _runs(rows):
            start = int(rows[begin])
            self.read_rows_into(name, start, out[start : start + end - begin])
        return out

    def tensors(self, names: Iterable[str]) -> Iterable[tuple[str, torch.Tensor]]:
        """(name, tensor) one at a time."""
        for name in names:
            yield name, self.read([name])[name]


def _runs(indices: torch.Tensor) -> list[tuple[int, int]]:
    """[begin, end) positions of the runs of consecutive values in sorted distinct `indices`."""
    if len(indices) == 0:
        return []
    breaks = (torch.nonzero(indices.diff() != 1).flatten() + 1).tolist()
    bounds = [0, *breaks, len(indices)]
    return list(zip(bounds, bounds[1:]))


@dataclass
class Merged:
    """A fused model tensor stored as one checkpoint tensor per (part, expert), or (not
    `stacked`) as parts concatenated along dim 0 (expert 0 only)."""

    patterns: list[str]  # the converter's source patterns, one per part (gate, up)
    target: str  # the end of the model's name (".experts.gate_up_proj")
    keys: dict[tuple[int, int], str]  # (part, expert) -> checkpoint key
    stacked: bool = True


class KeyNames:
    """Checkpoint tensor names <-> a model's parameter names, as transformers maps them."""

    def __init__(self, model):
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import PrefixChange, WeightConverter

        conversions = get_model_conversion_mapping(model)
        # written as save_pretrained writes a model built from its config: no legacy renaming and no
        # prefix change (a multimodal checkpoint's text model is saved under the text model's names)
        saved = [c for c in get_model_conversion_mapping(model, add_legacy=False) if not isinstance(c, PrefixChange)]
        reverse = [c.reverse_transform() for c in saved[::-1]]
        self._load = ([c for c in conversions if not isinstance(c, WeightConverter)],
                      [c for c in conversions if isinstance(c, WeightConverter)])
        self._save = ([c for c in reverse if not isinstance(c, WeightConverter)],
                      [c for c in reverse if isinstance(c, WeightConverter)])
        self._prefix = model.base_model_prefix
        self._meta = dict.fromkeys(model.state_dict(), True)

    def to_model(self, key: str) -> tuple[str, str | None]:
        """(the model's name of a checkpoint key, the converter's source pattern it matched or None)."""
        from transformers.core_model_loading import rename_source_key

        return rename_source_key(key, *self._load, self._prefix, self._meta)

    def stacking(self, pattern: str) -> tuple[int, list[str], str, bool] | None:
        """For a converter that stacks one tensor per expert (and concatenates parts, gate | up) or
        only concatenates parts: (the pattern's part index, all its source patterns, its target,
        whether experts are stacked); None for any other."""
        from transformers.core_model_loading import Concatenate, MergeModulelist

        for converter in self._load[1]:
            if pattern in converter.source_patterns and len(converter.target_patterns) == 1:
                ops = [(type(op), getattr(op, "dim", None)) for op in converter.operations]
                if ops in ([(MergeModulelist, 0)], [(MergeModulelist, 0), (Concatenate, 1)], [(Concatenate, 0)]):
                    return (converter.source_patterns.index(pattern), list(converter.source_patterns),
                            converter.target_patterns[0], ops != [(Concatenate, 0)])
        return None

    def to_disk(self, name: str) -> str:
        from transformers.core_model_loading import rename_source_key

        return rename_source_key(name, *self._save, reverse=True)[0]


_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
