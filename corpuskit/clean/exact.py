"""Exact duplicates: a 128-bit hash of the dedup form of the text; the first occurrence wins.

Only the 16-byte digest and the index of its first record are held, never the text.
"""

from __future__ import annotations

import hashlib

from corpuskit.clean.normalize import dedup_form


def exact_key(text: str) -> bytes:
    return exact_key_of_form(dedup_form(text))


def exact_key_of_form(form: str) -> bytes:
    """`exact_key` of a text whose dedup form is already computed (clean batches the forms)."""
    return hashlib.blake2b(form.encode("utf-8"), digest_size=16).digest()


class ExactIndex:
    def __init__(self) -> None:
        self._first: dict[bytes, int] = {}

    def first_or_add(self, key: bytes, index: int) -> int | None:
        """Index of the earlier record with this key, or None (and remember this one)."""
        earlier = self._first.setdefault(key, index)
        return None if earlier == index else earlier

    def __len__(self) -> int:
        return len(self._first)
