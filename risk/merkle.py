"""RFC 6962 Merkle tree hashing over leaves that are already hashed, streamed in O(log n) memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Accumulator:
    """Streaming RFC 6962 tree: a stack of perfect-subtree roots, O(log n) memory."""

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0
        self.last = bytes(32)  # hex of 32 zero bytes is the ledger's genesis value

    def add(self, leaf: bytes) -> None:
        self.last = leaf
        self._stack.append(leaf)
        n = self.size
        while n & 1:  # each trailing 1-bit of the old size is a full subtree to merge with
            right = self._stack.pop()
            self._stack[-1] = _node(self._stack[-1], right)
            n >>= 1
        self.size += 1

    def root(self) -> bytes:
        # MTH splits at the largest power of two below n, i.e. folds the stack right to left.
        if not self._stack:
            return hashlib.sha256(b"").digest()
        acc = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            acc = _node(left, acc)
        return acc


def merkle_root(leaf_hashes: Iterable[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash over leaves that are already hashed (``SHA-256(0x00 || input)``).

    Args:
        leaf_hashes: The leaf hashes in order.

    Returns:
        The 32-byte root; the empty tree's root is SHA-256 of the empty string.
    """
    acc = Accumulator()
    for leaf in leaf_hashes:
        acc.add(leaf)
    return acc.root()
