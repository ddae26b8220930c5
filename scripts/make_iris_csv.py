#!/usr/bin/env python3
"""Write examples/iris.csv: the 150 iris flowers of scikit-learn's bundled copy as a CSV file of
the kind users have, with a header row and the species as strings.

    python scripts/make_iris_csv.py [--out examples/iris.csv]

The example of reading your own data (`zoo data --csv examples/iris.csv --target species`):
four numeric features and a label column of class names, which the zoo maps to class ids in
sorted order (setosa 0, versicolor 1, virginica 2: scikit-learn's own target ids, so the file
loads to exactly the arrays of `--dataset iris`). Rows keep scikit-learn's order; numbers are
written as Python's shortest round-trip text ("5.1"), so the file is the same on every machine
and reads back bit for bit.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

HEADER = ("sepal_length", "sepal_width", "petal_length", "petal_width", "species")


def iris_csv_text() -> str:
    """The CSV text (header + 150 rows, "\\n" line ends)."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    names = [str(n) for n in bunch.target_names]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for x, t in zip(bunch.data, bunch.target, strict=True):
        w.writerow([repr(float(v)) for v in x] + [names[int(t)]])
    return out.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "examples"
                                        / "iris.csv"))
    args = p.parse_args()
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(iris_csv_text())
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
