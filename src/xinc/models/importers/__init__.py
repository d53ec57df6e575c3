"""Importers for checkpoints made by other code: the XINC FFN, original NeRV/HNeRV scripts, HNeRV quant.

All of them read pickles through `safe_pickle.load_checkpoint` (allow-listed globals, no code runs)
and write normal xinc model directories (model.safetensors + config.json with an "import" section).
"""

from xinc.models.importers.config import (
    HNeRVQuantImportConfig,
    NeRVImportConfig,
    XincFFNImportConfig,
    import_model,
)
from xinc.models.importers.hnerv_quant import build_hnerv_import, dequantize, import_hnerv_quant_checkpoint
from xinc.models.importers.nerv_script import build_nerv_import, import_nerv_checkpoint, read_arch_json
from xinc.models.importers.original import ARCH_FIELDS, DATA_FIELDS
from xinc.models.importers.safe_pickle import RestrictedUnpickler, load_checkpoint, sha256_file, to_plain
from xinc.models.importers.xinc_ffn import ffn_from_lightning, import_xinc_ffn_checkpoint

__all__ = [
    "HNeRVQuantImportConfig", "NeRVImportConfig", "XincFFNImportConfig", "import_model",
    "ARCH_FIELDS", "DATA_FIELDS", "RestrictedUnpickler", "build_hnerv_import", "build_nerv_import", "dequantize",
    "ffn_from_lightning", "import_hnerv_quant_checkpoint", "import_nerv_checkpoint", "import_xinc_ffn_checkpoint",
    "load_checkpoint", "read_arch_json", "sha256_file", "to_plain",
]
