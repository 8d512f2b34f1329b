"""Render an HTML report in headless Chromium and check the screenshot is not blank.

Proves a report is self-contained and its plots render: the browser runs with networking
features off, so anything fetched from outside would be missing from the picture.

Usage: python benchmarks/report_screenshot.py REPORT.html [-o SHOT.png] [--chromium PATH]
Exit status 0 when the screenshot exists and is not blank, 1 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)  # fmt: skip


def screenshot(report: Path, png: Path, chromium: Path = CHROMIUM, size: str = "1200,2000", timeout: float = 120) -> Path:
    """Write a ``size`` screenshot of ``report`` to ``png`` with headless Chromium; returns ``png``."""
    with tempfile.TemporaryDirectory(prefix="bloodcli-chromium-") as profile:
        command = [str(chromium), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={size}",
                   Path(report).resolve().as_uri()]  # fmt: skip
        subprocess.run(command, check=True, timeout=timeout, capture_output=True)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png


def pixel_std(png: Path) -> float:
    """Standard deviation of the grey levels: about 0 for a blank page."""
    return float(np.asarray(Image.open(png).convert("L"), dtype=np.float64).std())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="screenshot PNG [default: REPORT with .png]")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM)
    parser.add_argument("--size", default="1200,2000", help="window size W,H")
    args = parser.parse_args()
    png = screenshot(args.report, args.output or args.report.with_suffix(".png"), args.chromium, args.size)
    spread = pixel_std(png)
    print(f"{png}: grey-level std {spread:.1f} ({'not blank' if spread > 5 else 'BLANK'})")
    return 0 if spread > 5 else 1


if __name__ == "__main__":
    sys.exit(main())
