"""JAX's persistent compilation cache in the Keras cache (`flowerkit.backends.compile_cache`):
kept on JAX, where the user left JAX's own cache setting alone; nothing elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flowerkit.backends import compile_cache
from flowerkit.backends.policy import keeps_compiled_programs

# One process: configure(), then a jitted function compiled; prints what JAX and flowerkit hold.
_PROBE = """
import json, jax
from flowerkit.backends import compile_cache
hits = []
jax.monitoring.register_event_listener(
    lambda event, **_: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
folder = compile_cache.configure()
jax.jit(lambda x: x * 3 + 1)(jax.numpy.ones((7, 5)))
print(json.dumps({"folder": str(folder) if folder else None, "hits": len(hits),
                  "jax_folder": jax.config.jax_compilation_cache_dir,
                  "again": str(compile_cache.configure())}))
"""


@pytest.mark.backend_independent
def test_only_jax_keeps_compiled_programs():
    assert [name for name in ("jax", "tensorflow", "torch") if keeps_compiled_programs(name)] == ["jax"]


def _probe(tmp_path, **env_changes) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JAX_COMPILATION_CACHE")}
    env.update(KERAS_HOME=str(tmp_path / "keras_home"), KERAS_BACKEND="jax", **env_changes)
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.backends("jax")
def test_jax_programs_are_kept_in_the_keras_cache_and_read_back(tmp_path):
    folder = tmp_path / "keras_home" / "flowerkit" / compile_cache.FOLDER_NAME
    first = _probe(tmp_path)
    assert first == {"folder": str(folder), "hits": 0, "jax_folder": str(folder), "again": str(folder)}
    assert any(name.startswith("jit__lambda") for name in os.listdir(folder)), os.listdir(folder)
    assert _probe(tmp_path)["hits"] >= 1  # the same program in a new process: read back, not compiled


@pytest.mark.backends("jax")
def test_a_users_own_jax_cache_folder_is_left_alone(tmp_path):
    own = tmp_path / "my-cache"
    probe = _probe(tmp_path, JAX_COMPILATION_CACHE_DIR=str(own))
    assert (probe["folder"], probe["jax_folder"]) == (None, str(own))
    assert not (tmp_path / "keras_home" / "flowerkit" / compile_cache.FOLDER_NAME).exists()


@pytest.mark.backends("tensorflow", "torch")
def test_other_backends_keep_no_compiled_programs():
    assert compile_cache.configure() is None and compile_cache.folder_in_use() is None
