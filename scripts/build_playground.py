#!/usr/bin/env python3
"""Bundle the inspector's page code with its npm packages into package data (the pages work offline).

    python scripts/build_playground.py            # writes the bundles into mock_server/inspector/static/
    python scripts/build_playground.py --check    # exit 1 when a committed bundle is not a fresh build

Two bundles, from mock_server/inspector/src/ and the locked packages in tests/js/node_modules (run `npm ci`
in tests/js first; esbuild 0.28.2):
* playground.bundle.js — playground.js with the published @reactor-team/js-sdk 2.9.0 (the /playground page);
* panels.bundle.js — panels.js with hls.js 1.6.15: the Faults and Clip panels of the timeline and playground.
Each has a `<name>.licenses.json` naming every bundled package with its version and licence (all allowed
licences; hls.js is Apache-2.0) and the esbuild version. The build is deterministic: same inputs, same bytes.
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
SRC = REPO / "mock_server" / "inspector" / "src"
STATIC = REPO / "mock_server" / "inspector" / "static"
BUNDLES = {  # name -> what the banner says is in it
    "playground": "src/playground.js + @reactor-team/js-sdk",
    "panels": "src/panels.js + hls.js",
}
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
  banner: { js: process.argv[5] },
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


def outputs(name: str) -> tuple[str, str]:
    """The bundle's file and its licence record's file."""
    return f"{name}.bundle.js", f"{name}.licenses.json"


def build(out_dir: Path) -> None:
    """Every bundle into `out_dir`."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / SDK / "package.json").exists():
        raise SystemExit(
            "node and tests/js/node_modules are needed: install Node 20, then run `npm ci` in tests/js"
        )
    for name in BUNDLES:
        build_one(node, name, out_dir)


def build_one(node: str, name: str, out_dir: Path) -> None:
    """One bundle and its licence record into `out_dir`."""
    bundle, licenses_file = outputs(name)
    entry = SRC / f"{name}.js"
    banner = (
        f"/* helios-mock inspector: {BUNDLES[name]}, bundled by scripts/build_playground.py "
        f"(licences: {licenses_file}) */"
    )
    proc = subprocess.run(
        [
            node,
            "-e",
            _BUILD_JS,
            str(NODE_MODULES / "esbuild"),
            str(entry.relative_to(REPO)),
            str(out_dir / bundle),
            str(NODE_MODULES),
            banner,
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
        "bundle": bundle,
        "source": str(entry.relative_to(REPO)),
        "esbuild": meta["version"],
        "packages": dict(sorted(packages.items())),
    }
    (out_dir / licenses_file).write_text(json.dumps(licenses, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the committed files")
    args = parser.parse_args()
    files = [file for name in BUNDLES for file in outputs(name)]
    if not args.check:
        build(STATIC)
        for file in files:
            print(f"wrote {STATIC / file} ({(STATIC / file).stat().st_size} bytes)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        stale = [
            n
            for n in files
            if not (STATIC / n).exists() or (Path(tmp) / n).read_bytes() != (STATIC / n).read_bytes()
        ]
    if stale:
        print(f"stale: {', '.join(stale)}; run python scripts/build_playground.py", file=sys.stderr)
        return 1
    print("the committed playground bundle matches a fresh build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
