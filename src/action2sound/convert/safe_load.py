"""Read a foreign PyTorch checkpoint without running the code a pickle may name.

First `torch.load(weights_only=True)`, torch's own restricted unpickler. Lightning checkpoints often fail it:
their `hyper_parameters` hold custom classes (AttributeDict, OmegaConf configs, paths). Then a second
restricted unpickler takes over: it resolves only the globals torch's weights-only loader allows (tensor
rebuilding, containers, primitives) and turns every other global into an inert `Placeholder` that records its
arguments and state. No function the file names is ever imported or called. Both are logged.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from ..errors import Action2SoundError

log = logging.getLogger(__name__)


class Placeholder:
    """Stands in for an object of a class we refuse to import; keeps what the pickle gave it."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        inst = super().__new__(cls)
        inst.args, inst.kwargs, inst.state, inst.items, inst.listitems = args, kwargs, None, {}, []
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # __new__ kept the arguments; nothing runs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.listitems.append(value)

    def extend(self, values: Any) -> None:
        self.listitems.extend(values)

    def __repr__(self) -> str:
        return f"<placeholder for {self.qualname}>"


_placeholder_types: dict[str, type] = {}


def _placeholder_type(full_name: str) -> type:
    if full_name not in _placeholder_types:
        _placeholder_types[full_name] = type(f"Placeholder[{full_name}]", (Placeholder,), {"qualname": full_name})
    return _placeholder_types[full_name]


def _allowed_globals() -> dict[str, Any]:
    # torch's own allowlist for weights_only loading: tensor and storage rebuilding, dtypes, containers.
    from torch import _weights_only_unpickler

    return dict(_weights_only_unpickler._get_allowed_globals())


class _RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class only hands out torch's weights-only allowlist; others -> Placeholder."""

    replaced: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        allowed = _allowed_globals()
        if full in allowed:
            return allowed[full]
        _RestrictedUnpickler.replaced.add(full)
        return _placeholder_type(full)


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# torch.load(pickle_module=...) needs an object with `Unpickler` and `load`, as the pickle module has.
_RESTRICTED_PICKLE = SimpleNamespace(Unpickler=_RestrictedUnpickler, load=_restricted_load,
                                     __name__="action2sound_restricted_pickle")


def load_torch_file(path: Path) -> Any:
    """The object in a torch.save file, loaded on CPU (memory-mapped when the format allows) without running code."""
    path = Path(path)
    if not path.is_file():
        raise Action2SoundError(f"{path}: no such file")
    # A zip checkpoint can be memory-mapped: only the tensors we read are paged in, not optimizer states.
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        reason = _short_reason(str(err))
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise Action2SoundError(f"{path}: not a readable PyTorch checkpoint ({err}); re-download it") from None
    _RestrictedUnpickler.replaced = set()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap,
                         pickle_module=_RESTRICTED_PICKLE)
    except Exception as err:  # the file is foreign: any failure is a bad file, reported as such
        raise Action2SoundError(f"{path}: cannot read it even with placeholders for unknown objects ({err})") from None
    names = sorted(_RestrictedUnpickler.replaced)
    log.warning("%s: torch's weights-only loader refused it (%s); read it with a restricted unpickler "
                "that ran no code and replaced %d non-tensor object type(s) by placeholders: %s",
                path.name, reason, len(names), ", ".join(names[:6]) + (" ..." if len(names) > 6 else ""))
    return obj


def _short_reason(message: str) -> str:
    # torch's message is a page long; its useful line names the refused global.
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in message.splitlines()]
    named = [line for line in lines if "GLOBAL" in line or "global" in line]
    return (named or [line for line in lines if line] or ["refused"])[0][:200]


def state_dict_of(obj: Any, path: Path, key: str = "state_dict") -> dict[str, torch.Tensor]:
    """The tensor dict of a loaded checkpoint: obj[key] when present (Lightning, av.pth), else obj itself."""
    sd = obj.get(key, obj) if isinstance(obj, dict) else obj
    if not isinstance(sd, dict) or not sd:
        raise Action2SoundError(f"{Path(path)}: holds no {key!r} dict of tensors; is it a model checkpoint?")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise Action2SoundError(f"{Path(path)}: entry {bad[0]!r} of its {key!r} is not a tensor")
    return dict(sd)
