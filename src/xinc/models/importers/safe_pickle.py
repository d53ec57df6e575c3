"""Load PyTorch zip checkpoints with a restricted unpickler: an allow-list of globals, no code runs.

`torch.load(weights_only=True)` refuses checkpoints that reference OmegaConf classes (Lightning
files). Here every global the pickle names goes through `find_class`: plain containers and the
tensor rebuild functions are allowed, OmegaConf classes become inert `Recorded` stand-ins that
only keep their pickled state, and anything else (os.system, eval, builtins.getattr, ...) is
refused with an XincError before it is called. Storages are read from the zip archive on the CPU
(the device tag, e.g. 'cuda:0', is ignored), like `torch.load(map_location="cpu")`.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from xinc.errors import XincError

# torch's legacy storage class names -> dtype (what torch.save writes into each persistent id)
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}

# OmegaConf classes Lightning pickles into `hyper_parameters` (and sometimes optimizer groups)
OMEGACONF_CLASSES = {
    ("omegaconf.dictconfig", "DictConfig"),
    ("omegaconf.listconfig", "ListConfig"),
    ("omegaconf.nodes", "AnyNode"),
    ("omegaconf.nodes", "StringNode"),
    ("omegaconf.nodes", "IntegerNode"),
    ("omegaconf.nodes", "FloatNode"),
    ("omegaconf.nodes", "BooleanNode"),
    ("omegaconf.nodes", "BytesNode"),
    ("omegaconf.nodes", "PathNode"),
    ("omegaconf.base", "Metadata"),
    ("omegaconf.base", "ContainerMetadata"),
}

# harmless constructors: containers and scalar types (they also appear as OmegaConf type tags)
SAFE_BUILTINS: dict[str, type] = {
    "list": list, "dict": dict, "tuple": tuple, "set": set, "frozenset": frozenset, "int": int, "float": float,
    "str": str, "bool": bool, "bytes": bytes, "complex": complex,
    "long": int, "unicode": str,  # Python 2 names in protocol-2 pickles
}


class StorageType:
    """Marker for a pickled `torch.<X>Storage` class: only its dtype is used."""

    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGE_DTYPES[name]

    def __repr__(self) -> str:
        return f"StorageType({self.name})"


class TypeTag:
    """Inert stand-in for a typing object such as typing.Any (OmegaConf stores it as a type annotation)."""

    def __init__(self, qualname: str):
        self.qualname = qualname

    def __repr__(self) -> str:
        return self.qualname


class Recorded:
    """Inert stand-in for a pickled class that is not available (OmegaConf): keeps args and state only."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname} stand-in>"


def _stand_in(module: str, name: str) -> type[Recorded]:
    return type(name, (Recorded,), {"qualname": f"{module}.{name}", "__module__": __name__})


_STAND_INS = {key: _stand_in(*key) for key in sorted(OMEGACONF_CLASSES)}


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Our own version of torch._utils._rebuild_tensor_v2: a strided view of the CPU storage."""
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("tensor rebuild got something that is not a storage")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    """nn.Parameter records rebuild as plain tensors (no module code is needed to read weights)."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter rebuild got something that is not a tensor")
    return data


def _numpy_scalar(dtype, data=None):
    """numpy.core.multiarray.scalar for numeric dtypes only (Lightning stores metrics as numpy scalars)."""
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar with an object dtype or without raw bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(spec, align=False, copy=False):
    """numpy.dtype for plain numeric/bool specs ('f8', 'i4', ...), never object dtypes."""
    import numpy as np

    if not isinstance(spec, str) or len(spec) > 8:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r:.40} is not a plain type code")
    dt = np.dtype(spec)
    if dt.hasobject:
        raise pickle.UnpicklingError("numpy object dtype refused")
    return dt


def _latin1_bytes(text, encoding="latin1"):
    """_codecs.encode as protocol-2 pickles use it for bytes: str -> bytes in latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 bytes")
    return text.encode("latin-1")


def _numpy_global(name: str):
    return {"scalar": _numpy_scalar, "dtype": _numpy_dtype}.get(name)


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only allow-listed globals and reads storages from a torch zip."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, source: str, budget: int | None = None):
        super().__init__(file, encoding="utf-8")
        self.archive, self.prefix, self.source = archive, prefix, source
        self.budget, self.used = budget, 0  # bytes the storages may declare in all (None: no limit)
        self._storages: dict[str, torch.Tensor] = {}
        self.classes_seen: set[str] = set()

    def find_class(self, module: str, name: str):
        qual = f"{module}.{name}"
        self.classes_seen.add(qual)
        if module in ("builtins", "__builtin__") and name in SAFE_BUILTINS:
            return SAFE_BUILTINS[name]
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            return getattr(collections, name)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if module == "typing" and name in ("Any", "Optional", "Union", "List", "Dict", "Tuple"):
            return TypeTag(qual)
        if (module, name) in _STAND_INS:
            return _STAND_INS[(module, name)]
        if module == "_codecs" and name == "encode":
            return _latin1_bytes
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
            fn = _numpy_global(name)
            if fn is not None:
                return fn
        raise XincError(
            f"{self.source}: the checkpoint references the global {qual!r}, which is not on the allow-list "
            f"of the restricted loader (it could run arbitrary code); refusing to load it. Re-save the "
            f"weights with torch.save(model.state_dict()) if you trust the file"
        )

    def _check_declared(self, key: str, numel: Any, itemsize: int, stype: str) -> None:
        """Check a storage's declared sizes (pickle numel and zip header) against the budget before reading it."""
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise XincError(f"{self.source}: storage {key} declares {numel!r:.40} elements ; not a torch checkpoint")
        name = f"{self.prefix}data/{key}"
        try:
            declared = self.archive.getinfo(name).file_size
        except KeyError:
            raise XincError(f"{self.source}: storage {key} is missing from the archive (truncated?)") from None
        if stype != "UntypedStorage" and declared != numel * itemsize:
            raise XincError(f"{self.source}: storage {key} declares {declared} bytes but {numel}x{itemsize} in the "
                            "pickle ; the file is corrupt or crafted")
        self.used += declared
        if self.budget is not None and self.used > self.budget:
            raise XincError(f"{self.source}: storages declare {self.used / 2**20:.0f} MiB uncompressed, more than this "
                            f"file can plausibly hold ({self.budget / 2**20:.0f} MiB) ; refusing a possible "
                            "decompression bomb")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise XincError(f"{self.source}: unexpected persistent id {pid!r:.80}; not a torch zip checkpoint")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, StorageType):
            raise XincError(f"{self.source}: storage record with unknown type {stype!r:.80}")
        key = str(key)
        if key not in self._storages:
            dtype = stype.dtype
            itemsize = torch.empty((), dtype=dtype).element_size()
            self._check_declared(key, numel, itemsize, stype.name)
            try:
                raw = self.archive.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise XincError(f"{self.source}: storage {key} is missing from the archive (truncated?)") from None
            if len(raw) != int(numel) * itemsize and stype.name != "UntypedStorage":
                raise XincError(f"{self.source}: storage {key} holds {len(raw)} bytes, expected {numel}x{itemsize}")
            self._storages[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return self._storages[key]


def _declared_budget(path: Path) -> int:
    """Bytes a checkpoint's storages may inflate to: 16x the file plus 256 MiB (real weights barely compress)."""
    return 16 * path.stat().st_size + 256 * 2**20


def _check_zip_entry(zf: zipfile.ZipFile, name: str, budget: int, source: str) -> None:
    """Refuse an archive member that declares more bytes than the budget, before inflating it."""
    size = zf.getinfo(name).file_size
    if size > budget:
        raise XincError(f"{source}: {name} declares {size / 2**20:.0f} MiB uncompressed, more than this file can "
                        f"plausibly hold ({budget / 2**20:.0f} MiB) ; refusing a possible decompression bomb")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file (recorded in every imported model's config)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_checkpoint(path: str | Path) -> Any:
    """Unpickle a torch zip checkpoint (torch.save format >= 1.6) on the CPU without running its code."""
    path = Path(path)
    if not path.is_file():
        raise XincError(f"{path}: checkpoint file not found")
    if not zipfile.is_zipfile(path):
        raise XincError(
            f"{path}: not a torch zip checkpoint (legacy or foreign format); re-save it with torch>=1.6 torch.save"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
            if not pkl:
                raise XincError(f"{path}: zip archive without <name>/data.pkl; not a torch checkpoint")
            prefix = pkl[0][: -len("data.pkl")]
            if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
                raise XincError(f"{path}: big-endian checkpoint; only little-endian files are supported")
            budget = _declared_budget(path)
            _check_zip_entry(zf, pkl[0], budget, str(path))
            with zf.open(pkl[0]) as f:
                obj = RestrictedUnpickler(f, zf, prefix, str(path), budget).load()
    except XincError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, RuntimeError) as e:
        raise XincError(f"{path}: cannot read the checkpoint ({e.__class__.__name__}: {e}); file is corrupt?") from None
    return obj


def to_plain(obj: Any, _depth: int = 0) -> Any:
    """Turn OmegaConf stand-ins (DictConfig/ListConfig/nodes) into plain dicts, lists and values."""
    if _depth > 100:
        raise XincError("checkpoint config nests deeper than 100 levels; refusing to convert it")
    if isinstance(obj, Recorded):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "_content" in state:
            return to_plain(state["_content"], _depth + 1)
        if "_val" in state:
            return to_plain(state["_val"], _depth + 1)
        return None
    if isinstance(obj, dict):
        return {k: to_plain(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v, _depth + 1) for v in obj]
    if isinstance(obj, TypeTag | StorageType | type):
        return repr(obj)
    return obj
