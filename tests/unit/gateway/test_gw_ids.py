"""Record ids (sortable by time), list floors, event-URL tokens and their hashes; and the
ingest nesting check."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import sys
import threading
import time

import pytest

from actions.ids import delivery_id, id_floor, sortable_id
from gateway.http.ingest import too_deep
from gateway.ids import hash_token, new_id, new_token

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
T0 = 1_700_000_000.0


def timestamp_ms(record_id: str, prefix: str) -> int:
    """The millisecond timestamp in the first 10 characters after the prefix (ULID layout)."""
    value = 0
    for char in record_id[len(prefix) : len(prefix) + 10]:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_an_id_is_the_prefix_and_26_crockford_characters() -> None:
    record_id = sortable_id("evt_", T0)
    assert re.fullmatch(r"evt_[0-9A-HJKMNP-TV-Z]{26}", record_id)
    assert timestamp_ms(record_id, "evt_") == int(T0 * 1000)
    assert delivery_id(T0).startswith("dlv_") and len(delivery_id()) == 30
    assert new_id is sortable_id


def test_ids_sort_by_creation_time() -> None:
    times = [T0 + k * 0.001 for k in range(300)] + [T0 + 86_400 * k for k in range(1, 50)]
    ids = [sortable_id("evt_", t) for t in times]
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled) == ids
    assert sortable_id("evt_", 1.0) < sortable_id("evt_", 10.0) < sortable_id("evt_", T0)


def test_ids_of_one_millisecond_are_distinct() -> None:
    ids = {sortable_id("evt_", T0) for _ in range(1000)}
    assert len(ids) == 1000
    assert {timestamp_ms(i, "evt_") for i in ids} == {int(T0 * 1000)}


def test_ids_alternating_between_milliseconds_keep_their_own_time() -> None:
    # The time characters are cached per millisecond: switching back and forth must not
    # hand one millisecond's prefix to another.
    for k in range(50):
        at = T0 + (k % 3) * 0.001 + (k // 3) * 3600
        assert timestamp_ms(sortable_id("evt_", at), "evt_") == int(at * 1000)


def test_the_first_random_part_of_a_millisecond_uses_the_whole_alphabet_evenly() -> None:
    # One id per millisecond: each is a fresh draw of 79 bits, so its first random
    # character is one of the lower 16 (headroom for counting up), the other 15 any of 32.
    counts: dict[str, int] = {}
    firsts: set[str] = set()
    for k in range(4000):
        record_id = sortable_id("", T0 + 7 + k * 0.001)
        firsts.add(record_id[10])
        for char in record_id[11:]:
            counts[char] = counts.get(char, 0) + 1
    assert firsts == set(CROCKFORD[:16])
    assert set(counts) == set(CROCKFORD)
    expected = 4000 * 15 / 32
    assert all(abs(n - expected) < expected * 0.15 for n in counts.values())


def test_ids_of_one_millisecond_sort_in_the_order_they_were_made() -> None:
    at = T0 + 11.0005
    ids = [sortable_id("evt_", at) for _ in range(3000)]  # carries into higher characters
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {timestamp_ms(i, "evt_") for i in ids} == {int(at * 1000)}


def test_ids_of_one_millisecond_keep_their_order_when_other_times_come_between() -> None:
    # A request that read the clock earlier may make its id between two of a later
    # millisecond; ids made with a time given out of order (backdated) do too.
    at, earlier = T0 + 12.0, T0 + 11.0
    made: list[str] = []
    for k in range(200):
        made.append(sortable_id("evt_", at))
        sortable_id("dlv_", earlier - (k % 5) * 0.001)
    assert made == sorted(made)


def test_ids_made_by_racing_threads_are_distinct() -> None:
    at = T0 + 13.0
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(sortable_id("evt_", at) for _ in range(5000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    every = [i for out in made for i in out]
    assert len(set(every)) == len(every) == 20_000
    assert all(out == sorted(out) for out in made)  # each thread's own ids in its order


# Python 3.12+ warns on fork() in a process with threads (pytest-xdist's); the child here
# only makes one id and writes it.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_count_up_from_its_parents_ids() -> None:
    at = T0 + 14.0
    sortable_id("evt_", at)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id of the same millisecond, then out
        os.write(write, sortable_id("evt_", at).encode())
        os._exit(0)
    os.close(write)
    parents_next = sortable_id("evt_", at)
    os.waitpid(pid, 0)
    childs = os.read(read, 100).decode()
    os.close(read)
    assert len(childs) == 30 and childs != parents_next


def test_ids_without_a_time_use_the_clock() -> None:
    before = int(time.time() * 1000)
    record_id = sortable_id("app_")
    after = int(time.time() * 1000)
    assert before <= timestamp_ms(record_id, "app_") <= after


def test_id_floor_is_the_smallest_id_of_its_millisecond() -> None:
    floor = id_floor("evt_", T0)
    assert floor == "evt_" + sortable_id("", T0)[:10] + "0" * 16
    assert all(floor <= sortable_id("evt_", T0) for _ in range(200))
    assert all(sortable_id("evt_", T0 - 0.001) < floor for _ in range(200))
    assert id_floor("evt_", T0 + 0.001) > max(sortable_id("evt_", T0) for _ in range(200))
    assert id_floor("evt_", -5) == "evt_" + "0" * 26


def test_tokens_are_192_random_url_safe_bits() -> None:
    tokens = [new_token() for _ in range(2000)]
    assert len(set(tokens)) == len(tokens)
    for token in tokens[:50]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token), token
        assert len(base64.urlsafe_b64decode(token)) == 24  # 192 bits, at least 128 required
    # every one of the 64 URL-safe characters turns up: the tokens are not from a small set
    assert set("".join(tokens)) == set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_hash_token_is_sha256_hex() -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    token = new_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_token(token))
    assert hash_token(token) != hash_token(token + "x")
    assert hash_token("\udcff") == hashlib.sha256(b"\xed\xb3\xbf").hexdigest()  # no crash


# the ingest nesting check


def nested(depth: int, kind: str = "dict") -> object:
    value: object = {} if kind == "dict" else []
    for _ in range(depth - 1):
        value = {"a": value} if kind == "dict" else [value]
    return value


def test_too_deep_counts_containers_from_the_top() -> None:
    assert not too_deep({"a": 1}, 1)
    assert too_deep({"a": {}}, 1)
    assert not too_deep({"a": {}}, 2)
    for kind in ("dict", "list"):
        assert not too_deep(nested(64, kind), 64)
        assert too_deep(nested(65, kind), 64)


def test_too_deep_looks_into_every_branch() -> None:
    wide = {"a": [1, "x", None, {"b": 2}], "c": {"d": {"e": [[]]}}}
    assert not too_deep(wide, 5)
    assert too_deep(wide, 4)
    assert not too_deep([1, 2, 3], 1)
    assert not too_deep("scalar", 1)
    assert not too_deep(7, 1)


def test_too_deep_handles_hostile_depth_without_recursion() -> None:
    assert too_deep(nested(200_000, "list"), 64)
    assert too_deep(nested(200_000, "dict"), 64)
