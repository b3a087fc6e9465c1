"""Every scored set's features, computed once per run and reused: one store, class by class.

What the judge keeps of a set of images (reconstructions, starting points, a control, a leak)
is ``SetScores``: per class, the distance blocks between the set's images of that class and the
class's members D and non-members R under each distance, and the small per-image features
(E's penultimate vector and logits; Inception's pool3 in the paper profile). Never a whole set's
LPIPS-type feature maps: those are dropped once a set's blocks are computed.

``ScoreStore`` keeps them keyed by what produced them — a digest of the judge's networks, its D
and R, the distances asked for, and the set's images and labels — so a key can never serve
values computed under another configuration. In memory it keeps at most ``max_bytes`` (least
recently used first out); with a ``folder`` it also writes each set as a safetensors file
registered in the run's manifest, which a later notebook of the same run reads back (verified)
instead of scoring the set again.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..artifacts import load_tensors, save_tensors
from ..data.images import LazyImages
from ..errors import ArtifactError

DEFAULT_MAX_BYTES = 1 << 30
"""What a store keeps in memory at most (1 GiB; the cpu run's sets take about 2 MB each)."""


DIGEST_ROWS = 1024
"""Images of a lazy set hashed at a time."""


def tensor_digest(x: torch.Tensor | np.ndarray | LazyImages) -> str:
    """The sha256 of a tensor or array (dtype, shape and bytes); of a lazy image set, that of
    the whole tensor it stands for, hashed a slice at a time (and kept: it does not change)."""
    if isinstance(x, LazyImages):
        if x.digest is None:
            x.digest = _digest(x.dtype, x.shape, x.chunks(DIGEST_ROWS))
        return x.digest
    x = torch.as_tensor(x).detach().cpu()
    return _digest(x.dtype, x.shape, [x])


def _digest(dtype: torch.dtype, shape: torch.Size, parts) -> str:
    h = hashlib.sha256(f"{dtype}{tuple(shape)}".encode())
    for part in parts:                                   # no copy of a contiguous part's bytes
        h.update(memoryview(part.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def module_digest(module: torch.nn.Module | None) -> str:
    """The sha256 of a network's state (every parameter and buffer, by name); "none" for None."""
    if module is None:
        return "none"
    h = hashlib.sha256()
    for name, value in module.state_dict().items():
        h.update(name.encode() + tensor_digest(value).encode())
    return h.hexdigest()


@dataclass
class SetScores:
    """A scored set, class by class (see the module). ``to_private[space][c]`` is the
    (images of class c) × (members of class c) block of squared distances (float64) in D's
    order; ``to_reference`` the same for R; ``small`` the per-image features in the set's
    order."""
    labels: np.ndarray
    to_private: dict[str, dict[int, np.ndarray]]
    to_reference: dict[str, dict[int, np.ndarray]]
    small: dict[str, torch.Tensor]

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(self.to_private)

    def nbytes(self) -> int:
        blocks = [b for side in (self.to_private, self.to_reference)
                  for per_class in side.values() for b in per_class.values()]
        return (sum(b.nbytes for b in blocks) + self.labels.nbytes
                + sum(t.numel() * t.element_size() for t in self.small.values()))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The flat tensor dict of the safetensors file."""
        out = {"labels": torch.from_numpy(np.ascontiguousarray(self.labels))}
        for side, blocks in (("D", self.to_private), ("R", self.to_reference)):
            for space, per_class in blocks.items():
                for c, block in per_class.items():
                    out[f"{side}/{space}/{c}"] = torch.from_numpy(np.ascontiguousarray(block))
        out.update({f"small/{k}": v for k, v in self.small.items()})
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "SetScores":
        blocks: dict[str, dict[str, dict[int, np.ndarray]]] = {"D": {}, "R": {}}
        small = {}
        for key, value in tensors.items():
            if key.startswith("small/"):
                small[key[len("small/"):]] = value
            elif key != "labels":
                side, space, c = key.split("/")
                blocks[side].setdefault(space, {})[int(c)] = value.numpy()
        ordered = {side: {space: dict(sorted(per_class.items()))
                          for space, per_class in sorted(b.items())} for side, b in blocks.items()}
        return cls(tensors["labels"].numpy(), ordered["D"], ordered["R"], small)


class BytesLRU:
    """Values by key, at most ``max_bytes`` of them (``size(value)``) in memory, least recently
    used first out; the newest value is kept even when it alone is larger."""

    def __init__(self, max_bytes: int, size) -> None:
        self.max_bytes, self.size = max_bytes, size
        self._items: OrderedDict = OrderedDict()
        self._total = 0

    def get(self, key):
        """The value of ``key`` (now the most recent), or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key, value) -> None:
        if key in self._items:
            self._total -= self.size(self._items.pop(key))
        self._items[key] = value
        self._total += self.size(value)
        while self._total > self.max_bytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._total -= self.size(dropped)

    @property
    def nbytes(self) -> int:
        return self._total


class ScoreStore:
    """``SetScores`` by key, in memory (bounded) and optionally on disk (see the module)."""

    def __init__(self, folder: Path | None = None, run_dir: Path | None = None,
                 producer: str = "", max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.run_dir, self.producer = run_dir, producer
        self._memory = BytesLRU(max_bytes, SetScores.nbytes)
        self.hits = self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self._memory.max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._memory.max_bytes = value

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key[:32]}.safetensors"

    def get(self, key: str) -> SetScores | None:
        """The entry of ``key``, from memory or disk; None when absent. A file on disk under
        the key's name that holds another key is an error naming it."""
        found = self._memory.get(key)
        if found is not None:
            self.hits += 1
            return found
        path = self._path(key)
        if path is None or not path.is_file():
            self.misses += 1
            return None
        tensors, meta = load_tensors(path, self.run_dir)
        if meta.get("key") != key:
            raise ArtifactError(f"{path} holds the scores of key {meta.get('key')!r}, not "
                                f"{key!r}; delete it to recompute")
        scores = SetScores.from_tensors(tensors)
        self._memory.put(key, scores)
        self.hits += 1
        return scores

    def put(self, key: str, scores: SetScores, describe: dict | None = None) -> None:
        """Keep ``scores`` under ``key`` (and write it when the store has a folder)."""
        path = self._path(key)
        if path is not None:
            save_tensors(path, scores.tensors(), {"key": key, "describe": describe or {}},
                         self.run_dir, self.producer)
        self._memory.put(key, scores)


def score_key(producer: str, images: torch.Tensor, labels: np.ndarray,
              spaces: tuple[str, ...]) -> str:
    """The key of one set's scores: the judge's digest, the distances, the images, the labels."""
    blob = json.dumps({"producer": producer, "spaces": list(spaces),
                       "images": tensor_digest(images),
                       "labels": tensor_digest(np.asarray(labels, dtype=np.int64))})
    return hashlib.sha256(blob.encode()).hexdigest()
