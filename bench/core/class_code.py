"""What a registered class's code is, so that a change made to it after registration (a plugin that
replaces ``CoOp.forward`` once bench has imported it) is found before results are filed under the
built-in's name and code version::

    snapshot = code_snapshot(CoOp)        # at registration
    CoOp.forward = patched                # later, by someone else's code
    changed_since(CoOp, snapshot)         # ["CoOp.forward"]

A snapshot holds, for every attribute of the class and of each class it inherits from (bench's and
plugins', not Python's or torch's), the attribute itself and, for a function, its code object: a
replaced attribute, a new one, one deleted or a function given other code all show; comparing is by
identity, so it costs a few dictionary reads.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

# Packages whose classes a method inherits from but does not own: patching those is out of scope here.
FOREIGN = ("builtins", "torch", "typing", "abc")
# Attributes the registries themselves set after a snapshot (the name a class is run under).
LABELS = ("registry_name",)

Snapshot = Dict[str, Tuple[Any, Any]]


def code_of(value: Any) -> Any:
    """The code object behind a function, a static or class method, or a property's getter (None for data)."""
    inner = getattr(value, "__func__", None) or getattr(value, "fget", None) or value
    return getattr(inner, "__code__", None)


def code_snapshot(cls: Any) -> Snapshot:
    """``"Owner.attribute" -> (attribute, its code)`` over ``cls`` and the classes it inherits from."""
    snapshot: Snapshot = {}
    for owner in getattr(cls, "__mro__", ()):
        if owner.__module__.split(".")[0] in FOREIGN:
            continue
        for attribute, value in vars(owner).items():
            code = code_of(value)
            if attribute in LABELS or (code is None and attribute.startswith("__")):  # __annotations__ is made on first read
                continue
            snapshot[f"{owner.__qualname__}.{attribute}"] = (value, code)
    return snapshot


def changed_since(cls: Any, snapshot: Snapshot) -> List[str]:
    """The attributes (``"CoOp.forward"``) that differ between ``snapshot`` and ``cls`` now."""
    now = code_snapshot(cls)
    return sorted(name for name in {*snapshot, *now}
                  if name not in now or name not in snapshot
                  or now[name][0] is not snapshot[name][0] or now[name][1] is not snapshot[name][1])
