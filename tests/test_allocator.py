"""The caching-allocator model against sequences whose figures follow from PyTorch's documented rules:
requests rounded up to 512 B; at most 1 MiB from the small pool (2 MiB segments), more from the
large pool (20 MiB segments under 10 MiB, else the request rounded up to 2 MiB); best fit by size
then address; a rest split off when >= 512 B (small) or > 1 MiB (large); neighbours merge on free."""
import pytest

from wavemix_profile.estimate.allocator import (MIB, Alloc, Allocator, AllocatorOutOfMemory, Free, Segment,
                                       round_request, segment_bytes)


def test_one_byte_takes_a_512_byte_block_of_a_2_mib_small_segment():
    allocator = Allocator()
    allocator.malloc(1)
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (2 * MIB, 512)
    assert allocator.segments() == [Segment(address=0, size_bytes=2 * MIB, small=True, allocated_bytes=512)]


def test_zero_bytes_take_nothing():
    allocator = Allocator()
    allocator.free(allocator.malloc(0))
    assert (allocator.peak_reserved_bytes, allocator.peak_allocated_bytes) == (0, 0)


def test_rounding_and_segment_sizes():
    assert [round_request(n) for n in (1, 512, 513, 1000, 1025)] == [512, 512, 1024, 1024, 1536]
    # 1 MiB is still small; under 10 MiB a 20 MiB segment; from 10 MiB the request rounded up to 2 MiB
    assert [segment_bytes(n) for n in (512, MIB, MIB + 512, 10 * MIB - 512, 10 * MIB, 11 * MIB)] == \
        [2 * MIB, 2 * MIB, 20 * MIB, 20 * MIB, 10 * MIB, 12 * MIB]


def test_4096_blocks_of_512_bytes_fill_one_small_segment_and_the_next_opens_another():
    allocator = Allocator()
    for _ in range(4096):  # 2 MiB / 512 B
        allocator.malloc(512)
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (2 * MIB, 2 * MIB)
    allocator.malloc(512)
    assert allocator.reserved_bytes == 4 * MIB
    assert [s.allocated_bytes for s in allocator.segments()] == [2 * MIB, 512]


def test_1_mib_is_small_and_one_byte_more_is_large():
    allocator = Allocator()
    allocator.malloc(MIB)
    allocator.malloc(MIB)  # the rest of the first 2 MiB segment
    assert allocator.reserved_bytes == 2 * MIB
    allocator.malloc(MIB + 1)  # rounded to 1 MiB + 512 B: the large pool, a 20 MiB segment
    assert allocator.reserved_bytes == 22 * MIB
    assert [s.small for s in allocator.segments()] == [True, False]


def test_large_requests_under_10_mib_share_a_20_mib_segment():
    allocator = Allocator()
    for _ in range(4):  # 4 x 5 MiB: the last one takes the 5 MiB left exactly
        allocator.malloc(5 * MIB)
        assert allocator.reserved_bytes == 20 * MIB
    allocator.malloc(5 * MIB)
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (40 * MIB, 25 * MIB)


def test_a_large_rest_of_1_mib_or_less_stays_with_the_request():
    allocator = Allocator()
    allocator.malloc(12 * MIB)  # 12 MiB is a multiple of 2 MiB: a 12 MiB segment, nothing left
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (12 * MIB, 12 * MIB)
    allocator.malloc(13 * MIB)  # a 14 MiB segment; the 1 MiB rest is not > 1 MiB, so not split
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (26 * MIB, 26 * MIB)
    allocator.malloc(9 * MIB + MIB // 2)  # a 20 MiB segment; the 10.5 MiB rest is split off
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (46 * MIB, 35.5 * MIB)
    allocator.malloc(9 * MIB + MIB // 2)  # takes the 10.5 MiB rest; 1 MiB left: not split
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (46 * MIB, 46 * MIB)


def test_a_small_rest_of_512_bytes_is_split_off():
    allocator = Allocator()
    allocator.malloc(MIB)
    allocator.malloc(MIB - 512)  # leaves 512 B of the 2 MiB segment: enough for a block of its own...
    allocator.malloc(1)  # ...which this request takes, instead of opening a second segment
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (2 * MIB, 2 * MIB)


def test_a_freed_block_is_reused_by_the_same_request():
    allocator = Allocator()
    first = allocator.malloc(5 * MIB)
    address = first.address
    allocator.free(first)
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (20 * MIB, 0)
    assert allocator.malloc(5 * MIB).address == address
    assert allocator.peak_reserved_bytes == 20 * MIB


def test_freed_neighbours_merge_so_a_bigger_request_fits():
    allocator = Allocator()
    a, b, c = (allocator.malloc(6 * MIB) for _ in range(3))  # one 20 MiB segment, 2 MiB left
    allocator.free(a)  # 6 MiB free, b still between it and the rest
    allocator.malloc(12 * MIB)  # nothing free is 12 MiB: a 12 MiB segment
    assert allocator.reserved_bytes == 32 * MIB
    allocator.free(b)  # merges with a: 12 MiB free at the segment's start
    again = allocator.malloc(12 * MIB)
    assert allocator.reserved_bytes == 32 * MIB and again.address == 0
    allocator.free(again)
    allocator.free(c)  # merges with both sides: the 20 MiB segment is one free block again
    assert allocator.segments()[0] == Segment(address=0, size_bytes=20 * MIB, small=False, allocated_bytes=0)


def test_best_fit_takes_the_smallest_sufficient_block_then_the_lowest_address():
    allocator = Allocator()
    # one 20 MiB segment: a 4 MiB | keep 2 | b 3 MiB | keep 2 | keep 5 | 4 MiB rest
    a = allocator.malloc(4 * MIB)
    allocator.malloc(2 * MIB)
    b = allocator.malloc(3 * MIB)
    allocator.malloc(2 * MIB)
    allocator.malloc(5 * MIB)
    allocator.free(a)
    allocator.free(b)
    # free: 4 MiB at 0, 3 MiB at 6 MiB, 4 MiB at 16 MiB
    assert allocator.malloc(3 * MIB).address == 6 * MIB  # first fit by address would take 0
    assert allocator.malloc(3 * MIB).address == 0  # two 4 MiB blocks: the lower address
    assert allocator.reserved_bytes == 20 * MIB


def test_small_and_large_pools_never_share_a_segment():
    allocator = Allocator()
    allocator.malloc(5 * MIB)  # 15 MiB of the large segment stay free
    allocator.malloc(1000)
    assert allocator.reserved_bytes == 22 * MIB


def test_empty_cache_releases_only_wholly_free_segments():
    allocator = Allocator()
    first = allocator.malloc(5 * MIB)
    allocator.malloc(5 * MIB)
    big = allocator.malloc(12 * MIB)
    allocator.free(first)
    allocator.free(big)
    allocator.empty_cache()
    assert allocator.reserved_bytes == 20 * MIB  # the 12 MiB segment went; the shared one holds 5 MiB
    assert allocator.peak_reserved_bytes == 32 * MIB
    allocator.reset_peak()
    assert (allocator.peak_reserved_bytes, allocator.peak_allocated_bytes) == (20 * MIB, 5 * MIB)


def test_past_the_limit_the_cache_is_released_then_out_of_memory():
    allocator = Allocator(limit_bytes=40 * MIB)
    allocator.free(allocator.malloc(12 * MIB))  # a cached 12 MiB segment
    allocator.malloc(30 * MIB)  # 12 + 30 > 40: the cached segment is released first
    assert (allocator.reserved_bytes, allocator.peak_reserved_bytes) == (30 * MIB, 30 * MIB)
    with pytest.raises(AllocatorOutOfMemory):
        allocator.malloc(12 * MIB)  # 30 + 12 > 40 with nothing left to release


def test_replay_applies_events_with_ids_that_live_across_calls():
    allocator = Allocator()
    allocator.replay([Alloc("w", 5 * MIB), Alloc("x", 3 * MIB), Free("x"), Alloc("y", 100)])
    assert (allocator.reserved_bytes, allocator.allocated_bytes) == (22 * MIB, 5 * MIB + 512)
    assert allocator.peak_allocated_bytes == 8 * MIB  # w and x, before x was freed and y came
    allocator.replay([Free("w"), Alloc("x", 0), Free("x")])
    assert allocator.allocated_bytes == 512
    with pytest.raises(ValueError, match="still live"):
        allocator.replay([Alloc("y", 512)])


def test_a_block_freed_twice_is_an_error():
    allocator = Allocator()
    block = allocator.malloc(512)
    allocator.free(block)
    with pytest.raises(ValueError, match="twice"):
        allocator.free(block)
