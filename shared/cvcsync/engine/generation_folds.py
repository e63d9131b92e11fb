"""What a generation's commit (``engine.state``) does with the journal's entries (``engine.journal``): those it
folds in, which the generation takes over (``record_folds``), and those committed too late for it to see, whose
races with its writes only the generation being written can tell (``late_races``; after a reference generation,
``late_races_after_reference``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cvcsync.engine import generation as generation_file
from cvcsync.engine.generation import GenerationReader
from cvcsync.engine.journal import INTENT, Entry, Journal, replay
from cvcsync.engine.settle import Repair
from cvcsync.engine.shadow import ShadowState, UserRow


def late_races_after_reference(
    journal: Journal, reader: GenerationReader, generation: int, seen: set[str]
) -> list[Repair]:
    """After ``StateStore.commit_unchanged``: the races of the entries committed since its fingerprint (not in
    ``seen``) with it (``late_races``), on the users they name, read from the new generation's index (``reader``)."""
    listed = [key for key, _ in journal.list_all()]
    fresh = {key.rsplit("/", 2)[-2] for key in listed if key not in seen}
    if not fresh:
        return []
    entries = journal.read([key for key in listed if key.rsplit("/", 2)[-2] in fresh])
    header = reader.header()
    assert header is not None
    users = sorted({e.user_id for e in entries})
    found = reader.lookup([generation_file.USER + uid for uid in users], header)
    with tempfile.TemporaryDirectory(prefix="cvcsync-state-") as tmp:
        state = ShadowState(Path(tmp) / "late.sqlite", generation)
        try:
            state.db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(header.meta.items()))
            state.put_rows(UserRow.from_json(key[len(generation_file.USER) :], value) for key, value in found.items())
        finally:
            state.close()
        late = {e.entry_id for e in entries if journal.entry_key(e.user_id, e.seq) not in seen}
        return late_races(journal, Path(tmp) / "late.sqlite", generation, [], entries=entries, only=late)


def record_folds(state: ShadowState, journal: Journal, settles_in_flight: bool) -> list[str]:
    """Which of the journal entries folded into ``state`` the generation takes over: all of them, or (a commit
    that settles nothing) all but each user's trailing intents, whose runs are still answerable for them. The
    generation records each user's high-water mark and the entries it folded; returns their keys."""
    state.db.execute("DELETE FROM journal_folded")  # the previous generation's folds, not this one's
    by_user: dict[str, list[Entry]] = {}
    for entry in state.journal_pending:
        by_user.setdefault(entry.user_id, []).append(entry)
    taken: list[Entry] = []
    for entries in by_user.values():
        entries.sort(key=lambda e: e.seq)
        end = len(entries)
        if not settles_in_flight:
            while end and entries[end - 1].kind == INTENT:
                end -= 1
        taken.extend(entries[:end])
    marks: dict[str, int] = {}
    for entry in taken:
        marks[entry.user_id] = max(marks.get(entry.user_id, 0), entry.seq)
    state.db.executemany(
        "INSERT INTO journal_hw (user_id, seq) VALUES (?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        list(marks.items()),
    )
    state.db.executemany(
        "INSERT OR REPLACE INTO journal_folded (user_id, seq, entry_id) VALUES (?, ?, ?)",
        [(e.user_id, e.seq, e.entry_id) for e in taken],
    )
    return [journal.entry_key(e.user_id, e.seq) for e in taken]


def late_races(
    journal: Journal,
    path: Path,
    generation: int,
    folded: list[str],
    *,
    entries: list[Entry] | None = None,
    only: set[str] | None = None,
) -> list[Repair]:
    """Change-path entries this commit did not see (written after its checkout read the journal) whose writers
    read an older generation, and so may not have seen this one when they checked (``engine.views``): both
    this commit's writes (or snapshot) and theirs reached CVC in an unknown order. Replayed on this generation,
    as every reader will replay them, their races come back as repairs. (A writer that did see the generation
    repairs them too: a repair applied twice is applied once, the second is stale.)"""
    if entries is None:
        done = set(folded)
        fresh = [key for key, _ in journal.list_all() if key not in done]
        if not fresh:
            return []
        entries = journal.read(fresh)
    state = ShadowState(path, generation)
    try:
        marks = {uid: row.hw for uid, row in state.rows(sorted({e.user_id for e in entries})).items()}
        pending = [e for e in entries if e.seq > marks.get(e.user_id, 0)]
        raised = replay(state, pending)
        late = {e.entry_id for e in pending if e.generation < generation and (only is None or e.entry_id in only)}
        return [repair for entry_id, found in raised.items() if entry_id in late for repair in found]
    finally:
        state.close()
