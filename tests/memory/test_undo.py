"""Undo in session memory: which artifact "undo" goes back to (`undo_target`, pure), and the row an undo records on
SQLite and PostgreSQL (a new alias for the old content, the newest of its kind, its parent what it replaced)."""

from __future__ import annotations

import pytest

from memory import ArtifactEntry, ArtifactStore, Database, SessionMemory, restored, undo_replaces, undo_target
from schemas import AliasNotFound, ArtifactRef
from tests.memory.test_sessions import image, segment_then_edit

_KINDS = {"img": "image", "video": "video", "mask": "mask", "masks": "masks"}
_MEDIA = {"image": ("image/png", (4, 4, 3)), "video": ("video/mp4", (2, 4, 4, 3)), "mask": ("image/png", (4, 4)),
          "masks": ("video/x-matroska", (2, 4, 4))}


class Table:
    """A session's artifact table written by hand: each artifact a distinct content unless `like` says otherwise."""

    def __init__(self) -> None:
        self.entries: list[ArtifactEntry] = []

    def add(self, alias: str, made_by: str, *parents: str, like: str | None = None) -> Table:
        kind = _KINDS[alias.rstrip("0123456789")]
        sha = self.get(like).ref.sha256 if like else f"{len(self.entries) + 1:064x}"
        media, shape = _MEDIA[kind]
        self.entries.append(ArtifactEntry(ArtifactRef(sha256=sha, kind=kind, media_type=media, shape=shape,
                                                      alias=alias), made_by, parents))
        return self

    def get(self, alias: str) -> ArtifactEntry:
        return next(e for e in self.entries if e.alias == alias)

    def undo(self) -> str | None:
        """What the agent records for "undo": the target's content under the next alias of its kind."""
        target = undo_target(self.entries)
        if target is None:
            return None
        replaced = undo_replaces(self.entries, target)
        number = 1 + sum(e.ref.kind == target.ref.kind for e in self.entries)
        prefix = "img" if target.ref.kind == "image" else target.ref.kind
        self.add(f"{prefix}{number}", "undo", *([replaced.alias] if replaced else []), like=target.alias)
        return target.alias


def edited() -> Table:
    """An upload, segmented, edited inside the mask, and the edit edited again."""
    return (Table().add("img1", "upload").add("mask1", "image_segmentation", "img1")
            .add("img2", "image_editing", "img1", "mask1").add("img3", "image_editing", "img2", "mask1"))


def test_undo_goes_back_to_what_the_last_edit_edited():
    table = edited()
    assert undo_target(table.entries).alias == "img2"
    assert undo_target(table.entries, "image").alias == "img2"
    assert undo_target(table.entries, "video") is None  # no video was made


def test_undoing_twice_walks_further_back_and_then_stops_at_the_upload():
    table = edited()
    assert table.undo() == "img2"
    assert table.get("img4").parents == ("img3",) and restored(table.entries, table.get("img4")).alias == "img2"
    assert table.undo() == "img1"
    assert table.get("img5").parents == ("img4",)
    assert table.undo() is None  # back at the upload: nothing before it


def test_undoing_an_animation_gives_the_image_it_animated():
    table = (Table().add("img1", "upload").add("img2", "image_editing", "img1")
             .add("video1", "image_to_video", "img2"))
    assert undo_target(table.entries).alias == "img2"
    assert undo_target(table.entries, "image").alias == "img1"  # the image's own last edit
    assert table.undo() == "img2" and table.get("img3").parents == ("video1",)


def test_a_video_edit_is_undone_to_its_video_and_masks_never_count():
    table = (Table().add("video1", "upload").add("masks1", "video_segmentation", "video1")
             .add("video2", "video_editing", "video1", "masks1"))
    assert undo_target(table.entries).alias == "video1"
    assert undo_target(Table().add("img1", "upload").add("mask1", "image_segmentation", "img1").entries) is None


def test_nothing_to_undo_in_an_empty_or_upload_only_session():
    assert undo_target([]) is None
    assert undo_target(Table().add("img1", "upload").add("img2", "upload").entries) is None
    assert undo_target(Table().add("img1", "image_generation").entries) is None  # made from nothing


# -- in session memory, on both databases ------------------------------------------------------------


def test_an_undo_is_a_new_row_of_the_old_content_that_persists(memory, memory_settings):
    session = memory.create_session()
    refs = segment_then_edit(memory, session.id)  # img1, mask1, img2
    turn = memory.append_turn(session.id, "user", "undo that")
    entry = memory.record_undo(session.id, "@img1", turn_id=turn.id)
    assert (entry.alias, entry.made_by, entry.parents, entry.turn_seq) == ("img3", "undo", ("img2",), turn.seq)
    assert entry.ref.sha256 == refs["photo"].sha256 and entry.describe().endswith("undo of @img2 (turn 3)")
    assert entry.ref.alias == "img3" and memory.turns(session.id)[-1].artifacts == (entry.ref,)

    with SessionMemory.from_settings(memory_settings) as again:  # another process reads the same table
        table = again.artifact_table(session.id)
    assert [e.alias for e in table] == ["img1", "mask1", "img2", "img3"]
    assert table[-1] == entry and restored(table, table[-1]).alias == "img1"

    # The content keeps its own row: recording it again, or asking its lineage, finds @img1, not the undo's row.
    assert memory.record_artifact(session.id, refs["photo"]).alias == "img1"
    assert memory.lineage(session.id, refs["photo"]).artifact.alias == "img1"
    assert [n.artifact.alias for n in memory.lineage(session.id, "img3").walk()] == ["img3", "img2", "img1", "mask1"]


def test_undo_back_to_an_undo_row_and_a_clear_error_for_an_unknown_alias(memory):
    session = memory.create_session()
    segment_then_edit(memory, session.id)
    memory.record_undo(session.id, "@img1")  # img3: img1's content
    memory.append_turn(session.id, "user", "another photo", attachments=[image(memory, 77)])  # img4
    again = memory.record_undo(session.id, "img3")  # named by the undo's row: the content it brought back
    assert (again.alias, again.parents) == ("img5", ("img4",))
    assert restored(memory.artifact_table(session.id), again).alias == "img1"
    with pytest.raises(AliasNotFound, match="@img9"):
        memory.record_undo(session.id, "@img9")
    assert len(memory.artifact_table(session.id)) == 6  # nothing more written


def test_deleting_a_session_with_undo_rows_removes_its_blobs_once(memory):
    memory.store.delete_grace_s = 0  # no recording in flight here: remove at once
    session = memory.create_session()
    refs = segment_then_edit(memory, session.id)
    memory.record_undo(session.id, "@img1")
    deleted = memory.delete_session(session.id)
    assert deleted.artifacts == 4 and sorted(deleted.blobs_removed) == sorted({r.sha256 for r in refs.values()})
    assert not memory.store.exists(refs["photo"])


def test_the_upgrade_keeps_the_lineage_of_an_older_sqlite_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    memory = SessionMemory(Database.open(url), ArtifactStore(tmp_path / "store"))
    session = memory.create_session()
    segment_then_edit(memory, session.id)
    memory.db.downgrade("0003")  # the data as a database of revision 0003 holds it
    memory.close()
    with SessionMemory(Database.open(url), ArtifactStore(tmp_path / "store")) as upgraded:  # what a start does
        from memory.database import head_revision

        assert upgraded.db.revision() == head_revision()
        # 0005 links each step to the rows it made: the mask and the edited image
        links = upgraded.db.read(lambda c: c.exec_driver_sql("SELECT count(*) FROM step_outputs").scalar())
        assert links == 2
        assert [e.parents for e in upgraded.artifact_table(session.id)] == [(), ("img1",), ("img1", "mask1")]
        assert upgraded.record_undo(session.id, "@img1").parents == ("img2",)
        upgraded.db.downgrade("0003")  # the undo's row goes; the rest stays
        assert [e.alias for e in upgraded.artifact_table(session.id)] == ["img1", "mask1", "img2"]
        assert upgraded.artifact_table(session.id)[-1].parents == ("img1", "mask1")
