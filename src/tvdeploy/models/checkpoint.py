"""Loading user checkpoints (``torch.save`` state dicts or safetensors) into an architecture.

Files are read with ``weights_only=True``: tvdeploy never unpickles code. The
classifier head size is inferred from the checkpoint, so a 10-class fine-tuned
resnet18 loads without flags.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvdeploy.errors import CheckpointError

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_PREFIXES = ("module.", "_orig_mod.")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a state dict from a ``torch.save`` file or a ``.safetensors`` file.

    A dict that holds the state dict under ``state_dict``/``model`` is unwrapped, and
    ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        state = _read_safetensors(path)
    else:
        state = _read_torch(path)
    return _strip_prefixes(_unwrap(state, path))


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise CheckpointError(
            "reading .safetensors needs the safetensors package", hint='pip install "tvdeploy[export]"'
        ) from exc
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises SafetensorError (not exported) and OSError
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc


def _read_torch(path: Path) -> Any:
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names the global its weights-only unpickler refused ("Unsupported global: GLOBAL x was not an allowed
        # global" for a class, "unsupported GLOBAL posix.system whose module posix is blocked" for a function)
        blocked = re.search(
            r"GLOBAL (\S+)(?: was not an allowed global| whose module)|safe_globals\(\[([^\]]+)\]\)", str(exc)
        )
        if blocked is None:
            raise CheckpointError(
                f"{path} is not a readable torch checkpoint (corrupt or not a torch.save file)"
            ) from exc
        raise CheckpointError(
            f"{path} holds pickled objects beyond tensors ({blocked.group(1) or blocked.group(2)}), "
            "which tvdeploy refuses to unpickle (weights_only=True)",
            hint="save the weights alone: torch.save(model.state_dict(), path), or use safetensors",
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from exc


def _is_tensor_dict(value: Any) -> bool:
    import torch

    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _unwrap(state: Any, path: Path) -> dict[str, Any]:
    if _is_tensor_dict(state):
        return state
    if isinstance(state, dict):
        for key in _WRAPPER_KEYS:
            if _is_tensor_dict(state.get(key)):
                logger.info("using the state dict under %r in %s", key, path)
                return state[key]
    raise CheckpointError(
        f"{path} holds no state dict (expected a dict of tensors, or one under 'state_dict' or 'model')",
        hint="save with torch.save(model.state_dict(), path)",
    )


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    for prefix in _PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


@dataclass
class FittedModel:
    """The architecture rebuilt to fit a checkpoint, with the checkpoint loaded."""

    module: Any
    num_classes: int


def _head_size(reference: dict[str, Any], state: dict[str, Any], default_classes: int) -> int | None:
    """The class count of a checkpoint whose classifier layers differ from the default head only in size."""
    differing = [k for k in state if k in reference and tuple(state[k].shape) != tuple(reference[k].shape)]
    if not differing:
        return None
    sizes = set()
    for key in differing:
        ours, theirs = tuple(reference[key].shape), tuple(state[key].shape)
        if ours[0] != default_classes or ours[1:] != theirs[1:] or len(ours) != len(theirs):
            return None
        sizes.add(theirs[0])
    return sizes.pop() if len(sizes) == 1 else None


def _mismatch_error(architecture: str, reference: dict[str, Any], state: dict[str, Any]) -> CheckpointError:
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(reference[k].shape)}"
        for k in state
        if k in reference and tuple(state[k].shape) != tuple(reference[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (first: {', '.join(missing[:5])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:5])})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (first: {'; '.join(shapes[:3])})")
    return CheckpointError(
        f"the checkpoint does not fit {architecture}: " + "; ".join(parts),
        hint=f"check that it was saved from a torchvision {architecture} (see `tvdeploy list {architecture}`)",
    )


def fit_checkpoint(architecture: str, state: dict[str, Any], default_classes: int, build: Any) -> FittedModel:
    """Build ``architecture`` shaped like ``state`` and load it strictly.

    ``build(**kwargs)`` returns a randomly initialised model. The head size is
    taken from the checkpoint; auxiliary heads (GoogLeNet, Inception v3) are
    dropped when the checkpoint has none.
    """
    kwargs: dict[str, Any] = {}
    module = build()
    reference = module.state_dict()
    num_classes = _head_size(reference, state, default_classes) or default_classes
    if num_classes != default_classes:
        kwargs["num_classes"] = num_classes
    missing = [k for k in reference if k not in state]
    if missing and all(k.startswith("aux") for k in missing):
        kwargs["aux_logits"] = False
    if kwargs:
        module = build(**kwargs)
        reference = module.state_dict()
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise _mismatch_error(architecture, reference, state) from exc
    return FittedModel(module=module.eval(), num_classes=num_classes)
