"""Generated numba functions and cache keys for the fast path's kernels and callbacks.

PyTensor caches a compiled Op under its cache key alone, not its code, so every key carries a
hash of the source file that defines the kernel (:func:`source_version`). Kernels generated from
source text (one per number of categories, nutpie's callbacks) go through
:func:`generated_function`, which makes them cacheable by numba on disk.
"""

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["generated_function", "source_version"]


def source_version(path: str) -> int:
    """Salt for the numba cache key of an Op defined in the file ``path``: a hash of its bytes.

    PyTensor caches a compiled Op under its key alone (not the code), so any edit of the file
    must change the key, or a stale kernel would be reused from ``~/.pytensor``.
    """
    return int(hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12], 16)


def generated_function(src: str, name: str, global_env: dict[str, Any], salt: str | None) -> Any:
    """The Python function ``name`` defined by ``src``, for numba; disk-cacheable with ``salt``.

    numba cannot cache a function made by ``exec``. PyTensor's ``compile_numba_function_src``
    registers one with its cache locator under a key: here a hash of ``salt`` (the caller's
    source version and whatever else its result depends on) and ``src``. ``global_env`` must
    hold ``"__name__"``: numba rebuilds a cached function's environment from that module.
    None: not cacheable (compiled each time).
    """
    from pytensor.link.numba.cache import compile_numba_function_src

    key = None
    if salt is not None:
        key = "crowdbayes_" + hashlib.sha256(f"{salt}|{src}".encode()).hexdigest()
    return compile_numba_function_src(src, name, global_env=global_env, cache_key=key)
