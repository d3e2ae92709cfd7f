"""Agent coordination through the service, on SQLite and PostgreSQL: blockers and the ready list,
claims with leases, notes, and update_tasks with a dry run (DESIGN §10)."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Iterator

import pytest

from task_mcp.db import Database
from task_mcp.errors import ConflictError, InvalidArgumentError, NotFoundError
from task_mcp.models import TaskCreate, TaskOut, TaskQuery, TaskUpdate
from task_mcp.service import TaskService
from task_mcp.service.journal import Receipt


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(database_url: str, clock: Clock) -> Iterator[TaskService]:
    db = Database(database_url)
    try:
        yield TaskService(db, clock=clock, purge_every=None)
    finally:
        db.dispose()


def ready_ids(service: TaskService) -> list[int]:
    return [t.id for t in service.list_tasks("alice", TaskQuery(ready=True)).tasks]


def chain(service: TaskService) -> tuple[int, int, int]:
    a, _ = service.create_task("alice", TaskCreate(title="A"))
    b, _ = service.create_task("alice", TaskCreate(title="B", blocked_by=[a.id]))
    c, _ = service.create_task("alice", TaskCreate(title="C", blocked_by=[b.id]))
    return a.id, b.id, c.id


def test_a_chain_shows_only_its_head_ready_and_completing_or_reopening_moves_the_front(service: TaskService) -> None:
    a, b, _ = chain(service)
    assert ready_ids(service) == [a]
    assert service.get_task("alice", b).blocked and service.get_task("alice", b).blocked_by == [a]
    service.complete_task("alice", a)
    assert ready_ids(service) == [b]
    assert service.get_task("alice", b).blocked_by == [a] and not service.get_task("alice", b).blocked
    service.update_task("alice", a, TaskUpdate(status="open"))
    assert ready_ids(service) == [a]


def test_a_cycle_through_update_tasks_is_refused_naming_it_and_changes_nothing(service: TaskService) -> None:
    a, b, _ = chain(service)
    with pytest.raises(InvalidArgumentError, match=f"#{a} → #{b} → #{a}"):
        service.update_tasks("alice", [(b, TaskUpdate(title="B2")), (a, TaskUpdate(blocked_by=[b]))])
    assert service.get_task("alice", b).title == "B"
    with pytest.raises(InvalidArgumentError, match="cannot block itself"):
        service.update_task("alice", a, TaskUpdate(blocked_by=[a]))


def test_deleted_and_other_workspace_blockers_are_not_found_and_a_deleted_one_is_hidden(service: TaskService) -> None:
    a, b, _ = chain(service)
    bobs, _ = service.create_task("bob", TaskCreate(title="Bob's"))
    with pytest.raises(NotFoundError):
        service.create_task("alice", TaskCreate(title="X", blocked_by=[bobs.id + 10]))
    service.delete_task("alice", a)
    with pytest.raises(NotFoundError, match="deleted"):
        service.update_task("alice", b, TaskUpdate(blocked_by=[a]))
    assert service.get_task("alice", b).blocked_by == []
    service.restore_task("alice", a)
    assert service.get_task("alice", b).blocked_by == [a]


def test_claims_conflict_renew_expire_and_never_show_their_id_later(service: TaskService, clock: Clock) -> None:
    a, b, _ = chain(service)
    with pytest.raises(ConflictError, match=f"blocked by #{a}"):
        service.claim_task("alice", b)
    first = service.claim_task("alice", a, lease_seconds=60)
    assert first.claim is not None and len(first.claim["claim_id"]) >= 22
    with pytest.raises(ConflictError, match="claimed by alice until"):
        service.claim_task("alice", a)  # a second session of the same user is another claimer
    assert ready_ids(service) == []
    assert "claim_id" not in (service.get_task("alice", a).claim or {})
    clock.now += dt.timedelta(seconds=30)
    renewed = service.claim_task("alice", a, claim_id=first.claim["claim_id"], lease_seconds=60)
    assert renewed.claim is not None and renewed.claim["claim_id"] == first.claim["claim_id"]
    assert renewed.claim["expires_at"] > first.claim["expires_at"]
    clock.now += dt.timedelta(seconds=61)
    assert ready_ids(service) == [a]
    again = service.claim_task("alice", a)
    assert again.claim is not None and again.claim["claim_id"] != first.claim["claim_id"]
    assert service.get_task("alice", a).version == 1  # claims do not bump the version


def test_claim_without_task_id_takes_the_best_ready_task_then_none(service: TaskService) -> None:
    low, _ = service.create_task("alice", TaskCreate(title="low", priority="low"))
    late, _ = service.create_task("alice", TaskCreate(title="late", priority="high", due="2026-12-05"))
    soon, _ = service.create_task("alice", TaskCreate(title="soon", priority="high", due="2026-12-01T10:00:00Z"))
    undated, _ = service.create_task("alice", TaskCreate(title="undated", priority="high", tags=["x"]))
    assert ready_ids(service) == [soon.id, late.id, undated.id, low.id]
    assert service.claim_task("alice", query=TaskQuery(tags=["x"])).task.id == undated.id  # type: ignore[union-attr]
    picked = [service.claim_task("alice").task for _ in range(3)]
    assert [t.id for t in picked if t] == [soon.id, late.id, low.id]
    receipt = Receipt(change_id=1)
    assert service.claim_task("alice", receipt=receipt).task is None and receipt.change_id is None


def test_release_completes_adds_a_note_and_undo_reverts_both_but_not_the_claim(service: TaskService) -> None:
    (a, _, _) = chain(service)
    claim = service.claim_task("alice", a).claim
    assert claim is not None
    with pytest.raises(ConflictError):
        service.release_task("alice", a, claim_id="wrong")
    receipt = Receipt()
    done = service.release_task(
        "alice", a, claim_id=claim["claim_id"], outcome="completed", note="shipped", receipt=receipt
    )
    assert done.status == "completed" and done.claim is None
    task = service.get_task("alice", a)
    assert task.notes_total == 1 and task.notes is not None and task.notes[0]["text"] == "shipped"
    assert receipt.change_id is not None
    service.undo_change("alice", receipt.change_id)
    task = service.get_task("alice", a)
    assert task.status == "open" and task.notes_total == 0 and task.claim is None
    changes = service.list_changes("alice").changes
    assert all(claim["claim_id"] not in str(c) for c in changes)
    claimed = next(c for c in changes if c["tool"] == "claim_task")
    with pytest.raises(InvalidArgumentError, match="release_task"):
        service.undo_change("alice", claimed["change_id"])


def test_notes_show_the_newest_twenty_clipped_with_a_total_and_undo_removes_one(service: TaskService) -> None:
    task, _ = service.create_task("alice", TaskCreate(title="log"))
    for i in range(25):
        service.add_note("alice", task.id, f"note {i} " + "x" * 600)
    receipt = Receipt()
    service.add_note("alice", task.id, "last", receipt=receipt)
    got = service.get_task("alice", task.id)
    assert got.notes_total == 26 and got.notes is not None and len(got.notes) == 20
    assert got.notes[0]["text"] == "last" and got.notes[1]["truncated"] is True and len(got.notes[1]["text"]) == 500
    assert got.version == 1
    assert receipt.change_id is not None
    service.update_task("alice", task.id, TaskUpdate(title="log2"))
    service.undo_change("alice", receipt.change_id)  # a note's undo ignores the version
    assert service.get_task("alice", task.id).notes_total == 25


def test_update_tasks_is_all_or_nothing_and_a_dry_run_answers_the_same_changing_nothing(service: TaskService) -> None:
    a, _ = service.create_task("alice", TaskCreate(title="a"))
    b, _ = service.create_task("alice", TaskCreate(title="b"))
    with pytest.raises(ConflictError, match=r"updates\[1\] \(task 2\)"):
        service.update_tasks(
            "alice", [(a.id, TaskUpdate(title="A")), (b.id, TaskUpdate(title="B", expected_version=9))]
        )
    assert service.get_task("alice", a.id).title == "a"
    for dry in (True, False):
        with pytest.raises(ConflictError) as refused:
            service.update_tasks("alice", [(b.id, TaskUpdate(expected_version=9))], dry_run=dry)
        assert "updates[0]" in refused.value.message
    items = [(a.id, TaskUpdate(title="A")), (b.id, TaskUpdate(blocked_by=[a.id]))]
    dry = service.update_tasks("alice", items, dry_run=True)
    assert service.get_task("alice", a.id).title == "a"
    receipt = Receipt()
    real = service.update_tasks("alice", items, receipt=receipt)
    strip = {"updated_at"}
    assert [t.model_dump(exclude=strip) for t in dry] == [t.model_dump(exclude=strip) for t in real]
    assert receipt.change_id is not None and real[1].blocked
    with pytest.raises(InvalidArgumentError, match="already"):
        service.update_tasks("alice", [(a.id, TaskUpdate()), (a.id, TaskUpdate())])


def test_the_prepared_ready_page_and_claim_pick_agree_with_the_general_path_and_claim_order(
    service: TaskService, clock: Clock
) -> None:
    """A ready list with nothing else given (and claim_task's pick) runs statements built once; with
    another filter that keeps every task (all five priorities) it runs the general ones. Both must
    give claim order: priority highest, due soonest (a date at the start of its UTC day), undated
    last, then id; without blocked, claimed or completed tasks."""
    rng = random.Random(5)
    priorities = ["none", "low", "medium", "high", "urgent"]
    made = []
    for i in range(60):
        due = rng.choice(
            [None, f"2026-11-{rng.randint(1, 9):02d}", f"2026-11-{rng.randint(1, 9):02d}T0{rng.randint(0, 9)}:00:00Z"]
        )
        blockers = [rng.choice(made).id] if made and rng.random() < 0.2 else []
        task, _ = service.create_task(
            "alice", TaskCreate(title=f"T{i}", priority=rng.choice(priorities), due=due, blocked_by=blockers)
        )
        made.append(task)
    for task in rng.sample(made, 8):
        service.complete_task("alice", task.id)
    for task in rng.sample(made, 8):
        with contextlib.suppress(ConflictError):  # completed or blocked: not claimable, fine here
            service.claim_task("alice", task.id)

    tasks = service.list_tasks("alice", TaskQuery(status="all", limit=100)).tasks

    def key(t: TaskOut) -> tuple[int, bool, str, int]:
        due = t.due or ""
        start = due if "T" in due else (f"{due}T00:00:00Z" if due else "")
        return (-priorities.index(t.priority), not due, start, t.id)

    expected = [t.id for t in sorted(tasks, key=key) if t.status == "open" and not t.blocked and t.claim is None]
    assert len(expected) > 20  # more than a page of 20: the cursor's pages take the general path

    def every_page(query: TaskQuery) -> list[int]:
        ids, page = [], service.list_tasks("alice", query)
        ids += [t.id for t in page.tasks]
        while page.next_cursor:
            page = service.list_tasks("alice", query.model_copy(update={"cursor": page.next_cursor}))
            ids += [t.id for t in page.tasks]
        assert page.total == len(expected)
        return ids

    assert every_page(TaskQuery(ready=True)) == expected  # first page prepared, the rest general
    assert every_page(TaskQuery(ready=True, priority=priorities)) == expected  # general throughout
    claimed = service.claim_task("alice")  # the prepared pick
    assert claimed.task is not None and claimed.task.id == expected[0]
    filtered = service.claim_task("alice", query=TaskQuery(priority=priorities))  # the general pick
    assert filtered.task is not None and filtered.task.id == expected[1]
