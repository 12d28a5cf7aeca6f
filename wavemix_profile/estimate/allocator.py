"""A model of PyTorch's CUDA caching allocator, to predict `torch.cuda.max_memory_reserved`.

What it follows: c10/cuda/CUDACachingAllocator.cpp (the DeviceCachingAllocator) with its default
settings, and the CUDA memory-management notes in PyTorch's documentation:

- A request is rounded up to a multiple of 512 B, and is 512 B at least (round_size); a request of
  zero bytes takes nothing from the allocator.
- Rounded requests of at most 1 MiB are served from the small pool, larger ones from the large
  pool; a segment belongs to one pool for its whole life.
- A request first takes a cached free block of its pool: the smallest that is large enough, and the
  lowest address among equal sizes (a std::set ordered by size then address, searched with
  lower_bound).
- No cached block fits: a new segment is taken from the device (cudaMalloc): 2 MiB for the small
  pool, 20 MiB for requests under 10 MiB, otherwise the request rounded up to a multiple of 2 MiB
  (get_allocation_size).
- The request takes the start of its block; the rest is split off as a free block when it is at
  least 512 B (small pool) or more than 1 MiB (large pool). Otherwise the whole block is handed
  out, and `allocated_bytes` counts the whole block, as torch.cuda.memory_allocated does.
- A freed block merges with the free blocks either side of it in its segment.
- `empty_cache` releases every segment that is wholly free. Past `limit_bytes` (what
  set_per_process_memory_fraction sets) a new segment is refused; then the same release happens
  and the segment is asked for once more; a second refusal is out of memory.

Left out, because the profiler's steps use none of them: streams other than one and their events
(record_stream), expandable segments, max_split_size_mb, roundup_power2_divisions,
garbage_collection_threshold, CUDA-graph private pools. The addresses the device gives new
segments are modelled as consecutive; they only break ties between free blocks of equal size.

Pure Python (no torch), so that it is tested on any machine against hand-derived sequences.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Hashable, Iterable, NamedTuple, Optional, Union

MIB = 2**20
MIN_BLOCK_BYTES = 512                  # kMinBlockSize: the rounding unit and smallest block
SMALL_REQUEST_MAX_BYTES = 1 * MIB      # kSmallSize: the largest request the small pool serves
SMALL_SEGMENT_BYTES = 2 * MIB          # kSmallBuffer: every small-pool segment
LARGE_SEGMENT_BYTES = 20 * MIB         # kLargeBuffer: the segment for a large request under 10 MiB
LARGE_REQUEST_MIN_BYTES = 10 * MIB     # kMinLargeAlloc: from here a request gets a segment of its own size...
LARGE_ROUND_BYTES = 2 * MIB            # kRoundLarge: ...rounded up to a multiple of 2 MiB
# Every segment size above is a whole multiple of this, so reserved bytes always are too.
SEGMENT_UNIT_BYTES = 2 * MIB


def round_request(nbytes: int) -> int:
    """The block size a request of `nbytes` bytes takes: a multiple of 512 B, 512 B at least."""
    if nbytes < MIN_BLOCK_BYTES:
        return MIN_BLOCK_BYTES
    return -(-nbytes // MIN_BLOCK_BYTES) * MIN_BLOCK_BYTES


def segment_bytes(block_bytes: int) -> int:
    """The size of the segment opened for a rounded request that no cached block can serve."""
    if block_bytes <= SMALL_REQUEST_MAX_BYTES:
        return SMALL_SEGMENT_BYTES
    if block_bytes < LARGE_REQUEST_MIN_BYTES:
        return LARGE_SEGMENT_BYTES
    return -(-block_bytes // LARGE_ROUND_BYTES) * LARGE_ROUND_BYTES


class AllocatorOutOfMemory(MemoryError):
    """A new segment would pass the allocator's limit even after the cache was released."""


class Block:
    """A run of bytes in a segment, allocated or free; `prev`/`next` are its neighbours in the segment."""

    __slots__ = ("address", "size", "small", "allocated", "prev", "next")

    def __init__(self, address: int, size: int, small: bool):
        self.address, self.size, self.small = address, size, small
        self.allocated = False
        self.prev: Optional[Block] = None
        self.next: Optional[Block] = None

    def __repr__(self) -> str:
        state = "allocated" if self.allocated else "free"
        return f"Block({state}, {self.size} B at {self.address:#x}, {'small' if self.small else 'large'} pool)"


@dataclass(frozen=True)
class Segment:
    """One segment taken from the device: its address, size and how much of it is allocated now."""
    address: int
    size_bytes: int
    small: bool
    allocated_bytes: int


class Alloc(NamedTuple):
    """A storage of `nbytes` bytes created; `id` names it until its Free."""
    id: Hashable
    nbytes: int


class Free(NamedTuple):
    id: Hashable


Event = Union[Alloc, Free]


class Allocator:
    """The caching allocator of one device and one stream, with default settings.

    `malloc(nbytes)` returns a handle (None for zero bytes) to pass to `free`. Byte counts follow
    torch.cuda's statistics: `reserved_bytes` is the sum of segment sizes (memory_reserved),
    `allocated_bytes` the sum of allocated block sizes (memory_allocated), each with its peak since
    construction or `reset_peak()`.
    """

    def __init__(self, *, limit_bytes: Optional[int] = None):
        self.limit_bytes = limit_bytes
        self.reserved_bytes = self.peak_reserved_bytes = 0
        self.allocated_bytes = self.peak_allocated_bytes = 0
        # free blocks per pool, as (size, address) in ascending order: the first at or after
        # (size,) is the best fit; address picks among equal sizes
        self._free_keys: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
        self._free: dict[int, Block] = {}          # address -> free block
        self._heads: dict[int, Block] = {}         # segment address -> its first block
        self._next_address = 0
        self._live: dict[Hashable, Optional[Block]] = {}   # replay ids -> handles

    # -- the allocator's operations ------------------------------------------------------------
    def malloc(self, nbytes: int) -> Optional[Block]:
        if nbytes == 0:
            return None
        size = round_request(nbytes)
        small = size <= SMALL_REQUEST_MAX_BYTES
        block = self._take_free(size, small) or self._new_segment(size, small)
        rest = block.size - size
        # A large-pool rest of 1 MiB or less stays with the request: split off, it could serve
        # only small requests, which the large pool never gets.
        if (rest >= MIN_BLOCK_BYTES) if small else (rest > SMALL_REQUEST_MAX_BYTES):
            tail = Block(block.address + size, rest, small)
            tail.prev, tail.next = block, block.next
            if block.next is not None:
                block.next.prev = tail
            block.next, block.size = tail, size
            self._insert_free(tail)
        block.allocated = True
        self.allocated_bytes += block.size
        self.peak_allocated_bytes = max(self.peak_allocated_bytes, self.allocated_bytes)
        return block

    def free(self, block: Optional[Block]) -> None:
        if block is None:
            return
        if not block.allocated:
            raise ValueError(f"{block!r} freed twice")
        block.allocated = False
        self.allocated_bytes -= block.size
        before, after = block.prev, block.next
        if before is not None and not before.allocated:
            self._remove_free(before)
            block.address, block.size, block.prev = before.address, before.size + block.size, before.prev
            if block.prev is None:
                self._heads[block.address] = block
            else:
                block.prev.next = block
        if after is not None and not after.allocated:
            self._remove_free(after)
            block.size += after.size
            block.next = after.next
            if block.next is not None:
                block.next.prev = block
        self._insert_free(block)

    def empty_cache(self) -> None:
        """Release every wholly free segment to the device (torch.cuda.empty_cache)."""
        for address, head in list(self._heads.items()):
            if not head.allocated and head.next is None:
                self._remove_free(head)
                del self._heads[address]
                self.reserved_bytes -= head.size

    def reset_peak(self) -> None:
        """Peaks become the current figures (torch.cuda.reset_peak_memory_stats)."""
        self.peak_reserved_bytes = self.reserved_bytes
        self.peak_allocated_bytes = self.allocated_bytes

    def segments(self) -> list[Segment]:
        """The segments held now, by address."""
        out = []
        for address in sorted(self._heads):
            block, size, allocated = self._heads[address], 0, 0
            small = block.small
            while block is not None:
                size += block.size
                allocated += block.size if block.allocated else 0
                block = block.next
            out.append(Segment(address, size, small, allocated))
        return out

    # -- replaying a recorded sequence ---------------------------------------------------------
    def replay(self, events: Iterable[Event]) -> None:
        """Apply Alloc and Free events in order. Ids live across calls, so a sequence may free what
        an earlier one allocated; an id allocated twice without a Free between is an error."""
        live = self._live
        for event in events:
            if type(event) is Alloc:
                if event.id in live:
                    raise ValueError(f"id {event.id!r} allocated again while still live")
                live[event.id] = self.malloc(event.nbytes)
            else:
                self.free(live.pop(event.id))

    # -- the pools -----------------------------------------------------------------------------
    def _take_free(self, size: int, small: bool) -> Optional[Block]:
        keys = self._free_keys[small]
        i = bisect_left(keys, (size,))
        if i == len(keys):
            return None
        _, address = keys.pop(i)
        return self._free.pop(address)

    def _insert_free(self, block: Block) -> None:
        insort(self._free_keys[block.small], (block.size, block.address))
        self._free[block.address] = block

    def _remove_free(self, block: Block) -> None:
        keys = self._free_keys[block.small]
        del keys[bisect_left(keys, (block.size, block.address))]
        del self._free[block.address]

    def _new_segment(self, size: int, small: bool) -> Block:
        nbytes = segment_bytes(size)
        if self.limit_bytes is not None and self.reserved_bytes + nbytes > self.limit_bytes:
            self.empty_cache()  # what a failed cudaMalloc does before its one retry
            if self.reserved_bytes + nbytes > self.limit_bytes:
                raise AllocatorOutOfMemory(
                    f"a {nbytes} B segment for a {size} B block passes the {self.limit_bytes} B limit "
                    f"({self.reserved_bytes} B reserved, {self.allocated_bytes} B allocated)")
        block = Block(self._next_address, nbytes, small)
        self._next_address += nbytes
        self._heads[block.address] = block
        self.reserved_bytes += nbytes
        self.peak_reserved_bytes = max(self.peak_reserved_bytes, self.reserved_bytes)
        return block
