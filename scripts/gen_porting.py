"""Write docs/porting.md from zoo/porting.py, docs/examples/ and the framework packages' source.

    python scripts/gen_porting.py          # (re)write docs/porting.md
    python scripts/gen_porting.py --check  # exit 1 if docs/porting.md differs from a fresh one

Imports no framework (the code is cut out of the source files with `ast`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.porting import DOC, render  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the document is out of date")
    args = parser.parse_args(argv)
    path = ROOT / DOC
    text = render(ROOT)
    if args.check:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"{DOC} is out of date: run python scripts/gen_porting.py", file=sys.stderr)
            return 1
        print(f"{DOC} is up to date")
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {DOC} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
