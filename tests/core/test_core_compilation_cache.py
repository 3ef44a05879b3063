"""The persistent compilation cache: on by default in the CLI and examples, opt-out by env."""

import os
import subprocess
import sys
import textwrap

import jaxlrp
from jaxlrp import compilation_cache

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import jax, jax.numpy as jnp
    import jaxlrp
    from jaxlrp import composites

    print(jaxlrp.enable_compilation_cache(sys.argv[1], min_compile_time_s=0.0))
    w = jnp.linspace(-1.0, 1.0, 48).reshape(6, 8)
    f = lambda w, x: jax.nn.relu(x @ w[:, :4]) @ w[:4, 4:]
    start = time.perf_counter()
    jaxlrp.explain(f, w, jnp.ones((2, 6)), target=1, composite=composites.EpsilonPlusFlat())
    print(time.perf_counter() - start)
    """
)


def _run(tmp_path, env_extra):
    env = {k: v for k, v in os.environ.items() if k != "JAXLRP_NO_CACHE"} | env_extra
    env["JAXLRP_COMPILE_EAGER"] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "xla")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_compiled_explanations_are_written_to_the_cache_directory(tmp_path):
    printed = _run(tmp_path, {})
    assert printed[0] == str(tmp_path / "xla")
    assert any((tmp_path / "xla").iterdir()), "no compiled program was written"


def test_the_cache_is_opt_out(tmp_path):
    printed = _run(tmp_path, {"JAXLRP_NO_CACHE": "1"})
    assert printed[0] == "None"
    assert not (tmp_path / "xla").exists()


def test_default_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXLRP_CACHE_DIR", str(tmp_path / "c"))
    assert compilation_cache.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("JAXLRP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.default_cache_dir() == tmp_path / "jaxlrp" / "xla"
    assert jaxlrp.enable_compilation_cache is compilation_cache.enable_compilation_cache
