"""The in-process peers: one file per snapshot with `torch.save` or safetensors' `save_file`.

Load is what a user needs for a module ready to use: build the module from its spec, read the file
and load its tensors into the module (`load_state_dict`, strict). These run in the benchmark's own
process, beside rlreg, on the very same module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from bench.peers.peerlib import folder_bytes, fsync_tree


def _torch_save(module: torch.nn.Module, path: Path) -> None:
    torch.save(module.state_dict(), path)


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _safetensors_save(module: torch.nn.Module, path: Path) -> None:
    save_file(module.state_dict(), path)


def _safetensors_save_durable(module: torch.nn.Module, path: Path) -> None:
    """save_file, then the file and its folder fsynced: durable, as rlreg's snapshot is."""
    save_file(module.state_dict(), path)
    fsync_tree(path)


FORMATS = {
    # name: (snapshot system, load system, suffix, save, read)
    "safetensors": ("safetensors save_file", "build + safetensors load_file", ".safetensors",
                    _safetensors_save, load_file),
    "torch": ("torch.save", "build + torch.load", ".pt", _torch_save, _torch_load),
    # snapshots only (its files load as the plain ones do)
    "safetensors + fsync": ("safetensors save_file + fsync", None, ".safetensors", _safetensors_save_durable, load_file),
}


class FileContender:
    """Each snapshot a new file in `work`; load builds the module and loads the last file into it."""

    def __init__(self, fmt: str, build: Callable[[], torch.nn.Module], work: Path):
        self.snapshot_system, self.load_system, self._suffix, self._save, self._read = FORMATS[fmt]
        self._build = build
        self._work = work
        self._count = 0
        work.mkdir(parents=True, exist_ok=True)

    @property
    def last(self) -> Path:
        """The file of the last snapshot."""
        return self._work / f"v{self._count}{self._suffix}"

    def snapshot(self, module: torch.nn.Module) -> None:
        """Write the module's state dict to a new file."""
        self._count += 1
        self._save(module, self.last)

    def load(self) -> torch.nn.Module:
        """A freshly built module with the last file's tensors loaded (strict)."""
        fresh = self._build()
        fresh.load_state_dict(self._read(self.last), strict=True)
        return fresh

    def written(self) -> int:
        """Bytes in the work folder."""
        return folder_bytes(self._work)
