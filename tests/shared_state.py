"""A fingerprint of an object that tests share (session- and module-scoped fixtures).

``conftest.py`` takes one before and after every test that uses a shared fixture and fails the test
if it changed: a tensor replaced, removed or modified in place, a submodule, hook or attribute added
or removed, a training flag flipped, a field reassigned.  Such a change leaks into every later test,
and whether a fixture library restores it (pytest 9.2's ``monkeypatch`` deletes an ``nn.Module``
buffer it patched, as the buffer is not in the instance ``__dict__``) is not ours to rely on.

    >>> before = fingerprint(backbone)
    >>> ...                                  # the test
    >>> assert fingerprint(backbone) == before
"""
import torch
from torch import nn

SCALARS = (str, bytes, int, float, bool, complex, type(None))
INTEGER_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def fingerprint(obj, depth: int = 4):
    """A comparable value that changes when ``obj``'s reachable state does (to ``depth`` levels)."""
    if isinstance(obj, SCALARS):
        return obj
    if isinstance(obj, torch.Tensor):
        return ("tensor", id(obj), obj._version, obj.requires_grad, tuple(obj.shape), obj.dtype, str(obj.device),
                checksum(obj))
    if isinstance(obj, nn.Module):
        return module_fingerprint(obj)
    if depth == 0:
        return type(obj).__name__, id(obj)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return type(obj).__name__, id(obj), tuple(fingerprint(item, depth - 1) for item in items)
    if isinstance(obj, dict):
        return "dict", id(obj), fields(obj, depth - 1)
    attributes = getattr(obj, "__dict__", None)
    if attributes is None:
        return type(obj).__name__, id(obj)
    return type(obj).__name__, id(obj), fields(attributes, depth - 1)


def checksum(tensor: torch.Tensor) -> int:
    """The sum of the tensor's bits read as integers (wrapping): exact, so the same in any reduction order, and
    it sees a write through ``.data``, which ``_version`` does not count."""
    bits = tensor.detach().contiguous().view(INTEGER_OF_SIZE[tensor.element_size()])
    return int(bits.sum(dtype=bits.dtype))  # wraps around, exactly


def fields(mapping, depth: int) -> tuple:
    return tuple((key, fingerprint(value, depth)) for key, value in mapping.items())


def module_fingerprint(module: nn.Module):
    """Every tensor (identity, in-place version, grad flag, bits), submodule, hook and plain attribute
    (by identity: the tokenizer's memo of words it has split may grow)."""
    tensors = tuple((name, fingerprint(t)) for name, t in module.named_parameters(remove_duplicate=False))
    tensors += tuple((name, fingerprint(t)) for name, t in module.named_buffers(remove_duplicate=False))
    modules = tuple((name, id(m), m.training, len(m._forward_hooks), len(m._forward_pre_hooks),
                     len(m._backward_hooks), len(getattr(m, "_backward_pre_hooks", ())),
                     tuple(sorted(name for name in vars(m) if not name.startswith("_"))))
                    for name, m in module.named_modules(remove_duplicate=False))
    plain = {name: value for name, value in vars(module).items()
             if not name.startswith("_") and not isinstance(value, (nn.Module, torch.Tensor))}
    return "module", id(module), tensors, modules, fields(plain, 0)
