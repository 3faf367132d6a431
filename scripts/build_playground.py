#!/usr/bin/env python3
"""Bundle the inspector's playground page with the published JS SDK into package data (works offline).

    python scripts/build_playground.py            # writes mock_server/inspector/static/playground.bundle.js
    python scripts/build_playground.py --check    # exit 1 when the committed bundle is not a fresh build

Input: mock_server/inspector/src/playground.js and the locked packages in tests/js/node_modules (run `npm ci`
in tests/js first; @reactor-team/js-sdk 2.9.0, esbuild 0.28.2). Output: the minified bundle and
playground.licenses.json, which names every bundled package with its version and licence (all MIT today)
and the esbuild version. The build is deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JS_DIR = REPO / "tests" / "js"
NODE_MODULES = JS_DIR / "node_modules"
ENTRY = REPO / "mock_server" / "inspector" / "src" / "playground.js"
STATIC = REPO / "mock_server" / "inspector" / "static"
BUNDLE = "playground.bundle.js"
LICENSES = "playground.licenses.json"
SDK = "@reactor-team/js-sdk"
ALLOWED_LICENSES = {"MIT", "ISC", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause"}

# esbuild through its JS API (the package's own binary), run from the repository root so that the metafile's
# input paths are relative and the output holds no machine-specific path.
_BUILD_JS = """
const esbuild = require(process.argv[1]);
esbuild.build({
  entryPoints: [process.argv[2]], outfile: process.argv[3], bundle: true, format: "iife", platform: "browser",
  target: ["chrome110", "firefox110", "safari16"], minify: true, legalComments: "eof", metafile: true,
  define: { "process.env.NODE_ENV": '"production"' }, nodePaths: [process.argv[4]], logLevel: "warning",
  banner: { js: "/* helios-mock playground: src/playground.js + @reactor-team/js-sdk, bundled by "
    + "scripts/build_playground.py (licences: playground.licenses.json) */" },
}).then((r) => process.stdout.write(
  JSON.stringify({ inputs: Object.keys(r.metafile.inputs), version: esbuild.version })));
"""


def _package_of(input_path: str) -> Path | None:
    """The package directory of a bundled input (`tests/js/node_modules/@scope/name/...`), or None."""
    if "node_modules/" not in input_path:
        return None
    rest = input_path.rsplit("node_modules/", 1)[1].split("/")
    name = "/".join(rest[:2]) if rest[0].startswith("@") else rest[0]
    return NODE_MODULES / name


def _license_text(package_dir: Path) -> str | None:
    """The package's own licence file, kept with the bundle (None: it ships none, e.g. the SDK)."""
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt", "license", "LICENCE"):
        if (package_dir / name).is_file():
            return (package_dir / name).read_text()
    return None


def build(out_dir: Path) -> None:
    """Bundle into `out_dir` (BUNDLE and LICENSES)."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / SDK / "package.json").exists():
        raise SystemExit(
            "node and tests/js/node_modules are needed: install Node 20, then run `npm ci` in tests/js"
        )
    esbuild = str(NODE_MODULES / "esbuild")
    proc = subprocess.run(
        [
            node,
            "-e",
            _BUILD_JS,
            esbuild,
            str(ENTRY.relative_to(REPO)),
            str(out_dir / BUNDLE),
            str(NODE_MODULES),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise SystemExit(f"esbuild failed ({proc.returncode}):\n{proc.stderr}")
    meta = json.loads(proc.stdout)
    packages = {}
    for path in meta["inputs"]:
        package_dir = _package_of(path)
        if package_dir is not None:
            info = json.loads((package_dir / "package.json").read_text())
            packages[info["name"]] = {
                "version": info["version"],
                "license": info.get("license"),
                "author": info.get("author"),
                "license_text": _license_text(package_dir),
            }
    bad = {name: p["license"] for name, p in packages.items() if p["license"] not in ALLOWED_LICENSES}
    if bad:
        raise SystemExit(f"bundled packages with a licence not on the allowed list: {bad}")
    licenses = {
        "bundle": BUNDLE,
        "source": str(ENTRY.relative_to(REPO)),
        "esbuild": meta["version"],
        "packages": dict(sorted(packages.items())),
    }
    (out_dir / LICENSES).write_text(json.dumps(licenses, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the committed files")
    args = parser.parse_args()
    if not args.check:
        build(STATIC)
        print(f"wrote {STATIC / BUNDLE} ({(STATIC / BUNDLE).stat().st_size} bytes) and {LICENSES}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        stale = [n for n in (BUNDLE, LICENSES) if (Path(tmp) / n).read_bytes() != (STATIC / n).read_bytes()]
    if stale:
        print(f"stale: {', '.join(stale)}; run python scripts/build_playground.py", file=sys.stderr)
        return 1
    print("the committed playground bundle matches a fresh build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
