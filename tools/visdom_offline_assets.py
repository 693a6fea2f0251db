"""Install the JavaScript, CSS and fonts that Visdom's web page needs from npm, for machines without a CDN.

``python -m visdom.server`` downloads these files from unpkg.com, cdn.plot.ly, d3js.org and cdnjs on its
first start and serves an empty page when it cannot. unpkg serves npm packages, so the same files come
from the npm registry (or a mirror of it) as well; this script fetches each package with ``npm pack``,
copies the file Visdom expects under the name it expects into Visdom's ``static/`` folder and marks the
folder as built for the installed Visdom version, after which the server starts without network access.

    python tools/visdom_offline_assets.py            # into the installed visdom package (make venv runs it)
    python -m visdom.server -port 8097               # then open http://localhost:8097

It does nothing when the folder is already built for the installed Visdom version (``--force`` fetches again).
``--optional`` (what ``make venv`` passes) turns a failure, such as npm not being installed, into a one-line note
and exit status 0: the server then downloads the files from the CDNs on its first start, as it does without zoo.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# (npm package@version, file inside the package, destination under static/): the versions are those of
# visdom/server/build.py, whose URLs are unpkg's paths into these packages.
FILES = (
    [
        ("jquery@3.1.1", "dist/jquery.min.js", "js/jquery.min.js"),
        ("bootstrap@3.3.7", "dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
        ("bootstrap@3.3.7", "dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
        ("react@16.2.0", "umd/react.production.min.js", "js/react-react.min.js"),
        ("react-dom@16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js"),
        ("react-modal@3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js"),
        ("plotly.js-dist-min@2.11.1", "plotly.min.js", "js/plotly-plotly.min.js"),
        ("sjcl@1.0.7", "sjcl.js", "js/sjcl.js"),
        ("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
        ("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"),
        ("d3@3.5.17", "d3.min.js", "js/d3.v3.min.js"),
        ("d3-selection-multi@1.0.1", "build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),
        ("save-svg-as-png@1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
        ("react-resizable@1.4.6", "css/styles.css", "css/react-resizable-styles.css"),
        ("react-grid-layout@0.16.3", "css/styles.css", "css/react-grid-layout-styles.css"),
        ("classnames@2.2.5", "index.js", "fonts/classnames"),
    ]
    + [
        (
            "bootstrap@3.3.7",
            f"dist/fonts/glyphicons-halflings-regular.{ext}",
            f"fonts/glyphicons-halflings-regular.{ext}",
        )
        for ext in ("eot", "woff2", "woff", "ttf", "svg")
    ]
    + [  # build.py's name for the SVG font keeps the URL's fragment
        (
            "bootstrap@3.3.7",
            "dist/fonts/glyphicons-halflings-regular.svg",
            "fonts/glyphicons-halflings-regular.svg#glyphicons_halflingsregular",
        ),
    ]
)
# MathJax 2.7.5 (cdnjs's path kept): build.py fetches these whenever they are missing, even once built.
MATHJAX = ["config/TeX-AMS-MML_HTMLorMML.js", "extensions/Safe.js", "jax/output/SVG/fonts/TeX/fontdata.js",
           "jax/output/SVG/jax.js", "jax/output/SVG/fonts/TeX/Size1/Regular/Main.js", "jax/output/SVG/config.js",
           "MathJax.js"]  # fmt: skip


def _unpack(spec: str, work: Path) -> Path:
    """``npm pack spec`` into ``work`` and extract it; returns the package folder."""
    folder = work / spec.replace("/", "_")
    if folder.is_dir():
        return folder / "package"
    folder.mkdir()
    try:
        out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=folder, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"npm pack {spec} timed out (is the npm registry reachable?)") from None
    if out.returncode != 0:
        raise SystemExit(f"npm pack {spec} failed: {out.stderr.strip()}")
    with tarfile.open(folder / out.stdout.strip().splitlines()[-1]) as tar:
        tar.extractall(folder, filter="data")  # refuses absolute paths, .. and links out of the folder
    return folder / "package"


def _visdom() -> tuple[Path, str]:
    """The installed visdom package's folder and version (as ``visdom.__version__`` reads it), without importing it:
    importing visdom takes seconds, and ``make`` runs this script on every set-up."""
    spec = importlib.util.find_spec("visdom")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("visdom is not installed (pip install 'zoo[visdom]')")
    folder = Path(spec.submodule_search_locations[0])
    version = folder / "VERSION"
    return folder, version.read_text().strip() if version.is_file() else "no_version_file"


def _targets(static: Path) -> list[Path]:
    return [static / dest for _, _, dest in FILES] + [static / "js" / "mathjax" / "2.7.5" / i for i in MATHJAX]


def install(static: Path, version: str, force: bool = False) -> str:
    """Fill ``static`` for Visdom ``version``; what was done, in one line."""
    built = static / "version.built"
    done = built.is_file() and built.read_text().strip() == version and all(t.is_file() for t in _targets(static))
    if done and not force:
        return f"Visdom {version}'s page files are already installed"
    if shutil.which("npm") is None:
        raise SystemExit("npm is not installed (apt install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec, inner, dest in FILES:
            target = static / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_unpack(spec, work) / inner, target)
        mathjax = _unpack("mathjax@2.7.5", work)
        for inner in MATHJAX:
            target = static / "js" / "mathjax" / "2.7.5" / inner
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mathjax / inner, target)
        # build.py also asks for config/Safe.js, which MathJax 2.7.5 does not have (the CDN answers 404):
        # an empty file stops it from asking on every start.
        (static / "js" / "mathjax" / "2.7.5" / "config" / "Safe.js").touch()
    built.write_text(version)
    return f"installed {len(FILES) + len(MATHJAX)} files into {static} for visdom {version}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", type=Path, help="Visdom's static folder (default: the installed package's)")
    parser.add_argument("--force", action="store_true", help="fetch the files again even if they are installed")
    parser.add_argument("--optional", action="store_true", help="on failure print a note and exit 0 (make venv)")
    args = parser.parse_args()
    try:
        folder, version = _visdom()
        print(install(args.static or folder / "static", version, args.force))
    except (SystemExit, OSError, tarfile.TarError) as e:
        if not args.optional or (isinstance(e, SystemExit) and e.code in (None, 0)):
            raise
        why = e.code if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
        print(f"note: Visdom's page files were not installed from npm: {why}. python -m visdom.server will "
              "download them from CDNs instead (run python tools/visdom_offline_assets.py to retry)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
