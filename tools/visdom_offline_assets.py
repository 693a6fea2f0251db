"""Install the JavaScript, CSS and fonts that Visdom's web page needs from npm, for machines without a CDN.

``python -m visdom.server`` downloads these files from unpkg.com, cdn.plot.ly, d3js.org and cdnjs on its
first start and serves an empty page when it cannot. unpkg serves npm packages, so the same files come
from the npm registry (or a mirror of it) as well; this script fetches each package with ``npm pack``,
copies the file Visdom expects under the name it expects into Visdom's ``static/`` folder and marks the
folder as built for the installed Visdom version, after which the server starts without network access.

    python tools/visdom_offline_assets.py            # into the installed visdom package
    python -m visdom.server -port 8097               # then open http://localhost:8097
"""

from __future__ import annotations

import argparse
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
    out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=folder, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"npm pack {spec} failed: {out.stderr.strip()}")
    with tarfile.open(folder / out.stdout.strip().splitlines()[-1]) as tar:
        tar.extractall(folder, filter="data")  # refuses absolute paths, .. and links out of the folder
    return folder / "package"


def main() -> int:
    import visdom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", type=Path, default=Path(visdom.__file__).parent / "static",
                        help="Visdom's static folder (default: the installed package's)")  # fmt: skip
    args = parser.parse_args()
    if shutil.which("npm") is None:
        raise SystemExit("npm is needed (apt install npm); it fetches the files from the npm registry")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec, inner, dest in FILES:
            target = args.static / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_unpack(spec, work) / inner, target)
        mathjax = _unpack("mathjax@2.7.5", work)
        for inner in MATHJAX:
            target = args.static / "js" / "mathjax" / "2.7.5" / inner
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mathjax / inner, target)
        # build.py also asks for config/Safe.js, which MathJax 2.7.5 does not have (the CDN answers 404):
        # an empty file stops it from asking on every start.
        (args.static / "js" / "mathjax" / "2.7.5" / "config" / "Safe.js").touch()
    (args.static / "version.built").write_text(visdom.__version__)
    print(f"installed {len(FILES) + len(MATHJAX)} files into {args.static} for visdom {visdom.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
