"""What an upload writes, decided once for the client's async loop and the runtime's sync one
(``levrt._stored.ChunkWriter``, ``left_over``, ``is_duplicate``): pure, no store."""

from __future__ import annotations

from levrt._stored import CHUNK_SIZE, CHUNKS_PER_WRITE, DUPLICATE_KEY, ChunkWriter, chunk_id, is_duplicate, left_over
from tests.fakes import BulkWriteError, DuplicateKeyError


def batches(size: int) -> tuple[list[list[tuple[str, int, int]]], ChunkWriter]:
    """The batches a content of ``size`` bytes is written in: ``(_id, n, length)`` per chunk."""
    writer, out, left = ChunkWriter("ab" * 32), [], size
    while not writer.done:
        block = b"x" * min(left, CHUNK_SIZE)
        left -= len(block)
        batch = writer.take(block)
        if batch:
            out.append([(c["_id"], c["n"], len(c["data"])) for c in batch])
    return out, writer


def test_chunks_go_in_batches_and_the_last_one_as_soon_as_the_content_ends() -> None:
    sha = "ab" * 32
    many = CHUNKS_PER_WRITE + 1
    written, writer = batches(many * CHUNK_SIZE - 7)
    assert [len(batch) for batch in written] == [CHUNKS_PER_WRITE, 1]
    assert written[0][0] == (chunk_id(sha, 0), 0, CHUNK_SIZE)
    assert written[1][0][1:] == (CHUNKS_PER_WRITE, CHUNK_SIZE - 7)
    assert writer.offset == many * CHUNK_SIZE - 7
    # A content of whole chunks ends with an empty block: no empty chunk is written.
    whole, writer = batches(2 * CHUNK_SIZE)
    assert [[n for _, n, _ in batch] for batch in whole] == [[0, 1]] and writer.offset == 2 * CHUNK_SIZE
    empty, writer = batches(0)
    assert empty == [] and writer.done and writer.offset == 0


def test_only_duplicate_keys_are_written_over() -> None:
    batch = ["a", "b", "c"]
    duplicates = BulkWriteError({"writeErrors": [{"index": 0, "code": DUPLICATE_KEY}, {"index": 2, "code": 11000}]})
    assert left_over(duplicates, batch) == ["a", "c"]
    other = BulkWriteError({"writeErrors": [{"index": 0, "code": DUPLICATE_KEY}, {"index": 1, "code": 2}]})
    assert left_over(other, batch) is None
    assert left_over(RuntimeError("network"), batch) is None
    assert is_duplicate(DuplicateKeyError("E11000")) and not is_duplicate(RuntimeError("network"))
