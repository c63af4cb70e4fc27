from __future__ import annotations

from pathlib import Path

from vidbatch.config import InputConfig
from vidbatch.plan.listing import list_videos


def names(sources):
    return sorted(Path(s.uri).name for s in sources)


def test_directory_is_recursive_and_filters_suffixes(video_dir: Path):
    sources, errors, ignored = list_videos([str(video_dir)], InputConfig())
    assert names(sources) == ["a.mp4", "b.mp4", "c.mp4", "corrupt.mp4"]
    assert errors == [] and ignored == 1  # notes.txt


def test_glob_manifest_dedupe_and_missing(video_dir: Path, tmp_path: Path):
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# archive\n{video_dir / 'a.mp4'}\n\n{video_dir / 'nested' / 'c.mp4'}\n{tmp_path / 'gone.mp4'}\n")
    sources, errors, _ = list_videos(
        [str(video_dir / "*.mp4"), str(manifest), str(video_dir / "a.mp4"), str(tmp_path / "nothing*.mp4")], InputConfig()
    )
    assert names(sources) == ["a.mp4", "b.mp4", "c.mp4", "corrupt.mp4"]
    assert sorted(e.error_type for e in errors) == ["FileNotFoundError", "FileNotFoundError"]
    assert {e.stage for e in errors} == {"list"}


def test_explicit_file_is_taken_whatever_its_suffix(video_dir: Path):
    sources, errors, _ = list_videos([str(video_dir / "notes.txt.bin")], InputConfig())
    assert sources == [] and errors[0].error_type == "FileNotFoundError"
    (video_dir / "clip.bin").write_bytes((video_dir / "a.mp4").read_bytes())
    try:
        sources, errors, _ = list_videos([str(video_dir / "clip.bin")], InputConfig())
        assert names(sources) == ["clip.bin"] and errors == []
    finally:
        (video_dir / "clip.bin").unlink()


def test_fingerprint_changes_with_content_but_id_does_not(tmp_path: Path):
    p = tmp_path / "v.mp4"
    p.write_bytes(b"x" * 10)
    (a,), _, _ = list_videos([str(p)], InputConfig())
    p.write_bytes(b"x" * 11)
    (b,), _, _ = list_videos([str(p)], InputConfig())
    assert a.video_id == b.video_id and a.fingerprint != b.fingerprint


def test_repeated_inputs_and_self_listing_manifests_are_read_once(video_dir: Path, tmp_path: Path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(f"{b}\n{a}\n{video_dir / 'a.mp4'}\n{tmp_path / 'gone.mp4'}\n")
    b.write_text(f"{a}\n{video_dir / 'a.mp4'}\n")
    sources, errors, _ = list_videos([str(a), str(a), str(tmp_path / "gone.mp4")], InputConfig())
    assert names(sources) == ["a.mp4"]
    assert [Path(e.uri).name for e in errors] == ["gone.mp4"]


def test_a_directory_without_videos_is_an_error_not_an_empty_run(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("x")
    sources, errors, _ = list_videos([str(tmp_path / "empty"), str(tmp_path / "docs")], InputConfig())
    assert sources == [] and [e.error_type for e in errors] == ["FileNotFoundError", "FileNotFoundError"]
    assert "no file with a video suffix" in errors[0].message
