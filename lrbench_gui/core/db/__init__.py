"""The policy database: a TinyDB file of studies, trials and named policies.

``PolicyDB`` (:mod:`.policy_db`) is the one way in; the modules beside it are its parts:
``storage`` (atomic writes, the lock), ``document`` (the export format and its validation),
``curves`` (packed, bounded curves), ``query`` (recommendations, LR ranges), ``recipes`` (the
published fine-tuning recipes) and ``sample`` (generated data for tests and benches).
"""

from lrbench_gui.core.db.policy_db import (
    DEFAULT_LOCK_TIMEOUT,
    MIGRATIONS,
    SCHEMA_VERSION,
    DatabaseCorrupt,
    DatabaseError,
    DatabaseLocked,
    DatabaseTooNew,
    ImportRefused,
    ImportReport,
    PolicyDB,
    RecordInvalid,
)

__all__ = [
    "PolicyDB",
    "DatabaseError",
    "DatabaseLocked",
    "DatabaseCorrupt",
    "DatabaseTooNew",
    "RecordInvalid",
    "ImportRefused",
    "ImportReport",
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "DEFAULT_LOCK_TIMEOUT",
]
