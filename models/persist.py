"""Save trained models to a file and warm-start from it (``--model-out`` / ``--model-in``).

The file is one header line, ``CRMSTREAM-MODELS <version> river=<version>``, then a pickle of
``{"models": {name: OnlineModel}, "metrics": {name: ModelMetrics}, "shards": n}``. Pickles run
code when loaded: only load files you wrote.

    save_models(shards_of(telemetry()), "churn.models")
    saved = load_models("churn.models")
    ModelShard(settings, warm=saved.models)
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Union

import river

from models.metrics import ModelMetrics, merge_metrics
from models.online import OnlineModel

MAGIC = b"CRMSTREAM-MODELS"
VERSION = 1


class ModelFileError(ValueError):
    """Not a model file, or one written by an incompatible version."""


@dataclass
class SavedModels:
    models: dict[str, OnlineModel]
    metrics: dict[str, ModelMetrics] = field(default_factory=dict)
    shards: int = 1
    river_version: str = ""


Shards = Union["ModelShard", Iterable["ModelShard"], Mapping[str, "ModelShard"]]  # noqa: F821


def _as_list(shards: Shards) -> list:
    if hasattr(shards, "models"):
        return [shards]
    if isinstance(shards, Mapping):
        return [shards[k] for k in sorted(shards)]
    return list(shards)


def save_models(shards: Shards, path: Union[str, Path]) -> dict[str, dict]:
    """Write, per model, the pipeline of the shard that learned most, and all shards' metrics
    merged. Atomic (a temporary file, then rename). Returns ``{name: {estimator, learned}}``."""
    shards = _as_list(shards)
    if not shards:
        raise ValueError("no model shards to save")
    best: dict[str, OnlineModel] = {}
    for shard in shards:
        for name, model in shard.models.items():
            if name not in best or model.learned > best[name].learned:
                best[name] = model
    payload = {"models": best, "metrics": merge_metrics(s.metric_states() for s in shards), "shards": len(shards)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(b"%s %d river=%s\n" % (MAGIC, VERSION, river.__version__.encode()))
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return {name: {"estimator": m.estimator, "learned": m.learned} for name, m in best.items()}


def load_models(path: Union[str, Path]) -> SavedModels:
    """Read a file written by :func:`save_models`; raise :class:`ModelFileError` if it is not one."""
    with open(path, "rb") as f:
        header = f.readline().split()
        if len(header) < 2 or header[0] != MAGIC:
            raise ModelFileError(f"{path}: not a crm-stream model file")
        if header[1] != str(VERSION).encode():
            raise ModelFileError(f"{path}: model file version {header[1].decode()}, this engine reads {VERSION}")
        river_version = header[2].decode().split("=", 1)[-1] if len(header) > 2 else ""
        try:
            payload = pickle.load(f)
        except Exception as exc:  # a truncated file, or classes this River no longer has
            raise ModelFileError(f"{path}: cannot read the models ({exc})") from None
    return SavedModels(models=payload["models"], metrics=payload.get("metrics", {}),
                       shards=payload.get("shards", 1), river_version=river_version)
