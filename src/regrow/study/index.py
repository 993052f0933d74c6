"""The study index: one SQLite row per run (status, config hash, result, FLOPs, error).

Rows are inserted once (the run's key is the primary key), so re-running a study never
duplicates them; every status change is its own committed transaction, so a kill at any
moment leaves a consistent index ('running' rows of a dead process are re-run).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from regrow.errors import RegrowError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,
    flops REAL,
    started REAL,
    finished REAL
)
"""
STATUSES = ("pending", "running", "done", "failed")


class StudyIndex:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), timeout=60)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            with self.db:
                self.db.execute(SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
            if not {"key", "kind", "status", "attempts", "result"} <= columns:
                raise sqlite3.DatabaseError("its runs table lacks regrow's columns")
        except sqlite3.DatabaseError as err:
            self.db.close()
            raise RegrowError(f"study index {str(self.path)!r} is damaged or not regrow's: {err}") from err

    def close(self) -> None:
        self.db.close()

    def add(self, key: str, kind: str, config_hash: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO runs (key, kind, config_hash) VALUES (?, ?, ?)", (key, kind, config_hash))

    def hash_of(self, key: str) -> str | None:
        row = self.db.execute("SELECT config_hash FROM runs WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def status(self, key: str) -> str:
        return self.db.execute("SELECT status FROM runs WHERE key = ?", (key,)).fetchone()[0]

    def start(self, key: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = 'running', attempts = attempts + 1, started = ?, error = NULL "
                            "WHERE key = ?", (time.time(), key))

    def finish(self, key: str, result: dict, flops: float) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = 'done', result = ?, flops = ?, finished = ? WHERE key = ?",
                            (json.dumps(result), flops, time.time(), key))

    def fail(self, key: str, error: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = 'failed', error = ?, finished = ? WHERE key = ?", (error, time.time(), key))

    def release_running(self) -> int:
        """Runs left 'running' by a process that died go back to 'pending'."""
        with self.db:
            return self.db.execute("UPDATE runs SET status = 'pending' WHERE status = 'running'").rowcount

    def rows(self) -> list[dict]:
        cursor = self.db.execute("SELECT * FROM runs ORDER BY rowid")
        names = [c[0] for c in cursor.description]
        out = []
        for values in cursor.fetchall():
            row = dict(zip(names, values))
            row["result"] = json.loads(row["result"]) if row["result"] else None
            out.append(row)
        return out

    def counts(self) -> dict[str, int]:
        found = dict(self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        return {s: found.get(s, 0) for s in STATUSES}
