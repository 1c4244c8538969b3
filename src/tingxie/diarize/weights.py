"""The pretrained speaker encoder's weights, read without torch.

The `resemblyzer` wheel (Apache-2.0) ships `pretrained.pt`: a 3-layer LSTM speaker encoder saved by
an old torch in its legacy (pre-zip) format. Installing the wheel with --no-deps (scripts/setup.sh)
brings the file without torch, librosa or webrtcvad; tingxie never imports the package, it only
reads that file. The legacy format is: a few pickles (magic number, protocol, system info), the
object's pickle whose tensors point at storages by key, the list of storage keys, then each
storage's raw bytes behind an 8-byte element count. That is simple enough to read here, so the
default install needs no torch for speaker labels.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import struct
from pathlib import Path

import numpy as np

from tingxie.errors import OptionError

PACKAGE = "resemblyzer"
WEIGHTS_FILE = "pretrained.pt"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def default_weights_path() -> Path:
    """Where the installed resemblyzer wheel keeps its encoder (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise OptionError("--diarize needs the speaker encoder of the 'resemblyzer' wheel: "
                      "pip install --no-deps resemblyzer==0.1.4 (scripts/setup.sh does)")


class _Storage:
    """A storage named in the pickle; its bytes come after the pickle and are filled in later."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.array: np.ndarray | None = None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def numpy(self) -> np.ndarray:
        flat = self.storage.array
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=tuple(s * itemsize for s in self.stride))
        return np.array(view)  # a copy: the storage may be shared by several tensors


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, storage_offset, size, stride)


class _Opaque:
    """Anything else in the checkpoint (optimizer state, parameters' wrappers) is kept inert."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    def __init__(self, handle, storages: dict):
        super().__init__(handle, encoding="latin1")
        self._storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            from collections import OrderedDict
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda tensor, *_: tensor
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        return _Opaque

    def persistent_load(self, pid):
        kind, storage_type, key = pid[0], pid[1], pid[2]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        dtype = storage_type if isinstance(storage_type, type) else np.float32
        return self._storages.setdefault(key, _Storage(dtype))


def read_legacy_torch_file(path: Path) -> dict:
    """The checkpoint's object, with every tensor as a NumPy array (legacy torch format only)."""
    data = Path(path).read_bytes()
    handle = io.BytesIO(data)
    if pickle.load(handle) != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a legacy torch checkpoint")
    pickle.load(handle)  # protocol version
    sys_info = pickle.load(handle)
    if not sys_info.get("little_endian", True):
        raise ValueError(f"{path}: big-endian checkpoints are not supported")
    storages: dict = {}
    obj = _Unpickler(handle, storages).load()
    keys = pickle.load(handle)
    for key in keys:
        (count,) = struct.unpack("<q", handle.read(8))
        storage = storages[key]
        nbytes = count * np.dtype(storage.dtype).itemsize
        storage.array = np.frombuffer(handle.read(nbytes), dtype=storage.dtype)
    return _materialise(obj)


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {key: _materialise(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(value) for value in obj)
    return obj


def encoder_weights(path: Path | None = None) -> dict[str, np.ndarray]:
    """The encoder's state dict ('lstm.weight_ih_l0', ..., 'linear.weight', 'linear.bias')."""
    checkpoint = read_legacy_torch_file(path or default_weights_path())
    state = checkpoint["model_state"]
    return {name: np.asarray(value, dtype=np.float32) for name, value in state.items()
            if name.startswith(("lstm.", "linear."))}
