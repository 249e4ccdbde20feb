"""The cache's first level: in the process, bounded, TTL per entry, least recently used out
first, with an index from each tag to the keys stored under it.

Written here rather than with cachetools (``TLRUCache`` has TTL per entry and LRU) because the
tag index must lose a key whenever the cache does (expiry, eviction, replacement), and
cachetools evicts inside ``__setitem__`` without telling which key went; with the index kept
beside an ``OrderedDict`` every removal goes through one method here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class _Entry:
    __slots__ = ("expires", "stored", "tags", "value")

    def __init__(self, value: bytes, tags: tuple[str, ...], stored: float, expires: float):
        self.value = value
        self.tags = tags
        self.stored = stored
        self.expires = expires


class L1:
    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_tag: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float, max_age: float | None = None) -> bytes | None:
        """The live value (now its most recently used), or None. ``max_age`` bounds how long
        ago it was stored, whatever its TTL (while invalidations from elsewhere may be lost)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires or (max_age is not None and now - entry.stored > max_age):
            self._remove(key, entry)
            return None
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: str, value: bytes, tags: tuple[str, ...], ttl: float, now: float) -> int:
        """Store; returns how many entries were evicted to make room."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._unlink(key, old.tags)
        self._entries[key] = _Entry(value, tags, now, now + ttl)
        for tag in tags:
            self._by_tag.setdefault(tag, set()).add(key)
        evicted = 0
        while len(self._entries) > self.max_entries:
            victim, entry = self._entries.popitem(last=False)
            self._unlink(victim, entry.tags)
            evicted += 1
        return evicted

    def alias(self, alias: str, key: str) -> int:
        """Store ``key``'s live entry under ``alias`` too, with its tags and expiry (so the
        same writes drop both); nothing when ``key`` is absent. Returns the evictions."""
        entry = self._entries.get(key)
        if entry is None:
            return 0
        return self.put(alias, entry.value, entry.tags, entry.expires - entry.stored, entry.stored)

    def drop_tags(self, tags: Iterable[str]) -> int:
        """Remove every entry stored under one of ``tags``; returns how many."""
        dropped = 0
        for tag in tags:
            for key in self._by_tag.pop(tag, ()):
                entry = self._entries.pop(key, None)
                if entry is not None:
                    self._unlink(key, entry.tags)
                    dropped += 1
        return dropped

    def clear(self) -> None:
        self._entries.clear()
        self._by_tag.clear()

    def _remove(self, key: str, entry: _Entry) -> None:
        del self._entries[key]
        self._unlink(key, entry.tags)

    def _unlink(self, key: str, tags: tuple[str, ...]) -> None:
        for tag in tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]
