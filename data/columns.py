"""The column names of the frame contract (no imports, so anything may read them)."""

ID_COL = "unique_id"
TIME_COL = "ds"
TARGET_COL = "y"
MAX_COL = "y_max"
TIER_COL = "tier"
VCPUS_COL = "vcpus"

REQUIRED_COLUMNS: tuple[str, ...] = (ID_COL, TIME_COL, TARGET_COL)
OPTIONAL_COLUMNS: tuple[str, ...] = (MAX_COL, TIER_COL, VCPUS_COL)

#: Tier of an instance whose telemetry names none (a t3-like general-purpose tier).
DEFAULT_TIER = "silver"
#: vCPUs of an instance whose telemetry gives none (a t3.micro or t3.small).
DEFAULT_VCPUS = 2
