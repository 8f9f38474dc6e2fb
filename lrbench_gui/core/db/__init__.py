"""The policy database: a TinyDB file of studies, trials and named policies.

``PolicyDB`` (:mod:`.policy_db`) is the one way in; the modules beside it are its parts:
``store`` (the file as a transactional store), ``storage`` (atomic writes, the lock, backups),
``journal`` (the write-ahead journal that makes adding a trial cost what it writes),
``recovery`` (records the database could not take, kept in a file with the command that applies
it), ``bounded`` (untrusted JSON read within bounds, before parsing), ``migrations`` (schema
versions), ``validate`` (every
record's fields, defaults and content hash, built on the bounded JSON checks of ``fields``),
``document`` (the export document's envelope, read and written), ``transfer`` (what an import
adds, skips or refuses), ``curves`` (packed, bounded curves), ``query`` (recommendations, LR
ranges), ``recipes`` (the published fine-tuning recipes) and ``sample`` (generated data for
tests and benches).

Core code hands ``PolicyDB`` the registry it was given; only the edges (CLI, app) build one.
"""

from lrbench_gui.core.db.migrations import MIGRATIONS, SCHEMA_VERSION
from lrbench_gui.core.db.policy_db import (
    DEFAULT_LOCK_TIMEOUT,
    DatabaseCorrupt,
    DatabaseError,
    DatabaseLocked,
    DatabaseReadOnly,
    DatabaseTooNew,
    DatabaseWriteError,
    ImportRefused,
    ImportReport,
    PolicyDB,
    RecordInvalid,
)
from lrbench_gui.core.db.recovery import EXIT_RECOVERED, RecoveryResult, write_or_recover

__all__ = [
    "PolicyDB",
    "DatabaseError",
    "DatabaseLocked",
    "DatabaseCorrupt",
    "DatabaseTooNew",
    "DatabaseReadOnly",
    "DatabaseWriteError",
    "RecordInvalid",
    "RecoveryResult",
    "write_or_recover",
    "EXIT_RECOVERED",
    "ImportRefused",
    "ImportReport",
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "DEFAULT_LOCK_TIMEOUT",
]
