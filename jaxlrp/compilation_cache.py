"""JAX's persistent compilation cache, switched on for jaxlrp's command line and examples.

An explanation is one XLA program; compiling it is most of a short run's time (the CLI spent
~36 s per run compiling a VGG-16 explanation). JAX can keep compiled programs on disk and reuse
them in later processes::

    import jaxlrp
    jaxlrp.enable_compilation_cache()          # ~/.cache/jaxlrp/xla, or $JAXLRP_CACHE_DIR
    # or, with JAX alone:
    jax.config.update("jax_compilation_cache_dir", "/path/to/cache")

The CLI and the examples call :func:`enable_compilation_cache` unless ``JAXLRP_NO_CACHE=1`` is
set (or the CLI's ``--no-cache`` is given).
"""

from __future__ import annotations

import os
import pathlib

import jax

CACHE_DIR_ENV = "JAXLRP_CACHE_DIR"
OPT_OUT_ENV = "JAXLRP_NO_CACHE"


def default_cache_dir() -> pathlib.Path:
    """``$JAXLRP_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxlrp/xla``, else ``~/.cache/jaxlrp/xla``."""
    if os.environ.get(CACHE_DIR_ENV):
        return pathlib.Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "jaxlrp" / "xla"


def enable_compilation_cache(
    path: str | os.PathLike[str] | None = None, *, min_compile_time_s: float = 0.5
) -> pathlib.Path | None:
    """Keep compiled XLA programs in ``path`` (default :func:`default_cache_dir`) across
    processes, for programs that took at least ``min_compile_time_s`` to compile.

    Returns the directory, or None when ``JAXLRP_NO_CACHE=1`` opts out or the directory cannot
    be created (the cache is an optimisation: it never stops a run).
    """
    if os.environ.get(OPT_OUT_ENV, "0") not in ("", "0"):
        return None
    directory = pathlib.Path(path).expanduser() if path is not None else default_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
