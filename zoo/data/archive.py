"""Dataset archives (``.tar.gz`` and other tar files) extracted once into zoo's data cache, each member checked: no
path out of the folder, no link or device file, and no more than the extraction's budget of bytes and files."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from zoo.errors import DataError
from zoo.utils import checks
from zoo.utils.checks import Invalid
from zoo.utils.files import remove_stale_temp_files, sha256_file, temp_path_for

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


def env_number(name: str, default: float) -> float:
    """The environment variable ``name`` as a finite number of at least 0 (``default`` when unset or empty)."""
    text = os.environ.get(name, "").strip()
    try:
        value: object = float(text) if text else default
    except ValueError:
        value = text
    return checks.number_in(name, value, 0)


def data_cache_dir() -> Path:
    """zoo's data cache: ``ZOO_DATA_DIR``, default ``ZOO_CACHE_DIR/data`` (``~/.cache/zoo/data``)."""
    env = os.environ.get("ZOO_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from zoo.pretrained.cache import cache_dir

    return cache_dir() / "data"


def is_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file with a tar archive's name (``.tar.gz``, ``.tgz``, ``.tar`` ...)."""
    p = Path(path)
    return p.name.lower().endswith(ARCHIVE_SUFFIXES) and p.is_file()


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    # Once per process for an unchanged file: `zoo train` extracts to find the classes, then to read the images.
    return sha256_file(path)


class _Members:
    """The check of each member before it is extracted: its path, its kind, and the extraction's budget so far,
    ``ZOO_EXTRACT_MAX_GB`` GiB (default 16: ImageNet's 140 needs more) and ``ZOO_EXTRACT_MAX_FILES``."""

    def __init__(self) -> None:
        self.count = self.size = 0
        self.max_size = int(env_number("ZOO_EXTRACT_MAX_GB", 16) * 2**30)
        self.max_count = int(env_number("ZOO_EXTRACT_MAX_FILES", 2_000_000))  # ImageNet has 1.33 million files

    def __call__(self, member: tarfile.TarInfo, _: str) -> tarfile.TarInfo:
        self.count += 1
        self.size += member.size
        name = f"member {self.count}"  # counted from 1: an empty name is no name to give
        path = PurePosixPath(member.name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts:
            raise Invalid(name, member.name, "is an absolute path, or one leaving the folder")
        if not (member.isfile() or member.isdir()):
            kind = "link" if (member.issym() or member.islnk()) else "special file"
            raise Invalid(name, member.name, f"is a {kind}; a dataset archive may hold only folders and files")
        if member.isfile() and not path.parts:
            raise Invalid(name, member.name, "is a file without a name")
        if self.count > self.max_count or self.size > self.max_size:
            what = f"{self.max_count:,} files" if self.count > self.max_count else f"{self.max_size / 2**30:g} GiB"
            hint = "raise ZOO_EXTRACT_MAX_FILES or ZOO_EXTRACT_MAX_GB if you trust the archive"
            raise Invalid(name, member.name, f"takes the extraction past its budget of {what}", hint=hint)
        # As tarfile's "data" filter: no set-uid bits or group/other write, no owner taken from the archive.
        safe = copy.copy(member)
        safe.mode = 0o755 if member.isdir() else 0o644
        safe.uid = safe.gid = None  # type: ignore[assignment]
        safe.uname = safe.gname = None  # type: ignore[assignment]
        return safe


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None) -> Path:
    """Extract ``archive`` once into ``dest`` (default ``data_cache_dir()/<name>-<sha256[:12]>``), renamed in place."""
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    if dest is None:
        st = archive.stat()
        suffix = next((s for s in ARCHIVE_SUFFIXES if archive.name.lower().endswith(s)), "")
        stem = archive.name[: len(archive.name) - len(suffix)]
        dest = data_cache_dir() / f"{stem}-{_sha256(archive.resolve(), st.st_size, st.st_mtime_ns)[:12]}"
    dest = Path(dest).expanduser()
    if dest.is_dir():
        return dest
    members = _Members()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(dest.parent)  # extractions of dead processes
    tmp = temp_path_for(dest, ".part")
    shutil.rmtree(tmp, ignore_errors=True)  # a dead process's of the same pid and thread
    tmp.mkdir()
    try:
        # One pass over the stream, each member checked as it comes (tarfile's "data" filter resolves two real paths
        # per member: 5x slower on 60,000 small files, and nothing more to find in a new folder without links).
        with checks.reported(str(archive), DataError), tarfile.open(archive, "r|*") as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (and 3.10.12): the filter runs on each member
                tar.extractall(tmp, filter=members)
            else:
                for member in tar:
                    tar.extract(members(member, str(tmp)), tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process finished the same extraction first: use theirs
                raise
    except tarfile.TarError as e:
        raise DataError(f"{archive} is not a readable tar archive ({e}); give a .tar.gz, .tgz or .tar file") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
