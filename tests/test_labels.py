"""Your own data as users have it: a CSV whose label column holds class NAMES (mapped to ids in
sorted order, kept with saved weights, reported by `zoo predict`), integer labels with gaps
(kept as class ids, the empty classes named), ',' ';' or tab delimiters (sniffed; a mixed file
refused), a header row or none (detected; --target then takes a column index), and
examples/iris.csv end to end through `zoo data`, `zoo train`, `zoo predict` and `zoo compare`.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import one_error_line, zoo
from zoo import data
from zoo.cli import main
from zoo.commands.predict import class_report
from zoo.commands.train import read_label_names, write_label_names
from zoo.errors import DataError
from zoo.specs import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
IRIS_CSV = ROOT / "examples" / "iris.csv"

# 12 rows: two features and a label; the names appear out of order and "Zebra" sorts before
# "ant" (sorted() is code-point order: capitals first)
ROWS = [(0.5 * i, (i * 7) % 5, name) for i, name in
        enumerate(["dog", "ant", "Zebra", "dog", "ant", "Zebra"] * 2)]


def _write(path: Path, rows, header=("width", "height", "kind"), delimiter=",") -> Path:
    lines = [delimiter.join(header)] if header else []
    lines += [delimiter.join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- string labels
def test_string_labels_map_to_ids_in_sorted_order(tmp_path):
    t = data.read_csv(_write(tmp_path / "k.csv", ROWS), "kind")
    assert t.label_names == ("Zebra", "ant", "dog") and t.target_name == "kind"
    assert t.y.tolist() == [2, 1, 0, 2, 1, 0] * 2 and t.y.dtype == np.int64
    assert t.feature_names == ("width", "height") and t.header and t.notes == ()
    np.testing.assert_array_equal(t.X, [[r[0], r[1]] for r in ROWS])
    ds = data.load(csv=tmp_path / "k.csv", target="kind")
    assert (ds.task, ds.n_classes, ds.label_names) == ("classification", 3, ("Zebra", "ant", "dog"))
    assert ds.label_mapping() == "0=Zebra, 1=ant, 2=dog"
    assert ds.label_notes() == ["class ids of the labels of column 'kind' (sorted): "
                                "0=Zebra, 1=ant, 2=dog"]
    assert ds.summary()["label_names"] == ["Zebra", "ant", "dog"]


def test_two_class_names_are_a_binary_task(tmp_path):
    rows = [(i, i % 3, "yes" if i % 2 else "no") for i in range(10)]
    ds = data.load(csv=_write(tmp_path / "b.csv", rows), target="kind")
    assert (ds.task, ds.n_outputs, ds.label_names) == ("binary", 1, ("no", "yes"))


def test_label_column_mixing_numbers_and_strings_is_read_as_strings(tmp_path):
    rows = [(i, i % 4, lab) for i, lab in enumerate(["0", "1", "NA", "10", "2", "1"] * 2)]
    t = data.read_csv(_write(tmp_path / "m.csv", rows), "kind")
    # all strings, sorted as strings: "10" before "2", the marker "NA" a class of its own
    assert t.label_names == ("0", "1", "10", "2", "NA")
    assert t.y.tolist() == [0, 1, 4, 2, 3, 1] * 2
    assert t.notes == ("the label column 'kind' mixes numbers and strings (10 numeric labels "
                       "such as '0', 2 strings such as 'NA'): every label was read as a string, "
                       "a class name; check for typos and missing-value markers (such as 'NA' "
                       "or '?'), which become classes too.",)
    assert data.load(csv=tmp_path / "m.csv", target="kind").label_notes()[1] == t.notes[0]


def test_empty_cells_are_named(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("a,b,kind\n1,2,x\n3,4,\n")
    with pytest.raises(DataError, match=r"e\.csv: line 3 has no label \(column 'kind' is "
                                        r"empty\); drop the rows without a label or fill them "
                                        r"in\.$"):
        data.read_csv(p, "kind")
    p.write_text("a,b,kind\n1,2,x\n3,,y\n")
    with pytest.raises(DataError, match=r"e\.csv: line 3, column 'b' is empty; every feature cell "
                                        r"must hold a number: fill in or drop the rows with "
                                        r"missing values\.$"):
        data.read_csv(p, "kind")
    p.write_text("a,b,kind\n1,2,x\n3,dog,y\n")   # a string FEATURE stays an error
    with pytest.raises(DataError, match=r"line 3, column 'b' holds 'dog', which is not a "
                                        r"number; every cell must be numeric\.$"):
        data.read_csv(p, "kind")


# ----------------------------------------------------------------------------- delimiters
@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_delimiters_read_the_same_table(tmp_path, delimiter):
    t = data.read_csv(_write(tmp_path / "d.csv", ROWS, delimiter=delimiter), "kind")
    ref = data.read_csv(_write(tmp_path / "ref.csv", ROWS), "kind")
    assert t.delimiter == delimiter
    np.testing.assert_array_equal(t.X, ref.X)
    np.testing.assert_array_equal(t.y, ref.y)
    assert (t.feature_names, t.label_names) == (ref.feature_names, ref.label_names)


def test_sniffer_picks_the_delimiter_among_several(tmp_path):
    # a ',' file whose quoted labels hold ';', and a ';' file whose cells hold decimal commas
    p = tmp_path / "q.csv"
    p.write_text('a,b,kind\n1,2,"x;y"\n3,4,z\n5,6,"x;y"\n')
    t = data.read_csv(p, "kind")
    assert (t.delimiter, t.label_names, t.y.tolist()) == (",", ("x;y", "z"), [0, 1, 0])
    p.write_text("a;b;kind\n5,1;3,5;x\n6,2;2,9;y\n")
    with pytest.raises(DataError, match=r"line 2, column 'a' holds '5,1', which is not a number "
                                        r"\(a decimal comma\? write '5\.1'\); every cell must be "
                                        r"numeric\.$"):
        data.read_csv(p, "kind")


def test_mixed_delimiters_are_refused(tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_text("a,b,kind\n1,2,x\n3;4;y\n")
    message = (f"{p}: mixes delimiters: line 1 separates its fields with ',' but line 3 with "
               "';'; use one delimiter (',', ';' or tab) throughout the file.")
    with pytest.raises(DataError) as exc:
        data.read_csv(p, "kind")
    assert str(exc.value) == message
    assert one_error_line(zoo("data", "--csv", p, "--target", "kind")) == \
        f"zoo data: error: {message}"


# ----------------------------------------------------------------------------- header
def test_header_detected_or_not(tmp_path):
    with_header = data.read_csv(_write(tmp_path / "h.csv", ROWS), "kind")
    # without a header the first row is data: its string label sits in a string column
    none = data.read_csv(_write(tmp_path / "n.csv", ROWS, header=None), "-1")
    assert with_header.header and not none.header
    assert none.feature_names == ("column 0", "column 1") and none.target_name == "column 2"
    assert len(none.X) == len(with_header.X) == 12
    np.testing.assert_array_equal(none.y, with_header.y)
    # an index works with a header too (negative: from the end)
    assert data.read_csv(tmp_path / "h.csv", "-1").y.tolist() == with_header.y.tolist()
    first = data.read_csv(_write(tmp_path / "f.csv", [(0, 1.5, 2.5), (1, 3.5, 4.5)]), 0)
    assert (first.target_name, first.feature_names, first.y.tolist()) == \
        ("width", ("height", "kind"), [0.0, 1.0])
    # numeric labels in a headerless file: the first row is data as well
    numeric = data.read_csv(_write(tmp_path / "num.csv", [(1, 2, 0), (3, 4, 1)], header=None), 2)
    assert not numeric.header and numeric.y.tolist() == [0.0, 1.0]


def test_target_name_needs_a_header(tmp_path):
    p = _write(tmp_path / "n.csv", ROWS, header=None)
    with pytest.raises(DataError) as exc:
        data.read_csv(p, "kind")
    assert str(exc.value) == (f"{p}: has no header row (line 1 is data: 0.0, 0, dog), so "
                              "--target 'kind' names no column; pass the label column's index "
                              "instead (0 for the first, -1 for the last of its 3 columns) or "
                              "add a header row.")
    with pytest.raises(DataError, match=r"--target 3 is not a column of this file: it has 3 "
                                        r"columns \(indices 0\.\.2, or -1 for the last\)\.$"):
        data.read_csv(p, "3")


# ----------------------------------------------------------------------------- gaps
GAP_ROWS = [(i * 0.1, (i * 3) % 7, (0, 2, 5)[i % 3]) for i in range(30)]
GAP_NOTE = ("classes 1, 3, 4 of 0..5 have no samples (the labels present are 0, 2, 5): the "
            "labels are kept as class ids, so the model has 6 outputs, 3 of them for classes it "
            "never sees; renumber the labels 0..2 to leave them out.")


def test_integer_labels_with_gaps_keep_their_ids(tmp_path, capsys):
    p = _write(tmp_path / "gaps.csv", GAP_ROWS, header=("a", "b", "label"))
    ds = data.load(csv=p, target="label")
    assert (ds.task, ds.n_outputs, ds.label_names) == ("classification", 6, None)
    assert sorted(set(ds.y_train.tolist()) | set(ds.y_test.tolist())) == [0, 2, 5]
    assert ds.empty_classes() == (1, 3, 4)
    assert ds.label_notes() == [GAP_NOTE]
    assert data.empty_classes_message([1], 3) == (
        "class 1 of 0..2 has no samples (the labels present are 0, 2): the labels are kept as "
        "class ids, so the model has 3 outputs, 1 of them for a class it never sees; renumber "
        "the labels 0..1 to leave it out.")
    assert main(["data", "--csv", str(p), "--target", "label", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["classes"], s["empty_classes"], s["notes"]) == (6, [1, 3, 4], [GAP_NOTE])
    assert main(["data", "--csv", str(p), "--target", "label"]) == 0
    assert f"note: {GAP_NOTE}" in capsys.readouterr().out


def test_gaps_are_noted_by_train_and_compare(tmp_path):
    p = _write(tmp_path / "gaps.csv", GAP_ROWS, header=("a", "b", "label"))
    r = zoo("train", "softmax", "--framework", "torch", "--csv", p, "--target", "label",
            "--epochs", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"note: {GAP_NOTE}"
    r = zoo("compare", "softmax", "--csv", p, "--target", "label", "--frameworks", "numpy",
            "--epochs", "1", "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert GAP_NOTE in json.loads((tmp_path / "r.json").read_text())["notes"]


# ----------------------------------------------------------------------------- saved names
def test_label_names_kept_in_the_sidecar(tmp_path):
    side = tmp_path / "w.pt.json"
    side.write_text(json.dumps({"format": "torch", "dtype": "float32"}))
    assert read_label_names(tmp_path / "w.pt") is None
    write_label_names(tmp_path / "w.pt", ("a", "b"), "kind")
    doc = json.loads(side.read_text())
    assert doc["labels"] == {"names": ["a", "b"], "column": "kind"} and doc["format"] == "torch"
    assert read_label_names(tmp_path / "w.pt") == ("a", "b")
    assert [f.name for f in tmp_path.iterdir()] == ["w.pt.json"]  # no temporary file left
    side.write_text(json.dumps({"labels": {"names": "a"}}))
    with pytest.raises(DataError, match=r"has a \"labels\" entry without a list of class names"):
        read_label_names(tmp_path / "w.pt")


def test_predict_scores_test_labels_by_name(tmp_path):
    """A model trained on classes (a, b, c) predicting a CSV that holds only a and c, whose ids
    are therefore 0 and 1: the labels are matched by name (c is the model's class 2)."""
    rows = [(i, i % 3, "ac"[i % 2]) for i in range(10)]
    ds = data.load(csv=_write(tmp_path / "ac.csv", rows), target="kind")
    assert ds.label_names == ("a", "c")
    y = ds.y_test                                   # 0 = a, 1 = c
    model_ids = np.where(y == 0, 0, 2)              # the right answers in the model's ids
    pred = np.eye(3)[model_ids]
    spec = ModelSpec("softmax", 2, 3)
    doc = class_report(spec, pred, ds, ("a", "b", "c"), "w.pt")
    assert doc["test_accuracy"] == 1.0
    assert doc["predicted_classes"] == [ds.label_names[i] for i in y]
    pred[0] = np.eye(3)[1]                          # one wrong answer: b
    assert class_report(spec, pred, ds, ("a", "b", "c"), "w.pt")["test_accuracy"] == \
        pytest.approx(1 - 1 / len(y))
    doc = class_report(spec, np.eye(3)[model_ids], ds, ("a", "b", "z"), "w.pt")  # c unseen
    assert doc["test_accuracy"] == pytest.approx(float(np.mean(y == 0)))
    assert doc["notes"] == ["the test labels hold 'c', which the model was not trained on (its "
                            "classes: a, b, z); those samples count as wrong predictions."]


# ----------------------------------------------------------------------------- iris.csv
def test_iris_csv_is_the_bundled_iris():
    text = IRIS_CSV.read_text()
    assert text.splitlines()[0] == "sepal_length,sepal_width,petal_length,petal_width,species"
    assert len(text.splitlines()) == 151
    spec = importlib.util.spec_from_file_location("make_iris_csv",
                                                  ROOT / "scripts" / "make_iris_csv.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.iris_csv_text() == text          # reproducible byte for byte
    own, named = data.load(csv=IRIS_CSV, target="species"), data.load("iris")
    assert own.label_names == ("setosa", "versicolor", "virginica")
    for part in ("X_train", "X_test", "y_train", "y_test"):
        np.testing.assert_array_equal(getattr(own, part), getattr(named, part))


def test_iris_csv_data_prints_the_mapping(capsys):
    assert main(["data", "--csv", str(IRIS_CSV), "--target", "species"]) == 0
    out = capsys.readouterr().out
    assert "species: 0=setosa, 1=versicolor, 2=virginica" in out
    assert "40 40 40" in out and "10 10 10" in out


def test_iris_csv_train_and_predict_with_names(tmp_path):
    w = tmp_path / "iris.pt"
    r = zoo("train", "softmax", "--framework", "torch", "--csv", IRIS_CSV, "--target",
            "species", "--epochs", "20", "--save", w)
    assert r.returncode == 0, r.stderr
    assert "note: class ids of the labels of column 'species' (sorted): 0=setosa, " \
           "1=versicolor, 2=virginica" in r.stdout
    acc = float(re.search(r"test accuracy (\d\.\d+)", r.stdout).group(1))
    assert acc >= 0.9, r.stdout                      # measured 0.9667 (29 of 30)
    assert read_label_names(w) == ("setosa", "versicolor", "virginica")
    r = zoo("predict", w, "--csv", IRIS_CSV, "--target", "species")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["label_names"] == ["setosa", "versicolor", "virginica"]
    assert len(doc["predicted_classes"]) == 30
    assert set(doc["predicted_classes"]) == {"setosa", "versicolor", "virginica"}
    assert doc["predicted_classes"] == [doc["label_names"][int(np.argmax(p))]
                                        for p in doc["predictions"]]
    assert abs(doc["test_accuracy"] - acc) <= 5e-5   # the same weights on the same split
    r = zoo("predict", w, "--csv", IRIS_CSV, "--target", "species", "--json", tmp_path / "p.json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"wrote {tmp_path / 'p.json'} (30 predictions, torch softmax; test " \
                       f"accuracy {doc['test_accuracy']:.4f})"
    assert re.fullmatch(r"predicted classes: setosa \d+, versicolor \d+, virginica \d+", lines[1])
    # converted weights keep the names, and predict with them
    r = zoo("convert", w, tmp_path / "iris.npz")
    assert r.returncode == 0, r.stderr
    assert read_label_names(tmp_path / "iris.npz") == ("setosa", "versicolor", "virginica")
    r = zoo("predict", tmp_path / "iris.npz", "--csv", IRIS_CSV, "--target", "species")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predicted_classes"] == doc["predicted_classes"]


def test_iris_csv_compare_reports_the_mapping(tmp_path):
    r = zoo("compare", "softmax", "--csv", IRIS_CSV, "--target", "species", "--frameworks",
            "numpy,torch", "--epochs", "2", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    mapping = ("class ids of the labels of column 'species' (sorted): 0=setosa, 1=versicolor, "
               "2=virginica")
    assert mapping in json.loads((tmp_path / "run" / "report.json").read_text())["notes"]
    assert f"- {mapping}" in (tmp_path / "run" / "summary.md").read_text()
    assert mapping in r.stdout
