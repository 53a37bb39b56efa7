"""The ground floor: errors (one ``bench: error:`` line each), name registries, atomic file
writes, and dict -> dataclass coercion with checked fields.
Imports nothing else from bench; every other package may import it."""
