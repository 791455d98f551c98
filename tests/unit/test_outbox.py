"""Unit and property tests for the per-connection send queue and its token coalescing.

What ``take()`` preserves: the input with every maximal run of *consecutive* ``run.token``
frames of one (conversation, run) replaced by one token frame (same keys in the same order,
the concatenated ``delta``, the last ``seq`` and ``ts``). Every other frame comes out with
its text unchanged, and the relative order of all output frames is the order of the input
(a merged frame sits where its run of tokens was). Nothing merges across another frame, even
an ephemeral one, nor across two different runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime import events
from realtime.events import RUN_TOKEN, to_frame
from realtime.protocol import error_frame
from realtime.transport.outbox import Outbox


@dataclass(frozen=True)
class Item:
    kind: str
    text: str

    @property
    def key(self) -> tuple[str, str] | None:
        """(conversation, run) of a token frame, None for every other frame."""
        if self.kind != RUN_TOKEN:
            return None
        body = orjson.loads(self.text)
        return body["conversation_id"], body["run_id"]


class Seqs:
    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def next(self, cid: str) -> int:
        self.last[cid] = self.last.get(cid, 0) + 1
        return self.last[cid]


def tok(seqs: Seqs, cid: str, run: str, delta: str) -> Item:
    frame = to_frame(events.run_token(cid, run, delta), seqs.next(cid))
    return Item(frame.type, frame.text)


def other(seqs: Seqs, cid: str, kind: str) -> Item:
    if kind == "typing":  # ephemeral: no seq
        event = events.typing(cid, "agent", True)
        return Item(event.type, event.body.decode())
    if kind == "error":  # not an event at all
        return Item("error", error_frame("queue_full", "full", "m1"))
    if kind == "status":
        frame = to_frame(events.run_status(cid, "r1", "generating"), seqs.next(cid))
    else:
        frame = to_frame(events.notice(cid, "n", "careful"), seqs.next(cid))
    return Item(frame.type, frame.text)


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("token"),
            st.sampled_from(["c1", "c2"]),
            st.sampled_from(["r1", "r2"]),
            st.text(max_size=6),
        ),
        st.tuples(
            st.just("other"),
            st.sampled_from(["c1", "c2"]),
            st.sampled_from(["status", "notice", "typing", "error"]),
        ),
    ),
    max_size=40,
)


def build(spec: Iterable[tuple[Any, ...]]) -> list[Item]:
    seqs = Seqs()
    items = []
    for op in spec:
        if op[0] == "token":
            items.append(tok(seqs, op[1], op[2], op[3]))
        else:
            items.append(other(seqs, op[1], op[2]))
    return items


def groups(items: list[Item]) -> list[list[Item]]:
    """Maximal runs of consecutive token frames of one (conversation, run); others alone."""
    out: list[list[Item]] = []
    for item in items:
        if item.key is not None and out and out[-1][0].key == item.key:
            out[-1].append(item)
        else:
            out.append([item])
    return out


def merged_body(group: list[Item]) -> dict[str, Any]:
    first, last = orjson.loads(group[0].text), orjson.loads(group[-1].text)
    return {
        **first,
        "delta": "".join(orjson.loads(i.text)["delta"] for i in group),
        "seq": last["seq"],
        "ts": last["ts"],
    }


def compacted_size(items: list[Item]) -> int:
    """Characters the queue holds once coalesced."""
    size = 0
    for group in groups(items):
        if group[0].kind == RUN_TOKEN:
            size += len(orjson.dumps(merged_body(group)).decode())
        else:
            size += len(group[0].text)
    return size


def check_take(items: list[Item], out: list[str]) -> None:
    expected = groups(items)
    assert len(out) == len(expected)
    for text, group in zip(out, expected, strict=True):
        if group[0].kind != RUN_TOKEN:
            assert text == group[0].text  # untouched
            continue
        body = orjson.loads(text)
        assert body == merged_body(group)
        assert list(body) == list(orjson.loads(group[0].text))  # same shape and key order
    # (a) per (conversation, run), the deltas concatenate to the same text
    for cid in ("c1", "c2"):
        for run in ("r1", "r2"):
            sent = [orjson.loads(i.text)["delta"] for i in items if i.key == (cid, run)]
            got = [
                orjson.loads(t)["delta"]
                for t in out
                if orjson.loads(t)["type"] == RUN_TOKEN
                and (orjson.loads(t)["conversation_id"], orjson.loads(t)["run_id"]) == (cid, run)
            ]
            assert "".join(got) == "".join(sent)
    # (c) per conversation, seqs still increase
    for cid in ("c1", "c2"):
        seqs = [b.get("seq", 0) for b in map(orjson.loads, out) if b.get("conversation_id") == cid]
        seqs = [s for s in seqs if s]  # typing frames have none
        assert seqs == sorted(set(seqs))


# --------------------------------------------------------------------------- examples


def test_consecutive_tokens_of_one_run_merge() -> None:
    seqs = Seqs()
    items = [tok(seqs, "c", "r", d) for d in ("Hel", "lo", " world")]
    box = Outbox(10**6)
    for item in items:
        assert box.put(item.kind, item.text)
    assert len(box) == 3
    out = box.take()
    assert len(out) == 1
    body = orjson.loads(out[0])
    assert body["delta"] == "Hello world"
    assert body["seq"] == 3
    assert list(body) == ["type", "seq", "conversation_id", "ts", "run_id", "delta"]
    assert len(box) == 0 and box.size == 0
    assert box.take() == []


def test_tokens_do_not_merge_across_other_frames_or_runs() -> None:
    seqs = Seqs()
    items = [
        tok(seqs, "c", "r1", "a"),
        tok(seqs, "c", "r2", "b"),
        tok(seqs, "c", "r2", "c"),
        other(seqs, "c", "typing"),
        tok(seqs, "c", "r2", "d"),
        tok(seqs, "d", "r2", "e"),  # same run id, other conversation
    ]
    box = Outbox(10**6)
    for item in items:
        box.put(item.kind, item.text)
    out = [orjson.loads(t) for t in box.take()]
    assert [(b["type"], b.get("delta")) for b in out] == [
        ("run.token", "a"),
        ("run.token", "bc"),
        ("typing", None),
        ("run.token", "d"),
        ("run.token", "e"),
    ]


def test_single_frame_is_returned_as_is() -> None:
    box = Outbox(100)
    assert box.put("pong", '{"type":"pong"}')
    assert box.size == len('{"type":"pong"}')
    assert box.take() == ['{"type":"pong"}']


def test_overflow_when_compaction_cannot_make_room() -> None:
    box = Outbox(50)
    assert box.put("notice", "x" * 40)
    assert not box.put("notice", "y" * 20)
    assert box.overflowed
    assert not box.put("pong", "{}")
    assert not box.put("pong", "{}", replay=True)


def test_compaction_can_make_room() -> None:
    seqs = Seqs()
    items = [tok(seqs, "c", "r", "abcdef") for _ in range(6)]
    bound = compacted_size(items)
    assert sum(len(i.text) for i in items) > bound
    box = Outbox(bound)
    for item in items:
        assert box.put(item.kind, item.text)
    assert not box.overflowed
    assert len(box) == 1
    assert box.size == bound


def test_replayed_frames_do_not_count_against_the_bound() -> None:
    box = Outbox(100)
    assert box.put("message.created", "r" * 10_000, replay=True)
    assert box.put("message.created", "r" * 10_000, replay=True)
    assert not box.overflowed
    assert box.put("notice", "n" * 100)  # exactly the bound of live frames
    assert not box.put("notice", "n")
    assert box.overflowed


def test_close_empties_and_refuses() -> None:
    box = Outbox(100)
    box.put("pong", "{}")
    box.close()
    assert box.closed and not box.overflowed
    assert len(box) == 0 and box.size == 0
    assert box.take() == []
    assert not box.put("pong", "{}")
    assert not box.put("pong", "{}", replay=True)


def test_wait_wakes_on_put_overflow_and_close() -> None:
    async def main() -> None:
        box = Outbox(10)
        waiter = asyncio.create_task(box.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        box.put("pong", "{}")
        await asyncio.wait_for(waiter, 1)
        box.take()  # clears the signal
        waiter = asyncio.create_task(box.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        box.put("notice", "x" * 11)  # overflows
        await asyncio.wait_for(waiter, 1)
        assert box.overflowed

        closed = Outbox(10)
        waiter = asyncio.create_task(closed.wait())
        await asyncio.sleep(0)
        closed.close()
        await asyncio.wait_for(waiter, 1)

    asyncio.run(main())


# --------------------------------------------------------------------------- properties


@settings(max_examples=100)
@given(spec=ops)
def test_take_coalesces_exactly_the_runs_of_consecutive_tokens(spec: list[tuple[Any, ...]]) -> None:
    items = build(spec)
    box = Outbox(10**9)
    for item in items:
        assert box.put(item.kind, item.text)
    assert box.size == sum(len(i.text) for i in items)
    out = box.take()
    check_take(items, out)
    assert len(box) == 0 and box.size == 0


@settings(max_examples=50)
@given(spec=ops, cuts=st.sets(st.integers(0, 40)))
def test_takes_in_between_only_merge_within_a_take(
    spec: list[tuple[Any, ...]], cuts: set[int]
) -> None:
    items = build(spec)
    box = Outbox(10**9)
    start = 0
    for i, item in enumerate(items):
        box.put(item.kind, item.text)
        if i in cuts:
            check_take(items[start : i + 1], box.take())
            start = i + 1
    check_take(items[start:], box.take())


@settings(max_examples=150)
@given(spec=ops, bound=st.integers(0, 600), cuts=st.sets(st.integers(0, 40)))
def test_put_overflows_exactly_when_the_coalesced_queue_exceeds_the_bound(
    spec: list[tuple[Any, ...]], bound: int, cuts: set[int]
) -> None:
    items = build(spec)
    box = Outbox(bound)
    queued: list[Item] = []
    for i, item in enumerate(items):
        accepted = box.put(item.kind, item.text)
        if box.overflowed:
            assert not accepted
            assert compacted_size([*queued, item]) > bound
            # once overflowed, everything is refused
            assert not box.put("pong", "{}")
            assert not box.put("pong", "{}", replay=True)
            return
        assert accepted
        queued.append(item)
        assert compacted_size(queued) <= bound
        assert box.size <= sum(len(q.text) for q in queued)
        if i in cuts:
            check_take(queued, box.take())
            queued = []
    check_take(queued, box.take())


@settings(max_examples=100)
@given(spec=ops, bound=st.integers(0, 50))
def test_replayed_puts_never_overflow(spec: list[tuple[Any, ...]], bound: int) -> None:
    items = build(spec)
    box = Outbox(bound)
    for item in items:
        assert box.put(item.kind, item.text, replay=True)
    assert not box.overflowed
    check_take(items, box.take())


def test_live_frames_stay_within_the_bound_after_replayed_tokens_merge() -> None:
    """Replayed frames are exempt from the bound; live frames are not.

    ``put`` subtracts the *pre-compaction* size of the replayed frames from the queue's size.
    When compaction merges replayed tokens (10 frames of ~100 characters become one), the
    queue shrinks but ``_replayed`` does not, so live frames get the difference for free.
    """
    seqs = Seqs()
    box = Outbox(200)
    for _ in range(10):
        item = tok(seqs, "c", "r", "abc")
        assert box.put(item.kind, item.text, replay=True)
    live = 0
    for _ in range(10):
        item = other(seqs, "c", "notice")
        if not box.put(item.kind, item.text):
            break
        live += len(item.text)
    assert box.overflowed
    assert live <= box.max_chars
