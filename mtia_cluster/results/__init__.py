"""Results of a run (DESIGN §4): atomic writer, reader, summary, MLPerf-style verdicts."""

from mtia_cluster.results.convert import DeviceInfo, DeviceTracker, completed_to_table
from mtia_cluster.results.devfold import DeviceFold
from mtia_cluster.results.reader import Results, open_results
from mtia_cluster.results.run import RunSummary, run_folded, summarize, write_run
from mtia_cluster.results.schema import FORMAT_VERSION
from mtia_cluster.results.shard import RunTarget, ShardWriter
from mtia_cluster.results.verdict import VerdictRules
from mtia_cluster.results.writer import ResultsWriter
from mtia_cluster.slo import ServiceSLO

__all__ = [
    "FORMAT_VERSION",
    "DeviceFold",
    "DeviceInfo",
    "DeviceTracker",
    "Results",
    "ResultsWriter",
    "RunSummary",
    "RunTarget",
    "ServiceSLO",
    "ShardWriter",
    "VerdictRules",
    "completed_to_table",
    "open_results",
    "run_folded",
    "summarize",
    "write_run",
]
