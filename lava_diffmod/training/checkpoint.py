"""Checkpoints: safetensors (no code is executed on load), written atomically.

A checkpoint holds the weights, the optimiser state and the iteration. Data and every random
stream are functions of (seed, iteration), so this is all a resumed run needs to continue
exactly where it stopped. Writing goes to a temporary file in the same folder, is flushed to
disk, then renamed over the old file: a crash leaves the previous checkpoint intact. A SHA-256
of the contents (:func:`checksum`) is stored with them, so a file changed on disk is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
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


def checksum(tensors: dict[str, torch.Tensor], info: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes and every metadata entry but
    ``sha256`` itself, in name order (hex)."""
    h = hashlib.sha256()
    for k in sorted(info):
        if k != "sha256":
            h.update(json.dumps([k, info[k]]).encode())
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(json.dumps([k, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())     # the buffer itself, no copy
    return h.hexdigest()


def save(path: Path, params: Params, opt: OptState, iteration: int, meta: dict | None = None) -> None:
    tensors = {f"params.{n}": t.detach().cpu().contiguous() for n, t in zip(NAMES, params)}
    for kind, group in (("m", opt.m), ("v", opt.v)):
        if group is not None:
            tensors.update({f"opt.{kind}.{n}": t.cpu().contiguous() for n, t in zip(NAMES, group)})
    info = {"iteration": str(iteration), "opt_step": str(opt.step), "meta": json.dumps(meta or {})}
    info["sha256"] = checksum(tensors, info)
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=info))


def load(path: Path, like: Params) -> tuple[Params, OptState, int, dict]:
    """Read a checkpoint; shapes and dtypes must match ``like`` (the freshly built network).

    Floating tensors may be stored as float32 or float64 (they are cast to ``like``'s dtype, e.g.
    ``evaluate --dtype``); integer weights must have ``like``'s dtype exactly. Every tensor must
    be finite, every name known, the optimiser moments complete (all of m and v, or none), and
    the contents must match their stored checksum."""
    path = Path(path)
    where = f"checkpoint {str(path)!r}"
    try:
        found = path.is_file()
    except OSError as e:
        raise CheckpointError(f"{where}: cannot be read ({e.strerror})") from None
    if not found:
        raise CheckpointError(f"{where}: not found")
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            info = json.loads(f.read(header_len)).get("__metadata__", {})
        iteration, step = int(info["iteration"]), int(info["opt_step"])
        meta = json.loads(info.get("meta", "{}"))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"{where}: unreadable or truncated ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    if iteration < 0 or step < 0:
        raise CheckpointError(f"{where}: iteration = {iteration}, opt_step = {step}: must be >= 0")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: metadata 'meta' must be a JSON object, got {type(meta).__name__}")
    known = {f"{prefix}.{n}" for prefix in ("params", "opt.m", "opt.v") for n in NAMES}
    unknown = sorted(set(tensors) - known)
    if unknown:
        raise CheckpointError(f"{where}: unknown tensor {unknown[0]!r}; allowed: params.*, opt.m.*, opt.v.* "
                              f"with * in {', '.join(NAMES)}")

    def group(prefix):
        if not any(f"{prefix}.{n}" in tensors for n in NAMES):
            return None
        out = []
        for n, ref in zip(NAMES, like):
            key = f"{prefix}.{n}"
            if key not in tensors:
                raise CheckpointError(f"{where}: missing tensor {key}")
            t = tensors[key]
            if t.shape != ref.shape:
                raise CheckpointError(f"{where}: {key} has shape {tuple(t.shape)}, "
                                      f"the configured network needs {tuple(ref.shape)}")
            if ref.is_floating_point():
                if t.dtype not in (torch.float32, torch.float64):
                    raise CheckpointError(f"{where}: {key} has dtype {t.dtype}; allowed: float32, float64")
                if not bool(torch.isfinite(t).all()):
                    raise CheckpointError(f"{where}: {key} holds NaN or inf values")
            elif t.dtype != ref.dtype:
                raise CheckpointError(f"{where}: {key} has dtype {t.dtype}, the configured network "
                                      f"needs {ref.dtype}")
            out.append(t.to(device=ref.device, dtype=ref.dtype))
        return Params(*out)

    params = group("params")
    if params is None:
        raise CheckpointError(f"{where}: holds no weights")
    m, v = group("opt.m"), group("opt.v")
    if (m is None) != (v is None):
        raise CheckpointError(f"{where}: has opt.{'m' if v is None else 'v'}.* but not "
                              f"opt.{'v' if v is None else 'm'}.*: the optimiser state is incomplete")
    if "sha256" not in info:
        raise CheckpointError(f"{where}: has no checksum (metadata 'sha256'): not written by lava-diffmod, "
                              f"or by a version before checksums")
    if info["sha256"] != checksum(tensors, info):
        raise CheckpointError(f"{where}: the contents do not match their checksum: the file was changed "
                              f"or corrupted after it was written")
    return params, OptState(step, m, v), iteration, meta
