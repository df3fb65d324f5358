"""River's ``StandardScaler``, with its per-feature updates done on arrays.

The churn model sees 63 features. River's scaler updates a ``Counter`` and two ``defaultdict``s
feature by feature: about 50 us per ``learn_one`` and 19 us per ``transform_one`` here, a fifth
of the whole engine's time per event. This subclass keeps the same running mean and variance
(Welford, the same floating-point operations in the same order, so the same numbers) in NumPy
arrays, one column per feature, and does each update as a handful of array operations.

A feature dict is matched to its columns by its key order, cached per distinct order (the feature
code builds its dicts the same way every time, so there are only a few). ``counts``, ``means`` and
``vars`` read back as River's dicts, so inspection and River's own helpers still work.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from river import preprocessing

_INF = float("inf")


class StandardScaler(preprocessing.StandardScaler):
    """Drop-in for ``river.preprocessing.StandardScaler()`` (no rolling window)."""

    def __init__(self, with_std: bool = True):
        super().__init__(with_std=with_std)
        self._cols: dict[str, int] = {}  # feature -> column
        self._layouts: dict[tuple, object] = {}  # key order of a feature dict -> its columns
        self._n = np.zeros(0)
        self._mean = np.zeros(0)
        self._var = np.zeros(0)
        self._sd = np.zeros(0)  # sqrt(var) as River takes it (var ** 0.5), inf where var is 0

    # River's dict views of the state (snapshots); River's __init__ assigns them empty: ignored
    counts = property(lambda self: Counter({f: int(self._n[j]) for f, j in self._cols.items()}),
                      lambda self, value: None)
    means = property(lambda self: defaultdict(float, {f: float(self._mean[j]) for f, j in self._cols.items()}),
                     lambda self, value: None)
    vars = property(lambda self: defaultdict(float, {f: float(self._var[j]) for f, j in self._cols.items()}),
                    lambda self, value: None)

    def _layout(self, keys: tuple):
        cols = self._cols
        new = [k for k in keys if k not in cols]
        if new:
            for k in new:
                cols[k] = len(cols)
            grow = np.zeros(len(new))
            self._n = np.concatenate([self._n, grow])
            self._mean = np.concatenate([self._mean, grow])
            self._var = np.concatenate([self._var, grow])
            self._sd = np.concatenate([self._sd, grow + np.inf])
        idx = [cols[k] for k in keys]
        # the usual case: the features in column order, a slice (a view, no gather)
        layout = slice(idx[0], idx[0] + len(idx)) if idx == list(range(idx[0], idx[0] + len(idx))) \
            else np.array(idx, dtype=np.intp)
        self._layouts[keys] = layout
        return layout

    _last = None  # (x, keys, columns, values) of the dict learn_one just read (see _columns)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_last", None)  # a reference held between two calls, never state
        return state

    def _columns(self, x: dict) -> tuple[tuple, object, np.ndarray]:
        """(keys, their columns, values as an array) of a non-empty feature dict. River's pipeline
        calls ``transform_one(x)`` right after ``learn_one(x)`` with the same dict: that second
        read reuses the first (the dict is not changed in between: both only read it)."""
        last = self._last
        if last is not None:
            del self._last  # (back to the class's None: the next call reads afresh)
            if last[0] is x:
                return last[1], last[2], last[3]
        keys = tuple(x)
        cols = self._layouts.get(keys)
        if cols is None:
            cols = self._layout(keys)
        return keys, cols, np.fromiter(x.values(), dtype=float, count=len(keys))

    def learn_one(self, x: dict) -> None:
        if not x:
            return
        keys, cols, xv = self._columns(x)
        self._last = (x, keys, cols, xv)  # for the transform_one(x) that follows in a pipeline
        n = self._n[cols] + 1.0
        old = self._mean[cols]  # a view when cols is a slice: read everything before writing
        delta = xv - old
        mean = old + delta / n
        if self.with_std:
            var = self._var[cols]
            var = self._var[cols] = var + (delta * (xv - mean) - var) / n
            # Python's pow, as River (numpy's sqrt can differ by an ulp); 0 -> inf: x / inf = 0
            self._sd[cols] = [v ** 0.5 if v else _INF for v in var.tolist()]
        self._mean[cols] = mean
        self._n[cols] = n

    def transform_one(self, x: dict) -> dict:
        if not x:
            return {}
        keys, cols, xv = self._columns(x)
        centred = xv - self._mean[cols]
        if not self.with_std:
            return dict(zip(keys, centred.tolist()))
        return dict(zip(keys, (centred / self._sd[cols]).tolist()))

    def learn_many(self, X) -> None:  # pragma: no cover - the engine learns one at a time
        raise NotImplementedError("crm-stream's StandardScaler learns one dict at a time")

    def transform_many(self, X):  # pragma: no cover
        raise NotImplementedError("crm-stream's StandardScaler transforms one dict at a time")
