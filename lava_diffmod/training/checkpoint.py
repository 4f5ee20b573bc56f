"""Checkpoints: safetensors (no code is executed on load), written atomically.

A checkpoint holds the weights, the optimiser state and the iteration. Data and every random
stream are functions of (seed, iteration), so this is all a resumed run needs to continue
exactly where it stopped. Writing goes to a temporary file in the same folder, is flushed to
disk, then renamed over the old file: a crash leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..float.rsnn import Params
from .optim import OptState

NAMES = Params._fields


class CheckpointError(RuntimeError):
    """A missing, truncated or incompatible checkpoint."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync, then rename onto ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text))


def save(path: Path, params: Params, opt: OptState, iteration: int, meta: dict | None = None) -> None:
    tensors = {f"params.{n}": t.detach().cpu().contiguous() for n, t in zip(NAMES, params)}
    for kind, group in (("m", opt.m), ("v", opt.v)):
        if group is not None:
            tensors.update({f"opt.{kind}.{n}": t.cpu().contiguous() for n, t in zip(NAMES, group)})
    info = {"iteration": str(iteration), "opt_step": str(opt.step), "meta": json.dumps(meta or {})}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=info))


def load(path: Path, like: Params) -> tuple[Params, OptState, int, dict]:
    """Read a checkpoint; shapes and dtypes must match ``like`` (the freshly built network)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: not found")
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            info = json.loads(f.read(header_len)).get("__metadata__", {})
        iteration, step = int(info["iteration"]), int(info["opt_step"])
        meta = json.loads(info.get("meta", "{}"))
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: unreadable or truncated ({e})") from None

    def group(prefix):
        if f"{prefix}.{NAMES[0]}" not in tensors:
            return None
        out = []
        for n, ref in zip(NAMES, like):
            key = f"{prefix}.{n}"
            if key not in tensors:
                raise CheckpointError(f"checkpoint {str(path)!r}: missing tensor {key}")
            t = tensors[key]
            if t.shape != ref.shape:
                raise CheckpointError(f"checkpoint {str(path)!r}: {key} has shape {tuple(t.shape)}, "
                                      f"the configured network needs {tuple(ref.shape)}")
            out.append(t.to(device=ref.device, dtype=ref.dtype))
        return Params(*out)

    params = group("params")
    if params is None:
        raise CheckpointError(f"checkpoint {str(path)!r}: holds no weights")
    return params, OptState(step, group("opt.m"), group("opt.v")), iteration, meta
