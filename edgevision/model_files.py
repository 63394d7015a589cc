"""Model files: the models bundled inside the package, name -> path resolution, and the metadata that
makes an exported ONNX file self-describing. Needs only `onnx` (no torch): the deploy path uses it.
"""
from __future__ import annotations

import json
from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


def bundled_models() -> dict[str, Path]:
    """The ONNX models shipped inside the package, by name (the file name without .onnx)."""
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.onnx"))}


def resolve_model(name_or_path: str | Path) -> Path:
    """A bundled model's name or a path to an ONNX file -> the file's path (checked to exist)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = bundled_models()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    known = ", ".join(bundled) or "none are installed"
    raise FileNotFoundError(f"{name_or_path!r} is neither an ONNX file nor a bundled model (bundled: {known})")


def decode_metadata(proto) -> dict:
    """metadata_props of a loaded onnx.ModelProto as a dict, JSON values decoded."""
    out = {}
    for entry in proto.metadata_props:
        try:
            out[entry.key] = json.loads(entry.value)
        except json.JSONDecodeError:
            out[entry.key] = entry.value
    return out


def read_metadata(name_or_path: str | Path) -> dict:
    """metadata_props of an ONNX file (or bundled model) as a dict, JSON values decoded."""
    import onnx

    return decode_metadata(onnx.load(str(resolve_model(name_or_path)), load_external_data=False))
