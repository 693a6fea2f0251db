"""Atomic writes: a failed write leaves the old file and no temporary files behind."""

from __future__ import annotations

import pytest

from zoo.utils.files import atomic_path, write_text_atomic


def test_atomic_write_replaces_or_leaves_the_file_untouched(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_text_atomic(target, "old")
    assert target.read_text() == "old"

    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]

    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible until the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]
