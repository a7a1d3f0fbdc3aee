"""Arrow schemas of the results dataset (DESIGN §4): requests, devices, regions.

Every time is int64 nanoseconds since the trace start; units are in the column names. The
`region` column of `requests/` lives in the hive partition path (``region=<name>``), not in
the files, so DuckDB, Polars and pyarrow all read it back as a column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa

from mtia_cluster.engine.cell import STATUS_NAMES
from mtia_cluster.errors import UserError
from mtia_cluster.output import MANIFEST as MANIFEST
from mtia_cluster.output import MARKER

FORMAT_VERSION = "1"
MARKER_INCOMPLETE = MARKER
SUMMARY = "summary.json"
SHARDS_DIR = "_shards"

_DICT = pa.dictionary(pa.int32(), pa.string())
STATUS_TYPE = _DICT
STATUS_DICTIONARY = pa.array(STATUS_NAMES, type=pa.string())

# requests/: the files hold every column but `region` (it is the partition key).
REQUEST_FILE_SCHEMA = pa.schema(
    [
        ("request_id", pa.int64()),
        ("service", _DICT),
        ("host_id", pa.int32()),
        ("accelerator_id", pa.int32()),
        ("arrival_ns", pa.int64()),
        ("start_ns", pa.int64()),
        ("first_token_ns", pa.int64()),
        ("finish_ns", pa.int64()),
        ("latency_ns", pa.int64()),
        ("ttft_ns", pa.int64()),  # LLM, ok: first_token_ns - arrival_ns; else null
        ("tpot_ns", pa.float64()),  # LLM, ok, > 1 output token: decode time / (tokens - 1)
        ("queue_ns", pa.int64()),  # ok: start_ns - arrival_ns; else null
        ("status", STATUS_TYPE),
        ("batch_size", pa.int32()),
        ("items", pa.int32()),
        ("input_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("preemptions", pa.int32()),  # LLM: times evicted and recomputed (0 for R&R)
        ("cached_tokens", pa.int64()),  # LLM: prompt tokens reused from the prefix cache
        ("origin_region", _DICT),  # home region (== region unless spilled; docs/network.md)
        ("spill_rtt_ns", pa.int64()),  # RTT paid when served away from home (else 0)
        ("network_ns", pa.int64()),  # fabric transfers + spill RTT (docs/network.md)
        ("slo_ok", pa.bool_()),
    ]
)
REQUEST_COLUMNS = (
    "request_id",
    "service",
    "region",
    "host_id",
    "accelerator_id",
    "arrival_ns",
    "start_ns",
    "first_token_ns",
    "finish_ns",
    "latency_ns",
    "ttft_ns",
    "tpot_ns",
    "queue_ns",
    "status",
    "batch_size",
    "items",
    "input_tokens",
    "output_tokens",
    "preemptions",
    "cached_tokens",
    "origin_region",
    "spill_rtt_ns",
    "network_ns",
    "slo_ok",
)

DEVICE_SCHEMA = pa.schema(
    [
        ("interval_start_ns", pa.int64()),
        ("interval_end_ns", pa.int64()),
        ("accelerator_id", pa.int32()),
        ("host_id", pa.int32()),
        ("rack_id", pa.int32()),
        ("region", _DICT),
        ("chip", _DICT),
        ("service", _DICT),
        ("busy_ns", pa.int64()),
        ("utilization", pa.float64()),
        ("energy_j", pa.float64()),
        ("avg_power_w", pa.float64()),
        ("batches", pa.int64()),
        ("work_units", pa.int64()),
        ("peak_memory_bytes", pa.int64()),
        # cost columns (issue #19, docs/planning.md): memory-bound part of busy_ns; energy
        # of the accelerator's share of its host and network; (accelerator + host) x PUE;
        # its price; its carbon; the purchase price amortized over the interval
        ("memory_bound_ns", pa.int64()),
        ("host_energy_j", pa.float64()),
        ("facility_energy_j", pa.float64()),
        ("energy_cost_usd", pa.float64()),
        ("co2e_g", pa.float64()),
        ("capex_usd", pa.float64()),
        # LLM replica statistics on the replica's lead accelerator (0 elsewhere and for R&R);
        # per interval unless "so far" (docs/results.md, "devices/")
        ("kv_capacity_tokens", pa.int64()),  # KV cache size (blocks x block size)
        ("kv_token_s", pa.float64()),  # integral of KV tokens held over the interval
        ("kv_peak_tokens", pa.int64()),  # most KV tokens held so far
        ("preemptions", pa.int64()),
        ("prefix_queried_tokens", pa.int64()),  # tokens looked up in the prefix cache
        ("prefix_cached_tokens", pa.int64()),  # of them, reused
        ("kv_transfers", pa.int64()),  # prefill -> decode KV transfers started (sender)
        ("kv_transfer_bytes", pa.int64()),
    ]
)

REGION_SCHEMA = pa.schema(
    [
        ("region", _DICT),
        ("interval_start_ns", pa.int64()),
        ("interval_end_ns", pa.int64()),
        ("offered", pa.int64()),
        ("completed", pa.int64()),
        ("good", pa.int64()),
        ("offered_per_s", pa.float64()),
        ("completed_per_s", pa.float64()),
        ("goodput_per_s", pa.float64()),
        ("latency_p50_ns", pa.float64()),
        ("latency_p90_ns", pa.float64()),
        ("latency_p99_ns", pa.float64()),
        ("latency_p99_9_ns", pa.float64()),
        ("energy_j", pa.float64()),
        ("power_w", pa.float64()),
    ]
)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(kind: str, name: str) -> str:
    """A region or shard name usable in a partition path (letters, digits, '.', '_', '-')."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise UserError(
            f"{kind} name must be letters, digits, '.', '_' or '-' (it becomes a directory)",
            field=kind,
            value=name,
        )
    return name


def dictionary(values: Sequence[str], indices: pa.Array) -> pa.DictionaryArray:
    """A dictionary<int32, string> array over a fixed name table."""
    return pa.DictionaryArray.from_arrays(
        indices.cast(pa.int32()), pa.array(list(values), type=pa.string())
    )
