"""What verifying an artifact at open costs: sha256 in place, copy, and copy + sha256.

    .venv/bin/python -m benchmarks.artifact_verify [--mib 2048] [--rounds 3]

Opening an artifact copies every listed file into a private folder (TMPDIR) and hashes
the bytes while copying (irgraph.artifact.open_artifact; README "Trust model"). This
times, on one file of --mib MiB of random bytes in an artifact folder (page cache warm:
the file was just written): sha256 of the file in place (what `read_manifest` does),
a plain copy (shutil.copyfile), and open_artifact itself (copy + sha256). Prints MB/s
(10^6 bytes per second), the median of --rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from irgraph.artifact import FORMAT, FORMAT_VERSION, MANIFEST, open_artifact, sha256


def _artifact(folder: Path, mib: int) -> Path:
    data = folder / "weights.bin"
    with open(data, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(mib):
            f.write(block)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "files": {"weights.bin": sha256(data)},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "art"
        folder.mkdir()
        data = _artifact(folder, args.mib)
        size = data.stat().st_size

        def timed(fn) -> float:
            times = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return size / statistics.median(times) / 1e6

        def copy() -> None:
            shutil.copyfile(data, Path(tmp) / "copy.bin")
            (Path(tmp) / "copy.bin").unlink()

        def verified_open() -> None:
            with open_artifact(folder):
                pass

        rates = {
            "sha256 in place": timed(lambda: hashlib.sha256(data.read_bytes()).hexdigest()),
            "copy": timed(copy),
            "open_artifact (copy + sha256)": timed(verified_open),
        }
    print(f"{size / 2**20:.0f} MiB file, median of {args.rounds}:")
    for name, rate in rates.items():
        print(f"  {name:32s} {rate:7.0f} MB/s   ({size / rate / 1e6:.2f} s)")


if __name__ == "__main__":
    main()
