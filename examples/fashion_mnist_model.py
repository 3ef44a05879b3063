"""A small Fashion-MNIST CNN: definition, data loader and a cached optax training run.

Reusable by other examples::

    from fashion_mnist_model import load_fashion_mnist, trained_model
    module, variables = trained_model(cache_dir="out/cache")   # trains once (~1 min), then cached
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()

Images are float32 NHWC in [0, 1] (so ZBox bounds are ``low=0, high=1``), labels int32.
The data are the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``,
the original idx.gz files); another directory can be given with ``FASHION_MNIST_DIR``. Without
the data, :func:`load_fashion_mnist` raises :class:`FashionMNISTMissing`, whose message names the
package, and the examples print that message and exit with status 3 (``EXIT_NO_DATA``).

Run directly to train (or load) and print the test accuracy::

    python examples/fashion_mnist_model.py --cache-dir out/cache

References:
  H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a novel image dataset for benchmarking machine
  learning algorithms", arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import argparse
import gzip
import os
import pathlib
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlrp

DEFAULT_DATA_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")  # fmt: skip


class FashionCNN(nn.Module):
    """conv16 → ReLU → avgpool2 → conv32 → ReLU → avgpool2 → dense128 → ReLU → dense10.

    Input: (N, 28, 28, 1) in [0, 1]; output: logits (N, 10). Average pooling rather than max
    pooling: XLA's max-pool gradient is slow on CPU (a training step takes 2.3× longer).
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(16, (3, 3), padding="SAME", name="conv1")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(32, (3, 3), padding="SAME", name="conv2")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(128, name="fc1")(x))
        return nn.Dense(self.num_classes, name="fc2")(x)


def _read_idx(path: pathlib.Path) -> np.ndarray:
    """Read an idx (optionally gzipped) file: magic, dims (big-endian int32), uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(tuple(dims))


FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # fmt: skip


EXIT_NO_DATA = 3
"""Exit status of an example that stopped because Fashion-MNIST is absent."""


class FashionMNISTMissing(FileNotFoundError):
    """The Fashion-MNIST files are not on this machine (the message says how to get them)."""


def fashion_mnist_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
    """Where the data are read from: ``override``, else ``$FASHION_MNIST_DIR``, else the Debian
    package's directory. Read at call time, so setting the variable later takes effect."""
    if override is not None:
        return pathlib.Path(override)
    return pathlib.Path(os.environ.get("FASHION_MNIST_DIR", DEFAULT_DATA_DIR))


def missing_files(override: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """The data files that are absent (empty when Fashion-MNIST can be loaded)."""
    root = fashion_mnist_dir(override)
    return [root / name for name in FILES if not (root / name).is_file()]


def missing_message(override: str | os.PathLike | None = None) -> str:
    """Why the data cannot be loaded and how to fix it."""
    return (f"Fashion-MNIST not found in {fashion_mnist_dir(override)}: install the Debian package "
            f"{DEBIAN_PACKAGE} (sudo apt-get install {DEBIAN_PACKAGE}) or set FASHION_MNIST_DIR "
            f"to a directory holding {', '.join(FILES)}")  # fmt: skip


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))``; x float32 (N, 28, 28, 1) in [0, 1].

    Raises:
      FashionMNISTMissing: the files are absent (its message names the Debian package).
    """
    if missing_files(data_dir):
        raise FashionMNISTMissing(missing_message(data_dir))
    root = fashion_mnist_dir(data_dir)

    def part(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        return (images[..., None].astype(np.float32) / 255.0, labels.astype(np.int32))

    return part("train"), part("t10k")


def accuracy(module: nn.Module, variables: Any, x: np.ndarray, y: np.ndarray,
             batch: int = 1000) -> float:  # fmt: skip
    """Top-1 accuracy of ``module`` on ``(x, y)``."""
    apply = jax.jit(module.apply)
    hits = sum(int((apply(variables, x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum())
               for i in range(0, len(x), batch))  # fmt: skip
    return hits / len(x)


def train(
    epochs: int = 3, batch_size: int = 128, learning_rate: float = 2e-3, seed: int = 0,
    data_dir: str | os.PathLike | None = None, verbose: bool = True,
) -> tuple[FashionCNN, Any]:  # fmt: skip
    """Train :class:`FashionCNN` with Adam (cosine-decayed learning rate) on the training set.

    Three epochs take about a minute and a quarter on two CPU cores and reach ≈89% test accuracy.

    Returns:
      ``(module, variables)``.
    """
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(data_dir)
    module = FashionCNN()
    key = jax.random.key(seed)
    variables = module.init(key, x_train[:1])
    steps_per_epoch = len(x_train) // batch_size
    schedule = optax.cosine_decay_schedule(learning_rate, epochs * steps_per_epoch)
    optimizer = optax.adam(schedule)
    opt_state = optimizer.init(variables)

    @jax.jit
    def step(variables: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, Any]:
        def loss_fn(v: Any) -> jax.Array:
            logits = module.apply(v, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(variables)
        updates, opt_state = optimizer.update(grads, opt_state, variables)
        return optax.apply_updates(variables, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            variables, opt_state, loss = step(variables, opt_state, x_train[idx], y_train[idx])
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: loss {float(loss):.3f}, "
                  f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    if verbose:
        print(f"test accuracy {accuracy(module, variables, x_test, y_test):.4f}")
    return module, variables


def save_variables(path: str | os.PathLike, variables: Any) -> None:
    """Save a variables pytree to ``.npz`` (keys are '/'-joined paths)."""
    flat = {"/".join(str(k.key) for k in p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(variables)[0]}  # fmt: skip
    np.savez(path, **flat)


def load_variables(path: str | os.PathLike) -> dict:
    """Inverse of :func:`save_variables`: a nested dict of jnp arrays."""
    out: dict = {}
    with np.load(path) as data:
        for name in data.files:
            node = out
            *parents, leaf = name.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = jnp.asarray(data[name])
    return out


def trained_model(
    cache_dir: str | os.PathLike = "out/cache", data_dir: str | os.PathLike | None = None,
    retrain: bool = False, **train_options: Any,
) -> tuple[FashionCNN, Any]:  # fmt: skip
    """The trained :class:`FashionCNN` and its variables, trained once and cached.

    The weights are cached at ``cache_dir/fashion_mnist_cnn.npz`` (keyed by the training options;
    never commit them).
    """
    cache = pathlib.Path(cache_dir)
    suffix = "".join(f"_{k}{v}" for k, v in sorted(train_options.items()))
    path = cache / f"fashion_mnist_cnn{suffix}.npz"
    if path.exists() and not retrain:
        return FashionCNN(), load_variables(path)
    module, variables = train(data_dir=data_dir, **train_options)
    cache.mkdir(parents=True, exist_ok=True)
    save_variables(path, variables)
    return module, variables


def exit_if_missing() -> None:
    """For the examples' ``main``: without the data, print why and how to fix it, and exit with
    :data:`EXIT_NO_DATA` (no traceback)."""
    if missing_files():
        print(f"error: {missing_message()}", file=sys.stderr)
        raise SystemExit(EXIT_NO_DATA)


def main() -> None:
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default="out/cache")
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args()
    exit_if_missing()
    module, variables = trained_model(args.cache_dir, retrain=args.retrain)
    _, (x_test, y_test) = load_fashion_mnist()
    print(f"test accuracy {accuracy(module, variables, x_test, y_test):.4f}")


if __name__ == "__main__":
    main()
