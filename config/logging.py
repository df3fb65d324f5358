"""Structured JSON logs: one JSON object per line on stderr.

Call once per process, before anything logs::

    from config.logging import setup_logging
    setup_logging(settings.log_level, component="run", worker=process_id)

Every record becomes one line such as::

    {"ts":"2024-05-01T12:00:00.123Z","level":"INFO","logger":"crm.redis","component":"run",
     "worker":0,"message":"redis reachable again","sink":"redis","retries":3}

* ``ts`` is UTC with milliseconds, ``level`` the level name, ``logger`` the logger's name
  (``crm.run``, ``crm.kafka``, ``crm.redis``...), ``component`` the process role given here
  (``run``, ``replay``, ``generate``, ...), ``worker`` the process index (``null`` when not
  part of a cluster), ``message`` the formatted message.
* Fields passed with ``extra={...}`` are added as top-level keys (values orjson cannot
  serialise are written with ``str()``); keys clashing with the fixed ones are prefixed
  with ``extra_``.
* Exceptions add ``exc_type``, ``exc`` (the message) and ``traceback``; ``stack_info`` adds
  ``stack``.

Convention: **no customer text at INFO or above.** Chat messages, search queries, names,
addresses and other free text a customer typed may appear only in DEBUG records; INFO and
above carry ids, counts, reason codes, topics, partitions and durations. Customer ids are
identifiers, not text, and may appear (but never as metric labels).
"""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import datetime, timezone
from typing import IO, Any, Optional, Union

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_FIXED = ("ts", "level", "logger", "component", "worker", "message")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (no trailing newline; the handler adds it)."""

    def __init__(self, component: str, worker: Optional[int] = None):
        super().__init__()
        self.component = component
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "component": getattr(record, "component", None) or self.component,
            "worker": getattr(record, "worker", self.worker),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key in ("component", "worker") or key.startswith("_"):
                continue
            out[f"extra_{key}" if key in _FIXED else key] = value
        if record.exc_info and record.exc_info[0] is not None:
            etype, evalue, tb = record.exc_info
            out["exc_type"] = etype.__name__
            out["exc"] = str(evalue)
            out["traceback"] = "".join(traceback.format_exception(etype, evalue, tb))
        elif record.exc_text:
            out["traceback"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return orjson.dumps(out, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def setup_logging(
    level: Union[str, int] = "INFO",
    component: str = "crm-stream",
    worker: Optional[int] = None,
    stream: Optional[IO[str]] = None,
) -> logging.Handler:
    """Route all logging through one JSON-lines handler on ``stream`` (default stderr).

    ``level`` is a level name (``settings.log_level``: DEBUG, INFO, WARNING, ERROR) or number.
    Replaces handlers on the root logger, so calling it again (e.g. in tests) does not
    duplicate lines. Noisy third-party loggers are kept at WARNING unless ``level`` is DEBUG.
    Returns the handler.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level: {level!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(component, worker))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    quiet = logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
    for name in ("urllib3", "asyncio", "river", "bytewax"):
        logging.getLogger(name).setLevel(max(quiet, numeric))
    logging.captureWarnings(True)
    return handler
