"""Memory planning: every intermediate value gets a 64-byte aligned offset in ONE arena.

Linear scan over the steps in execution order: a step's outputs are placed before the buffers it
reads are released (so an output never overlaps an input), except in place, where an output takes
over the block of an input buffer whose last reader is that step; a buffer is released after its
last reader (aliases count as readers of their base); free blocks are reused best-fit (the smallest
block that fits, split), and neighbouring free blocks merge.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 64


def aligned(nbytes: int) -> int:
    return max(ALIGN, -(-nbytes // ALIGN) * ALIGN)


@dataclass
class Buffer:
    name: str
    nbytes: int
    first: int   # the step that writes it
    last: int    # the last step that reads it (>= first)
    in_place: list[str] = field(default_factory=list)  # buffers whose block it may take over at `first`
    offset: int = -1
    shares: str | None = None  # the buffer whose block it took over


class _Arena:
    def __init__(self):
        self.free: list[list[int]] = []  # [offset, size], sorted by offset, never touching `top`
        self.top = 0
        self.peak = 0

    def alloc(self, size: int) -> int:
        best = None
        for block in self.free:
            if block[1] >= size and (best is None or block[1] < best[1]):
                best = block
        if best is not None:
            offset = best[0]
            best[0] += size
            best[1] -= size
            if best[1] == 0:
                self.free.remove(best)
            return offset
        offset = self.top
        self.top = offset + size
        self.peak = max(self.peak, self.top)
        return offset

    def release(self, offset: int, size: int) -> None:
        i = 0
        while i < len(self.free) and self.free[i][0] < offset:
            i += 1
        self.free.insert(i, [offset, size])
        if i + 1 < len(self.free) and offset + size == self.free[i + 1][0]:
            self.free[i][1] += self.free.pop(i + 1)[1]
        if i > 0 and self.free[i - 1][0] + self.free[i - 1][1] == offset:
            self.free[i - 1][1] += self.free.pop(i)[1]
            i -= 1
        if self.free[i][0] + self.free[i][1] == self.top:
            self.top = self.free.pop(i)[0]


def plan_arena(buffers: list[Buffer], num_steps: int) -> int:
    """Set every buffer's offset (and `shares` for in-place ones); returns the arena size in bytes."""
    by_name = {b.name: b for b in buffers}
    defs: list[list[Buffer]] = [[] for _ in range(num_steps)]
    ends: list[list[Buffer]] = [[] for _ in range(num_steps)]
    for b in buffers:
        if not 0 <= b.first <= b.last < num_steps:
            raise ValueError(f"buffer {b.name!r}: lifetime [{b.first}, {b.last}] outside the {num_steps} steps")
        defs[b.first].append(b)
        ends[b.last].append(b)
    arena = _Arena()
    held: dict[str, tuple[int, int]] = {}  # buffer name -> (offset, size) of the block it holds
    for step in range(num_steps):
        for b in defs[step]:
            size = aligned(b.nbytes)
            for src in b.in_place:
                block = held.get(src)
                if block is not None and by_name[src].last == step and block[1] >= size:
                    held[b.name] = held.pop(src)
                    b.shares = src
                    break
            else:
                held[b.name] = (arena.alloc(size), size)
            b.offset = held[b.name][0]
        for b in ends[step]:
            block = held.pop(b.name, None)
            if block is not None:
                arena.release(*block)
    return arena.peak
