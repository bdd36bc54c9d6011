"""The README's pictures of the report: the gallery and one identity, taken by headless
Chromium from a report folder (e.g. the demo's).

    .venv/bin/python docs/report_shots.py demo/report docs
"""
import io
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_report_browser import chrome  # noqa: E402


def shoot(report: Path, out: Path, identity: int = 3) -> list[Path]:
    d = chrome(1280, 860)
    try:
        shots = []
        for name, hash_ in (("report.png", ""), ("report_identity.png", f"#identity-{identity}")):
            d.get((report / "index.html").resolve().as_uri() + hash_)
            if hash_:  # past the neutral frames, to the title and the first pain frames
                d.execute_script("document.getElementById('identity-title').scrollIntoView()")
            time.sleep(1.0)  # lazy images
            im = Image.open(io.BytesIO(d.get_screenshot_as_png())).convert("RGB")
            path = out / name
            im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
            shots.append(path)
        return shots
    finally:
        d.quit()


if __name__ == "__main__":
    for p in shoot(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"wrote {p}")
