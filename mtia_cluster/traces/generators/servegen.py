"""ServeGen (alibaba/ServeGen, Apache-2.0) workload fits, when the user gives their path.

Arrivals: `chunk-N-trace.csv` rows are per-client, per-window fits
`t_start_s, rate_rps, iat_cv, pattern, shape, scale` (pattern Gamma or Weibull, empty when the
client was idle). Each window is regenerated as a renewal process with the fitted shape and the
scale that gives the window's measured rate (so the rate is exact in expectation and the fitted
burstiness is kept). A directory means every `chunk-*-trace.csv` in it (one client each).
Lengths: `chunk-N-dataset.json` maps a window start (s) to token PMFs (`{tokens: probability}`
written as Python dict literals); we sample from one window or from all non-empty windows pooled
(each window weighted equally: the files hold no per-window request counts).
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mtia_cluster.config.trace_spec import ServeGenLengths
from mtia_cluster.errors import UserError
from mtia_cluster.units import NS_PER_S

_TRACE_COLUMNS = ["t_start_s", "rate_rps", "iat_cv", "pattern", "shape", "scale"]


def _trace_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("chunk-*-trace.csv"), key=lambda p: int(p.name.split("-")[1]))
        if not files:
            raise UserError("no chunk-*-trace.csv files in directory", file=path)
        return files
    if not path.exists():
        raise UserError("file not found", file=path)
    return [path]


def _read_fits(path: Path) -> pa.Table:
    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=_TRACE_COLUMNS),
            convert_options=pacsv.ConvertOptions(column_types={"pattern": pa.string()}),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(
            f"not a ServeGen trace CSV ({str(exc).splitlines()[0]})", file=path
        ) from None


def _window_gaps(
    rng: np.random.Generator, pattern: str, shape: float, rate: float, count: int
) -> np.ndarray:
    mean_s = 1.0 / rate
    if pattern == "Gamma" and shape > 0:
        return rng.gamma(shape, mean_s / shape, count)
    if pattern == "Weibull" and shape > 0:
        return mean_s / math.exp(math.lgamma(1 + 1 / shape)) * rng.weibull(shape, count)
    return rng.exponential(mean_s, count)


def servegen_arrivals(
    rng: np.random.Generator,
    path: str | Path,
    start_s: float,
    duration_s: float,
    rate_scale: float = 1.0,
    window_s: float = 600.0,
) -> np.ndarray:
    """Arrivals (ns since `start_s`) of every client fit in `path` over [start, start+dur)."""
    out: list[np.ndarray] = []
    for file in _trace_files(Path(path)):
        fits = _read_fits(file).to_pydict()
        for t0, rate, pattern, shape in zip(
            fits["t_start_s"], fits["rate_rps"], fits["pattern"], fits["shape"], strict=True
        ):
            lo, hi = max(t0, start_s), min(t0 + window_s, start_s + duration_s)
            if not rate or rate <= 0 or hi <= lo:
                continue
            r = rate * rate_scale
            count = int(r * window_s * 1.5) + 32
            times = t0 + np.cumsum(_window_gaps(rng, pattern or "", shape or 0.0, r, count))
            times = times[(times >= lo) & (times < hi) & (times < t0 + window_s)]
            out.append(times - start_s)
    if not out:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.floor(np.concatenate(out) * NS_PER_S).astype(np.int64))


def _pmf(text: Any, file: Path, field: str) -> tuple[np.ndarray, np.ndarray] | None:
    """One window's PMF as (values, probabilities); None when the window is empty (idle)."""
    try:
        mapping = ast.literal_eval(text) if isinstance(text, str) else text
        values = np.array([int(k) for k in mapping], dtype=np.int64)
        probs = np.array([float(v) for v in mapping.values()], dtype=np.float64)
    except (ValueError, SyntaxError, TypeError, AttributeError):
        raise UserError("not a token PMF mapping", file=file, field=field) from None
    if not len(values):
        return None
    if probs.min() < 0 or probs.sum() <= 0:
        raise UserError("negative or all-zero PMF", file=file, field=field)
    return values, probs / probs.sum()


def sample_servegen_lengths(
    rng: np.random.Generator, f: ServeGenLengths, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(input_tokens, output_tokens) sampled from a ServeGen dataset JSON's PMFs."""
    path = Path(f.path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError("file not found", file=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"not a ServeGen dataset JSON ({exc})", file=path) from None
    windows = [str(f.window)] if f.window is not None else sorted(data, key=int)
    result = []
    for column in ("input_tokens", "output_tokens"):
        pooled: dict[int, float] = {}
        for w in windows:
            if w not in data or column not in data[w]:
                raise UserError("window or column not in dataset", file=path, field=f"{w}.{column}")
            pmf = _pmf(data[w][column], path, f"{w}.{column}")
            if pmf is None:
                continue
            for v, p in zip(pmf[0].tolist(), pmf[1].tolist(), strict=True):
                pooled[v] = pooled.get(v, 0.0) + p
        if not pooled:
            raise UserError(
                "no requests in the selected window(s)",
                file=path,
                field=column,
                value=windows[0] if len(windows) == 1 else "all",
            )
        values = np.array(list(pooled), dtype=np.int64)
        probs = np.array(list(pooled.values()))
        drawn = values[rng.choice(len(values), size=n, p=probs / probs.sum())]
        result.append(np.clip(drawn, 1, 2**31 - 1).astype(np.int32))
    return result[0], result[1]
