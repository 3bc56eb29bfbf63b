"""Training state as raw tensor bytes plus a JSON layout: checkpoints that need no pickle."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Only plain numeric dtypes are read back; a layout naming anything else is refused.
DTYPES = {
    name: getattr(torch, name)
    for name in ("float16", "bfloat16", "float32", "float64", "int32", "int64", "bool", "uint8")
}


def pack(tensors: dict[str, Tensor], extra: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """Lay named tensors end to end as bytes; the layout says where each one lies."""
    entries, chunks, offset = [], [], 0
    for name, tensor in tensors.items():
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
        dtype = str(data.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise ValueError(f"cannot checkpoint a {dtype} tensor")
        entries.append(
            {
                "name": name,
                "dtype": dtype,
                "shape": list(tensor.shape),
                "offset": offset,
                "nbytes": len(raw),
            }
        )
        chunks.append(raw)
        offset += len(raw)
    return b"".join(chunks), {"tensors": entries, "extra": extra}


def unpack(blob: bytes, layout: dict[str, Any]) -> dict[str, Tensor]:
    """The named CPU tensors a packed blob holds."""
    tensors = {}
    for entry in layout["tensors"]:
        dtype = DTYPES[entry["dtype"]]
        start, nbytes = int(entry["offset"]), int(entry["nbytes"])
        if start < 0 or start + nbytes > len(blob):
            raise ValueError(f"checkpoint tensor {entry['name']!r} lies outside the blob")
        shape = [int(n) for n in entry["shape"]]
        if nbytes == 0:
            tensors[entry["name"]] = torch.empty(shape, dtype=dtype)
            continue
        raw = torch.frombuffer(bytearray(blob[start : start + nbytes]), dtype=torch.uint8)
        tensors[entry["name"]] = raw.view(dtype).reshape(shape)
    return tensors
