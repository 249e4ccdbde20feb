"""Background work of the coupons domain: the asynchronous, batched validation log."""

from __future__ import annotations

import asyncio
import functools
import os
from datetime import datetime
from pathlib import Path

import msgspec
import sqlalchemy as sa

from peakshop.config import Settings
from peakshop.coupons import repository
from peakshop.db import Database
from peakshop.kit.batch_writer import BatchWriter


class ValidationLogRecord(msgspec.Struct, frozen=True):
    code: str
    user_id: str
    order_total_cents: int
    valid: bool
    reason: str | None
    discount_cents: int
    latency_us: int
    created_at: datetime


# Records go to the database as tuples in the repository's column order.
assert ValidationLogRecord.__struct_fields__ == repository.LOG_COLUMNS
_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(ValidationLogRecord)


def build_validation_log(settings: Settings, db: Database) -> BatchWriter[ValidationLogRecord]:
    dead_letter_path = Path(settings.validation_log_dead_letter_path)

    async def write(batch: list[ValidationLogRecord]) -> None:
        await insert_records(db, batch)

    async def dead_letter(batch: list[ValidationLogRecord]) -> None:
        await asyncio.to_thread(append_dead_letters, dead_letter_path, batch)

    return BatchWriter(
        name="validation_log",
        write=write,
        dead_letter=dead_letter,
        batch_size=settings.validation_log_batch_size,
        flush_interval=settings.validation_log_flush_interval,
        max_buffer=settings.validation_log_max_buffer,
        attempts=settings.validation_log_flush_attempts,
        retry_base_delay=settings.validation_log_retry_base_delay,
    )


async def insert_records(db: Database, batch: list[ValidationLogRecord]) -> None:
    """One transaction. On SQLite by the log-writer process (see Database), so that none of
    the SQLite work, nor the GIL it would take, is the serving process's."""
    if db.log_writer is None:
        await db.run_log_write(functools.partial(_insert, records=batch, chunk_size=len(batch)))
        return
    await db.log_writer.insert(
        repository.SQLITE_LOG_INSERT, [msgspec.structs.astuple(r) for r in batch]
    )


def _insert(conn: sa.Connection, *, records: list[ValidationLogRecord], chunk_size: int) -> None:
    for start in range(0, len(records), max(1, chunk_size)):
        chunk = records[start : start + chunk_size]
        repository.insert_validation_logs(conn, [msgspec.structs.astuple(r) for r in chunk])


def append_dead_letters(path: Path, batch: list[ValidationLogRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(b"".join(_encoder.encode(record) + b"\n" for record in batch))
        file.flush()
        os.fsync(file.fileno())


def _claim(path: Path, claimed: Path) -> list[ValidationLogRecord] | None:
    if not claimed.exists():
        if not path.exists():
            return None
        path.rename(claimed)
    return [_line_decoder.decode(line) for line in claimed.read_bytes().splitlines() if line]


async def replay_dead_letters(db: Database, path: Path, *, batch_size: int = 1_000) -> int:
    """Re-insert a dead-letter file in one transaction, then remove it; returns the count.

    The file is renamed first, so records dead-lettered during the replay go to a fresh file;
    the renamed file is deleted only after the transaction has committed, so a failed replay
    can simply be run again without inserting anything twice.
    """
    claimed = path.with_name(path.name + ".replaying")
    replayed = 0
    if db.is_sqlite:  # the log file may be new (see Database)
        await db.run_log_write(repository.create_validation_log_table)
    for _ in range(2):  # a claim left by an interrupted replay first, then the current file
        records = await asyncio.to_thread(_claim, path, claimed)
        if records is None:
            break
        await db.run_log_write(functools.partial(_insert, records=records, chunk_size=batch_size))
        await asyncio.to_thread(claimed.unlink)
        replayed += len(records)
    return replayed
