"""Unit constants shared by every module: one definition per conversion factor.

Time is int64 nanoseconds throughout the simulator (see DESIGN.md), so the time factors are
exact Python ints; multiplying or dividing by them never rounds. Byte and count factors are
decimal (SI, 1 GB = 1e9 bytes, as chip datasheets quote them) and are floats because the
catalog multiplies float YAML quantities by them.
"""

from __future__ import annotations

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S
NS_PER_H = 3_600 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S

KB = 1e3  # bytes per kilobyte (decimal)
MB = 1e6  # bytes per megabyte (decimal)
GB = 1e9  # bytes per gigabyte (decimal)
BITS_PER_BYTE = 8  # link rates are quoted in bit/s (Gb/s), buffers in bytes
MEGA = 1e6  # plain SI mega, for counts such as MFLOP

# Energy and cost (mtia_cluster/cost/, issue #19)
J_PER_KWH = 3.6e6  # joules per kilowatt-hour
DAYS_PER_YEAR = 365.25  # Julian year: what an amortization period of N years means
S_PER_YEAR = DAYS_PER_YEAR * 86_400.0  # seconds per Julian year
