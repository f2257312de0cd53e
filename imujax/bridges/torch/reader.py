"""Safe, torch-free reader for PyTorch checkpoints: zip `.pth/.pt/.ckpt`, the legacy (torch < 1.6) stream, safetensors.

`load_checkpoint(path)` returns the pickled object graph with every tensor as a numpy array (bf16/fp8 as
`ml_dtypes` dtypes). Nothing in the file is executed:

* The unpickler resolves only an allow-list of globals to functions written here: the tensor/storage rebuild
  functions, `torch.<dtype>`, `torch.Size`, `torch.device`, `collections.OrderedDict`, numpy array/scalar/dtype
  reconstruction and a few harmless builtins (set, frozenset, complex, slice, range).
* Globals from modules that can run code (os/posix, subprocess, builtins.eval, sys, importlib, pickle, ...) raise
  `UnsafeCheckpointError` naming the global, before anything is called.
* Any other global (e.g. `argparse.Namespace`, a pickled `nn.Module`, a Lightning `AttributeDict`) is by default
  replaced by an inert `RefusedGlobal` placeholder: its module is never imported and nothing is called; the
  placeholder only records the arguments and state the pickle hands it, so tensors inside stay reachable.
  Pass `allow_placeholders=False` to raise `UnsafeCheckpointError` for those too.

With `mmap=True` (default) stored zip members, legacy storages and safetensors data are memory-mapped; contiguous
tensors are then read-only views of the file and strided views are copied. With `mmap=False` every tensor is an
owned, writable copy.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import json
import os
import pickle
import pickletools
import struct
import tarfile
import zipfile
from typing import Any, Callable, Iterator, Mapping

import ml_dtypes
import numpy as np


class CheckpointFormatError(ValueError):
    """The file is not a readable checkpoint (wrong magic, truncated, inconsistent records)."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The pickle references a global the reader refuses to resolve."""


# --------------------------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------------------------

# Legacy typed storage classes (`torch.FloatStorage` ...), used by `_rebuild_tensor_v2` and the legacy format.
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}

# `torch.<name>` dtype globals (the pickled name is the canonical dtype name; aliases kept for old files).
TORCH_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32), "float": np.dtype(np.float32),
    "float64": np.dtype(np.float64), "double": np.dtype(np.float64),
    "float16": np.dtype(np.float16), "half": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype(np.int64), "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32), "int": np.dtype(np.int32),
    "int16": np.dtype(np.int16), "short": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8), "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32), "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64), "cfloat": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128), "cdouble": np.dtype(np.complex128),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "float8_e8m0fnu": np.dtype(ml_dtypes.float8_e8m0fnu),
}

# Tensor kinds torch can pickle that have no faithful numpy form; refused with a clear error.
_UNSUPPORTED_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_qtensor"): "quantized tensor",
    ("torch._utils", "_rebuild_sparse_tensor"): "sparse tensor",
    ("torch._utils", "_rebuild_nested_tensor"): "nested tensor",
    ("torch._utils", "_rebuild_wrapper_subclass"): "tensor subclass (e.g. DTensor)",
    ("torch._utils", "_rebuild_meta_tensor_no_storage"): "meta tensor without data",
    ("torch._utils", "_rebuild_device_tensor_from_numpy"): "device tensor rebuilt from numpy",
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"): "device tensor",
}
_QUANTIZED_STORAGES = {"QInt8Storage", "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage", "QUInt2x4Storage"}


class TorchDtype:
    """Stand-in for a pickled `torch.<dtype>` object."""

    def __init__(self, name: str):
        self.name = name
        self.numpy = TORCH_DTYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchDtype) and other.numpy == self.numpy

    def __hash__(self) -> int:
        return hash(self.numpy)


class _StorageClass:
    """Stand-in for `torch.FloatStorage` & co. (appears inside persistent ids)."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class TorchStorage:
    """One storage record: a flat numpy array (possibly memory-mapped) plus the key it was stored under."""

    def __init__(self, key: str, array: np.ndarray, source: str):
        self.key = key
        self.array = array
        self.source = source  # file name, for error messages

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __repr__(self) -> str:
        return f"TorchStorage(key={self.key!r}, dtype={self.dtype}, numel={self.array.size})"


# --------------------------------------------------------------------------------------------------------------
# inert placeholders for untrusted globals
# --------------------------------------------------------------------------------------------------------------


class RefusedGlobal:
    """Inert record of an untrusted pickled global (a class or function that is never imported or called).

    The unpickler hands out one subclass per global name. Whatever the pickle does with it is recorded instead of
    executed: calling it (REDUCE) or `__new__` (NEWOBJ) stores `args`/`kwargs`, BUILD stores `state`,
    APPENDS/SETITEMS store `items`/`dict_items`. Tensors inside those stay reachable.
    """

    global_name = "<unknown>"

    def __new__(cls, *args: Any, **kwargs: Any) -> "RefusedGlobal":
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        obj.items, obj.dict_items = [], {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # everything was recorded in __new__; never run anything here

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.dict_items[key] = value

    def __reduce__(self) -> Any:
        raise TypeError(f"refusing to re-pickle placeholder for {self.global_name}")

    def __repr__(self) -> str:
        return f"<RefusedGlobal {self.global_name} args={len(self.args)} state={type(self.state).__name__}>"

    def attributes(self) -> dict:
        """The object's attribute dict as far as the pickle described it (BUILD state or dict-like state)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            return merged
        return dict(state) if isinstance(state, dict) else {}


_PLACEHOLDER_CLASSES: dict[str, type] = {}


def _placeholder_class(qualname: str) -> type:
    if qualname not in _PLACEHOLDER_CLASSES:
        _PLACEHOLDER_CLASSES[qualname] = type(
            f"RefusedGlobal[{qualname}]", (RefusedGlobal,), {"global_name": qualname, "__module__": __name__})
    return _PLACEHOLDER_CLASSES[qualname]


# Modules whose globals can run code, touch the system or re-enter pickle: refused outright with an error.
_DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "importlib", "runpy", "shutil", "socket",
    "pickle", "_pickle", "cPickle", "marshal", "ctypes", "pty", "code", "codeop", "commands", "webbrowser",
    "multiprocessing", "asyncio", "tempfile", "signal", "pdb", "bdb", "timeit", "types", "inspect", "platform",
    "popen2", "io", "_io", "glob", "pathlib", "functools", "operator", "codecs", "_codecs", "posixpath", "ntpath",
    "shelve", "dill", "cloudpickle", "joblib", "threading", "_thread", "zipimport", "pkgutil", "site", "sysconfig",
    "urllib", "http", "ftplib", "smtplib", "telnetlib", "xmlrpc", "gc", "weakref",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "torch.hub", "torch.jit", "torch._C",
    "torch.serialization", "torch.utils.cpp_extension", "torch.ops", "torch._ops", "torch.package",
}


def _is_dangerous(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[: i + 1]) in _DANGEROUS_MODULES for i in range(len(parts)))


# --------------------------------------------------------------------------------------------------------------
# allow-listed callables (each validates its arguments: the pickle controls them)
# --------------------------------------------------------------------------------------------------------------


def _check_ints(name: str, values: Any, source: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise CheckpointFormatError(f"{source}: tensor {name} must be a tuple of non-negative ints, got {values!r}")
    return tuple(int(v) for v in values)


def _view_from_storage(storage: Any, offset: Any, size: Any, stride: Any, dtype: np.dtype | None,
                       copy_all: bool) -> np.ndarray:
    if not isinstance(storage, TorchStorage):
        raise CheckpointFormatError(f"tensor rebuild expects a storage, got {type(storage).__name__}")
    src = storage.source
    size, stride = _check_ints("size", size, src), _check_ints("stride", stride, src)
    if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
        raise CheckpointFormatError(f"{src}: bad tensor view on storage {storage.key!r}: offset={offset!r} "
                                    f"size={size} stride={stride}")
    flat = storage.array
    if dtype is not None and dtype != flat.dtype:  # untyped (byte) storage reinterpreted as `dtype`
        if flat.nbytes % dtype.itemsize:
            raise CheckpointFormatError(f"{src}: storage {storage.key!r} has {flat.nbytes} bytes, not a multiple of "
                                        f"{dtype} item size {dtype.itemsize}")
        flat = flat.view(dtype)
    numel = int(np.prod(size, dtype=np.int64))
    if numel == 0:
        return np.zeros(size, flat.dtype)
    needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if needed > flat.size:
        raise CheckpointFormatError(
            f"{src}: tensor of size {size} (stride {stride}, offset {offset}) needs {needed} elements but storage "
            f"{storage.key!r} holds only {flat.size}: the storage record is too short or the checkpoint is corrupt")
    contiguous = all(st == int(np.prod(size[i + 1:], dtype=np.int64)) for i, (n, st) in enumerate(zip(size, stride))
                     if n != 1)
    if contiguous:
        out = flat[offset:offset + numel].reshape(size)
        return out.copy() if copy_all else out
    item = flat.dtype.itemsize
    return np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * item for s in stride)).copy()


def _apply_metadata(array: np.ndarray, metadata: Any) -> np.ndarray:
    # torch stores lazy conj / neg bits of complex and negative views in this dict.
    if isinstance(metadata, dict):
        if metadata.get("neg"):
            array = -array
        if metadata.get("conj"):
            array = np.conj(array)
    return array


class _Rebuilders:
    """The tensor rebuild functions, bound to one load (so they know whether to copy)."""

    def __init__(self, copy_all: bool, dry_run: bool = False):
        self.copy_all, self.dry_run = copy_all, dry_run

    def tensor_v2(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if self.dry_run:
            return None
        return _apply_metadata(_view_from_storage(storage, offset, size, stride, None, self.copy_all), metadata)

    def tensor_v1(self, storage, offset, size, stride):
        return self.tensor_v2(storage, offset, size, stride)

    def tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        if self.dry_run:
            return None
        if not isinstance(dtype, TorchDtype):
            raise CheckpointFormatError(f"_rebuild_tensor_v3 expects a torch dtype, got {dtype!r}")
        return _apply_metadata(_view_from_storage(storage, offset, size, stride, dtype.numpy, self.copy_all), metadata)

    @staticmethod
    def parameter(data, requires_grad=True, hooks=None, state=None):
        return data  # nn.Parameter is just its data here

    def from_type_v2(self, func, new_type, args, state):
        if func not in (self.tensor_v1, self.tensor_v2, self.tensor_v3, self.parameter):
            raise UnsafeCheckpointError(f"_rebuild_from_type_v2 may only wrap tensor rebuilds, got {func!r}")
        if not isinstance(args, tuple):
            raise CheckpointFormatError(f"_rebuild_from_type_v2 expects an argument tuple, got {args!r}")
        return func(*args)


class _TensorTypeMarker:
    """Stand-in for `torch.Tensor` / `torch.nn.Parameter` classes passed to `_rebuild_from_type_v2`."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    if args and not isinstance(args[0], (dict, list, tuple)):
        raise CheckpointFormatError(f"OrderedDict built from unexpected {type(args[0]).__name__}")
    return collections.OrderedDict(*args)


def _torch_size(dims: Any = ()) -> tuple:
    return _check_ints("torch.Size", tuple(dims) if isinstance(dims, (list, tuple)) else dims, "pickle")


def _torch_device(kind: Any, index: Any = None) -> str:
    if not isinstance(kind, str) or (index is not None and not isinstance(index, int)):
        raise CheckpointFormatError(f"torch.device expects (str[, int]), got {kind!r}, {index!r}")
    return kind if index is None else f"{kind}:{index}"


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol-2 pickles spell `bytes` as _codecs.encode(str, 'latin1'); no other codec is needed or allowed.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafeCheckpointError(f"_codecs.encode only allowed for latin1 text, got encoding {encoding!r}")
    return text.encode("latin1")


def _np_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(spec, str):
        raise UnsafeCheckpointError(f"numpy.dtype only accepts a type string, got {type(spec).__name__}")
    return np.dtype(spec, align=bool(align), copy=bool(copy))


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafeCheckpointError(f"numpy _reconstruct only allowed for numpy.ndarray, got {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or (data is not None and not isinstance(data, bytes)):
        raise UnsafeCheckpointError("numpy scalar expects (dtype, bytes)")
    if dtype.hasobject:
        raise UnsafeCheckpointError("numpy object scalars are not allowed")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafeCheckpointError("numpy _frombuffer expects (bytes, non-object dtype, shape)")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if order == "F" else "C")


def _plain(kind: type) -> Callable:
    def build(*args: Any) -> Any:
        if kind in (bytes, bytearray) and args and isinstance(args[0], int):
            raise UnsafeCheckpointError(f"builtins.{kind.__name__}(int) refused (allocation from a number)")
        return kind(*args)
    return build


_SAFE_BUILTINS = {name: _plain(kind) for name, kind in {
    "set": set, "frozenset": frozenset, "complex": complex, "slice": slice, "range": range, "bytes": bytes,
    "bytearray": bytearray, "int": int, "float": float, "str": str, "bool": bool, "tuple": tuple, "list": list,
    "dict": dict}.items()}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler whose `find_class` never imports anything; see the module docstring for the policy."""

    def __init__(self, fh: Any, source: str, rebuild: _Rebuilders, load_storage: Callable[[tuple], Any] | None,
                 allow_placeholders: bool):
        super().__init__(fh)
        self.source, self.rebuild, self.load_storage = source, rebuild, load_storage
        self.allow_placeholders = allow_placeholders
        numpy_core = {
            "_reconstruct": _np_reconstruct, "scalar": _np_scalar, "_frombuffer": _np_frombuffer,
        }
        self.allowed: dict[tuple[str, str], Any] = {
            ("torch._utils", "_rebuild_tensor"): rebuild.tensor_v1,
            ("torch._utils", "_rebuild_tensor_v2"): rebuild.tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): rebuild.tensor_v3,
            ("torch._utils", "_rebuild_parameter"): rebuild.parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): rebuild.parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): rebuild.from_type_v2,
            ("torch", "Tensor"): _TensorTypeMarker("torch.Tensor"),
            ("torch._tensor", "Tensor"): _TensorTypeMarker("torch.Tensor"),
            ("torch.nn.parameter", "Parameter"): _TensorTypeMarker("torch.nn.Parameter"),
            ("torch", "Size"): _torch_size,
            ("torch", "device"): _torch_device,
            ("collections", "OrderedDict"): _ordered_dict,
            ("_codecs", "encode"): _codecs_encode,
            ("numpy", "dtype"): _np_dtype,
            ("numpy", "ndarray"): np.ndarray,
        }
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"):
            for name, fn in numpy_core.items():
                self.allowed[(mod, name)] = fn
        for name, fn in _SAFE_BUILTINS.items():
            self.allowed[("builtins", name)] = fn

    def find_class(self, module: str, name: str) -> Any:
        # Protocol <= 2 pickles spell globals the Python 2 way (__builtin__, commands.Popen); use Python 3 names.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        qualname = f"{module}.{name}"
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if module in ("torch", "torch.cuda", "torch.storage") and name in STORAGE_DTYPES:
            return _StorageClass(name)
        if module in ("torch", "torch.cuda") and name in _QUANTIZED_STORAGES:
            raise CheckpointFormatError(f"{self.source}: quantized tensors ({qualname}) are not supported")
        if module == "torch" and name in TORCH_DTYPES:
            return TorchDtype(name)
        if (module, name) in _UNSUPPORTED_TORCH_GLOBALS:
            raise CheckpointFormatError(
                f"{self.source}: checkpoint contains a {_UNSUPPORTED_TORCH_GLOBALS[(module, name)]} ({qualname}), "
                "which the torch-free reader does not support; convert it to a dense CPU tensor before saving")
        if _is_dangerous(module):
            raise UnsafeCheckpointError(
                f"{self.source}: refusing pickled global {qualname!r}: it could execute code; this checkpoint is "
                "unsafe (or not a plain weights file) and was not loaded")
        if not self.allow_placeholders:
            raise UnsafeCheckpointError(
                f"{self.source}: pickled global {qualname!r} is not on the allow-list (tensors, OrderedDict, numpy, "
                "plain containers); load with allow_placeholders=True to get an inert RefusedGlobal placeholder")
        return _placeholder_class(qualname)

    def persistent_load(self, pid: Any) -> Any:
        if self.load_storage is None or not isinstance(pid, tuple) or not pid:
            raise CheckpointFormatError(f"{self.source}: unexpected persistent id {pid!r}")
        return self.load_storage(pid)


# --------------------------------------------------------------------------------------------------------------
# zip format (torch >= 1.6)
# --------------------------------------------------------------------------------------------------------------

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header, 30 bytes


class _ZipArchive:
    """Locates torch's records inside the zip and maps stored (uncompressed) members straight from the file."""

    def __init__(self, path: str, mmap: bool):
        self.path, self.mmap = path, mmap
        try:
            self.zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as err:
            raise CheckpointFormatError(
                f"{path}: starts like a zip archive but cannot be opened ({err}); the file is truncated or corrupt"
            ) from None
        names = self.zf.namelist()
        pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if not pkls:
            hint = " (a TorchScript archive: use torch.jit to export a state_dict)" if any(
                n.endswith("/constants.pkl") or "/code/" in n for n in names) else ""
            raise CheckpointFormatError(f"{path}: zip archive has no '<prefix>/data.pkl' record, so it is not a "
                                        f"torch.save checkpoint{hint}")
        if len(pkls) > 1:
            raise CheckpointFormatError(f"{path}: several data.pkl records {pkls}; cannot tell which one to load")
        self.prefix = pkls[0][: -len("/data.pkl")]
        self.file_size = os.path.getsize(path)
        order = self._read_optional("byteorder")
        self.byteorder = (order or b"little").decode("ascii", "replace").strip()
        if self.byteorder not in ("little", "big"):
            raise CheckpointFormatError(f"{path}: unknown byteorder record {self.byteorder!r}")
        self._mapped: np.memmap | None = None

    def _read_optional(self, name: str) -> bytes | None:
        try:
            return self.zf.read(f"{self.prefix}/{name}")
        except KeyError:
            return None

    def pickle_bytes(self) -> bytes:
        return self.zf.read(f"{self.prefix}/data.pkl")

    def member_bytes(self, key: str) -> np.ndarray:
        """Raw bytes of `<prefix>/data/<key>` as a uint8 array (memory-mapped when stored uncompressed)."""
        name = f"{self.prefix}/data/{key}"
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise CheckpointFormatError(f"{self.path}: missing data record {name!r} for storage {key!r}") from None
        if info.compress_type != zipfile.ZIP_STORED or not self.mmap:
            return np.frombuffer(self.zf.read(name), dtype=np.uint8)
        with open(self.path, "rb") as fh:
            fh.seek(info.header_offset)
            header = fh.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise CheckpointFormatError(f"{self.path}: corrupt local header for record {name!r}")
        fields = _LOCAL_HEADER.unpack(header)
        start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
        if start + info.file_size > self.file_size:
            raise CheckpointFormatError(f"{self.path}: record {name!r} ends at byte {start + info.file_size} but the "
                                        f"file has {self.file_size} bytes (truncated)")
        if info.file_size == 0:
            return np.zeros(0, np.uint8)
        if self._mapped is None:
            self._mapped = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._mapped[start:start + info.file_size].view(np.ndarray)


def _storage_array(raw: np.ndarray, dtype: np.dtype, numel: int, key: str, path: str, byteorder: str,
                   copy_all: bool) -> np.ndarray:
    """Reinterpret a record's bytes as `numel` elements of `dtype` (the host is assumed little-endian)."""
    nbytes = numel * dtype.itemsize
    if raw.size < nbytes:
        raise CheckpointFormatError(f"{path}: storage {key!r} is too short: record has {raw.size} bytes but the "
                                    f"pickle declares {numel} x {dtype} = {nbytes} bytes")
    raw = raw[:nbytes]
    if byteorder == "big" and dtype.itemsize > 1:
        # Reverse the bytes of every scalar (each half of a complex number separately); works for ml_dtypes too.
        width = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
        return raw.reshape(-1, width)[:, ::-1].copy().reshape(-1).view(dtype)
    arr = raw.view(dtype)
    return arr.copy() if copy_all else arr


def _parse_storage_pid(pid: tuple, path: str) -> tuple[str, np.dtype, int]:
    if pid[0] != "storage" or len(pid) < 5 or not isinstance(pid[1], _StorageClass):
        raise CheckpointFormatError(f"{path}: unexpected persistent id {pid!r}")
    _, storage_class, key, _location, numel = pid[:5]
    if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
        raise CheckpointFormatError(f"{path}: malformed storage persistent id {pid!r}")
    return key, storage_class.dtype, numel


def _load_zip(path: str, mmap: bool, allow_placeholders: bool) -> Any:
    archive = _ZipArchive(path, mmap)
    cache: dict[str, TorchStorage] = {}

    def load_storage(pid: tuple) -> TorchStorage:
        key, dtype, numel = _parse_storage_pid(pid, path)
        if key not in cache:
            raw = archive.member_bytes(key)
            arr = _storage_array(raw, dtype, numel, key, path, archive.byteorder, copy_all=not mmap)
            cache[key] = TorchStorage(key, arr, path)
        return cache[key]

    rebuild = _Rebuilders(copy_all=not mmap)
    unpickler = _SafeUnpickler(io.BytesIO(archive.pickle_bytes()), path, rebuild, load_storage, allow_placeholders)
    return _run_unpickler(unpickler, path)


def _run_unpickler(unpickler: _SafeUnpickler, path: str) -> Any:
    try:
        return unpickler.load()
    except (CheckpointFormatError, UnsafeCheckpointError):
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, KeyError, IndexError) as err:
        raise CheckpointFormatError(f"{path}: malformed pickle ({type(err).__name__}: {err})") from None


# --------------------------------------------------------------------------------------------------------------
# legacy stream format (torch < 1.6 or _use_new_zipfile_serialization=False)
# --------------------------------------------------------------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _load_plain(fh: Any, path: str, what: str) -> Any:
    """Unpickle a small header object that must not contain any global at all."""
    unpickler = _SafeUnpickler(fh, path, _Rebuilders(True, dry_run=True), None, allow_placeholders=False)
    unpickler.allowed = {}
    try:
        return unpickler.load()
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except Exception as err:  # noqa: BLE001 - any failure here means "not this format"
        raise CheckpointFormatError(f"{path}: cannot read the legacy {what} ({type(err).__name__}: {err})") from None


def _load_legacy(path: str, mmap: bool, allow_placeholders: bool) -> Any:
    file_size = os.path.getsize(path)
    with open(path, "rb") as fh:
        magic = _load_plain(fh, path, "magic number")
        if magic != LEGACY_MAGIC:
            raise CheckpointFormatError(f"{path}: wrong magic number {magic!r}: a pickle, but not a torch checkpoint")
        protocol = _load_plain(fh, path, "protocol version")
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointFormatError(f"{path}: unsupported legacy protocol version {protocol!r}")
        sys_info = _load_plain(fh, path, "system info")
        if not isinstance(sys_info, dict):
            raise CheckpointFormatError(f"{path}: legacy system info is {type(sys_info).__name__}, expected dict")
        pickle_start = fh.tell()
        # Storage data follows the pickle, so find where the pickle ends without executing it, then read the keys.
        try:
            for opcode, _arg, _pos in pickletools.genops(fh):
                if opcode.name == "STOP":
                    break
        except ValueError as err:
            raise CheckpointFormatError(f"{path}: legacy pickle is truncated or corrupt ({err})") from None
        keys = _load_plain(fh, path, "storage key list")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointFormatError(f"{path}: legacy storage key list is malformed: {keys!r}")
        data_start = fh.tell()
        fh.seek(pickle_start)
        pickled = fh.read(data_start - pickle_start)

    # Pass 1 (no data): learn each storage's dtype and declared size from the persistent ids.
    declared: dict[str, tuple[np.dtype, int]] = {}

    def record_storage(pid: tuple) -> Any:
        if pid[0] == "module":
            return pid[1] if len(pid) > 1 else None
        key, dtype, numel = _parse_storage_pid(pid, path)
        declared.setdefault(key, (dtype, numel))
        return None

    _run_unpickler(_SafeUnpickler(io.BytesIO(pickled), path, _Rebuilders(True, dry_run=True), record_storage,
                                  allow_placeholders), path)

    # Storage records: int64 element count (little-endian) then the raw little-endian elements, in key-list order.
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if mmap and file_size else None
    storages: dict[str, TorchStorage] = {}
    offset = data_start
    with open(path, "rb") as fh:
        for key in keys:
            if key not in declared:
                raise CheckpointFormatError(f"{path}: storage key {key!r} is listed but never used by the pickle")
            dtype, numel = declared[key]
            fh.seek(offset)
            head = fh.read(8)
            if len(head) != 8:
                raise CheckpointFormatError(f"{path}: file ends before the record of storage {key!r} (truncated)")
            (count,) = struct.unpack("<q", head)
            nbytes = count * dtype.itemsize
            start = offset + 8
            if count != numel:
                raise CheckpointFormatError(f"{path}: storage {key!r} record holds {count} elements but the pickle "
                                            f"declares {numel}")
            if start + nbytes > file_size:
                raise CheckpointFormatError(f"{path}: storage {key!r} is too short: needs {nbytes} bytes at offset "
                                            f"{start} but the file has {file_size} bytes (truncated)")
            if mapped is not None:
                raw = mapped[start:start + nbytes].view(np.ndarray)
            else:
                fh.seek(start)
                raw = np.frombuffer(fh.read(nbytes), dtype=np.uint8)
            storages[key] = TorchStorage(key, _storage_array(raw, dtype, count, key, path, "little", not mmap), path)
            offset = start + nbytes
    views: dict[str, TorchStorage] = {}

    def load_storage(pid: tuple) -> Any:
        if pid[0] == "module":
            return pid[1] if len(pid) > 1 else None
        key, _dtype, _numel = _parse_storage_pid(pid, path)
        if key not in storages:
            raise CheckpointFormatError(f"{path}: missing data record for storage {key!r}")
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return storages[key]
        view_key, start, length = view  # element offsets into the root storage (old storage views)
        if view_key not in views:
            views[view_key] = TorchStorage(view_key, storages[key].array[start:start + length], path)
        return views[view_key]

    return _run_unpickler(_SafeUnpickler(io.BytesIO(pickled), path, _Rebuilders(not mmap), load_storage,
                                         allow_placeholders), path)


# --------------------------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------------------------

SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U64": np.dtype(np.uint64), "U32": np.dtype(np.uint32),
    "U16": np.dtype(np.uint16), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "F8_E8M0": np.dtype(ml_dtypes.float8_e8m0fnu), "C64": np.dtype(np.complex64),
}
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def read_safetensors_header(path: str) -> tuple[dict, int]:
    """Parse and validate the JSON header; returns (header dict, byte offset where tensor data starts)."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise CheckpointFormatError(f"{path}: too short for a safetensors file ({file_size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length > min(file_size - 8, _MAX_SAFETENSORS_HEADER):
            raise CheckpointFormatError(f"{path}: safetensors header length {length} is out of range (file has "
                                        f"{file_size} bytes)")
        raw = fh.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointFormatError(f"{path}: safetensors header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{path}: safetensors header must be a JSON object")
    data_len = file_size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in SAFETENSORS_DTYPES:
            raise CheckpointFormatError(f"{path}: tensor {name!r} has unknown or missing dtype "
                                        f"{entry.get('dtype') if isinstance(entry, dict) else entry!r}")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise CheckpointFormatError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise CheckpointFormatError(f"{path}: tensor {name!r} data_offsets {offsets!r} are out of range "
                                        f"(data section has {data_len} bytes)")
        expected = int(np.prod(shape, dtype=np.int64)) * SAFETENSORS_DTYPES[entry["dtype"]].itemsize
        if offsets[1] - offsets[0] != expected:
            raise CheckpointFormatError(f"{path}: tensor {name!r} spans {offsets[1] - offsets[0]} bytes but shape "
                                        f"{shape} x {entry['dtype']} needs {expected}")
    return header, 8 + length


def load_safetensors(path: str, mmap: bool = True) -> "collections.OrderedDict[str, np.ndarray]":
    """All tensors of a safetensors file, in header order (memory-mapped, read-only, when `mmap`)."""
    header, data_start = read_safetensors_header(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if mmap and os.path.getsize(path) > 0 else None
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    with open(path, "rb") as fh:
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            begin, end = (data_start + o for o in entry["data_offsets"])
            if mapped is not None:
                raw = mapped[begin:end].view(np.ndarray)
            else:
                fh.seek(begin)
                raw = np.frombuffer(fh.read(end - begin), dtype=np.uint8)
            out[name] = _storage_array(raw, dtype, (end - begin) // dtype.itemsize, name, path, "little",
                                       copy_all=not mmap).reshape(entry["shape"])
    return out


def safetensors_metadata(path: str) -> dict[str, str]:
    """The free-form `__metadata__` map of a safetensors file ({} when absent)."""
    meta = read_safetensors_header(path)[0].get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointFormatError(f"{path}: safetensors __metadata__ must be an object")
    return meta


# --------------------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------------------


def detect_format(path: str) -> str:
    """'zip', 'legacy', 'safetensors'; raises CheckpointFormatError for anything else."""
    if not os.path.isfile(path):
        raise CheckpointFormatError(f"{path}: no such checkpoint file")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 1:
        return "safetensors"
    if head[:1] == b"\x80" and len(head) > 2:
        return "legacy"
    if path.endswith(".safetensors"):
        return "safetensors"
    if tarfile.is_tarfile(path):
        raise CheckpointFormatError(f"{path}: a tar-based torch checkpoint (torch <= 0.3); re-save it with a newer "
                                    "torch, this reader handles zip, legacy-stream and safetensors files")
    raise CheckpointFormatError(f"{path}: not a PyTorch checkpoint: unrecognised leading bytes {head[:8]!r} "
                                "(expected a zip archive, a legacy torch pickle or a safetensors header)")


def load_checkpoint(path: str | os.PathLike, *, mmap: bool = True, allow_placeholders: bool = True) -> Any:
    """Load a torch checkpoint or safetensors file as plain Python objects with numpy arrays, never importing torch."""
    path = os.fspath(path)
    kind = detect_format(path)
    if kind == "zip":
        return _load_zip(path, mmap, allow_placeholders)
    if kind == "legacy":
        return _load_legacy(path, mmap, allow_placeholders)
    return load_safetensors(path, mmap)


# --------------------------------------------------------------------------------------------------------------
# navigating what was loaded
# --------------------------------------------------------------------------------------------------------------


def _module_placeholder_children(obj: RefusedGlobal) -> Iterator[tuple[str, Any]]:
    """Parameters, buffers and sub-modules of a pickled nn.Module placeholder (its `__dict__` state)."""
    attrs = obj.attributes()
    for group in ("_parameters", "_buffers"):
        for name, value in (attrs.get(group) or {}).items():
            if value is not None:
                yield name, value
    for name, value in (attrs.get("_modules") or {}).items():
        if value is not None:
            yield name, value


def _is_module_placeholder(obj: Any) -> bool:
    return isinstance(obj, RefusedGlobal) and "_parameters" in obj.attributes()


def flatten_state_dict(obj: Any, sep: str = ".", prefix: str = "") -> "collections.OrderedDict[str, Any]":
    """Flatten nested dicts/lists/tuples (and pickled nn.Module placeholders) into `a.b.0.c -> leaf`."""
    out: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            items: Any = node.items()
        elif isinstance(node, (list, tuple)):
            items = enumerate(node)
        elif _is_module_placeholder(node):
            items = _module_placeholder_children(node)
        else:
            out[key] = node
            return
        for child_key, child in items:
            walk(child, f"{key}{sep}{child_key}" if key else str(child_key))

    walk(obj, prefix)
    return out


STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")


def find_state_dict(obj: Any, sep: str = ".") -> "collections.OrderedDict[str, np.ndarray]":
    """The model weights of a loaded checkpoint, flattened to `name -> array`.

    Looks through the usual wrappers ('state_dict' as in Lightning, 'model_state_dict', 'model' as in
    Audio-MAE, ...), accepts a bare state_dict and a pickled nn.Module placeholder.
    """
    candidate = obj
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if key in obj and (isinstance(obj[key], Mapping) or _is_module_placeholder(obj[key])):
                candidate = obj[key]
                break
    elif not _is_module_placeholder(obj):
        raise CheckpointFormatError(f"cannot find a state_dict in a {type(obj).__name__}")
    flat = flatten_state_dict(candidate, sep)
    arrays = collections.OrderedDict((k, v) for k, v in flat.items() if isinstance(v, np.ndarray))
    if not arrays:
        top = list(obj)[:20] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointFormatError(f"no tensors found in the checkpoint's state_dict; top-level keys: {top}")
    return arrays
