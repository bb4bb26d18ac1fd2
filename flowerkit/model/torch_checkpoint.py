"""Read a PyTorch state dict (`torch.save` of a dict of tensors) into NumPy
arrays without PyTorch, so that an environment with another Keras backend
can load weights published as `.pth` files.

Both of `torch.save`'s formats are read: the zip archive (PyTorch >= 1.6)
and the legacy stream (a pickle, then each storage's bytes in turn). The
unpickler is restricted: it builds only ordered dicts and tensors from
storages, so a `.pth` cannot run code here (as `torch.load(weights_only=True)`).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from flowerkit.errors import FlowerkitError

# torch's storage classes -> NumPy dtypes (little-endian, as torch writes them).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage:
    """A storage named in the pickle; its bytes come later (legacy) or from the zip."""

    def __init__(self, key: str, dtype: str, numel: int):
        self.key, self.dtype, self.numel = key, np.dtype(dtype), numel
        self.array: np.ndarray | None = None


class _TensorStub:
    """What `torch._utils._rebuild_tensor_v2` would build, made real once the storage is read."""

    def __init__(self, storage: _Storage, offset: int, shape, stride, *unused):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.array
        if not self.shape:
            return flat[self.offset].copy()
        itemsize = flat.dtype.itemsize
        return np.lib.stride_tricks.as_strided(
            flat[self.offset:], self.shape, [s * itemsize for s in self.stride]
        ).copy()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _TensorStub
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, saved_id):
        # ("storage", storage type, key, location, numel[, view metadata])
        kind, storage_type, key, _location, numel, *_ = saved_id
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported persistent id {saved_id[:2]}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, _STORAGE_DTYPES[storage_type], numel)
        return self.storages[key]


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The tensors of the `.pth` state dict at `path`, as NumPy arrays.
    Raises FlowerkitError (naming the file) for anything else."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            state = _read_zip(path)
        else:
            state = _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError,
            AttributeError, IndexError, struct.error, zipfile.BadZipFile) as error:
        raise FlowerkitError(
            f"{path} is not a readable PyTorch state dict ({type(error).__name__}: {error}); "
            "damaged or truncated? Download it again."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, _TensorStub) for v in state.values()):
        raise FlowerkitError(f"{path} holds no plain state dict of tensors.")
    return {name: tensor.to_numpy() for name, tensor in state.items()}


def _read_legacy(path: Path):
    with open(path, "rb") as file:
        if pickle.load(file) != _LEGACY_MAGIC:
            raise ValueError("not a torch.save file (wrong magic number)")
        pickle.load(file)  # protocol version
        pickle.load(file)  # system info (byte order, type sizes)
        storages: dict[str, _Storage] = {}
        state = _RestrictedUnpickler(file, storages).load()
        for key in pickle.load(file):  # each storage: int64 element count, then its bytes
            storage = storages[key]
            (numel,) = struct.unpack("<q", file.read(8))
            data = file.read(numel * storage.dtype.itemsize)
            if numel != storage.numel or len(data) != numel * storage.dtype.itemsize:
                raise EOFError(f"storage {key} is cut short")
            storage.array = np.frombuffer(data, storage.dtype)
    return state


def _read_zip(path: Path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_name = next(n for n in names if n.endswith("/data.pkl"))
        root = pickle_name[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        state = _RestrictedUnpickler(io.BytesIO(archive.read(pickle_name)), storages).load()
        for key, storage in storages.items():
            data = archive.read(f"{root}data/{key}")
            storage.array = np.frombuffer(data, storage.dtype)[: storage.numel]
    return state
