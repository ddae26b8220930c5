"""Reports of a comparison: the table (rich), the JSON file, two plots and a Markdown summary.

Files are written atomically (a temporary file, then a rename) and an existing report is
never overwritten unless `force` is given.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from zoo.compare import Comparison
from zoo.errors import ConfigError

REPORT_FILES = ("report.json", "loss_curves.png", "loss_diff.png", "summary.md")


def _fmt(x: float | None, spec: str = ".2e") -> str:
    if x is None:
        return "none"
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return format(x, spec)


def table_rows(comp: Comparison) -> list[list[str]]:
    rows = []
    for name, r in comp.results.items():
        metric = r.metrics.get(r.test_metric_name)
        rows.append([
            name + (" (ref)" if name == comp.reference else ""),
            _fmt(float(r.history.losses[-1]), ".6f") if len(r.history.losses) else "-",
            f"{r.test_metric_name} {_fmt(metric, '.4f')}",
            _fmt(r.seconds_per_epoch, ".4f"),
            _fmt(r.max_loss_diff),
            _fmt(r.max_weight_diff),
            _fmt(r.first_divergent_step, "d") if r.first_divergent_step is not None else "none",
        ])
    return rows


HEADERS = ["framework", "final loss", "test metric", "s/epoch", "max loss diff",
           "max weight diff", "first divergent step"]


def print_table(comp: Comparison, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    atol, rtol = comp.tolerance
    t = Table(title=f"{comp.model.name} on {comp.dataset}: {comp.train.optimizer.name} "
                    f"lr {comp.train.optimizer.lr:g}, {comp.train.epochs} epochs, batch "
                    f"{comp.train.batch_size}, {comp.train.dtype}",
              caption=f"differences against {comp.reference}; tolerance {atol:g} + {rtol:g}*|ref|")
    for h in HEADERS:
        t.add_column(h, justify="left" if h == "framework" else "right")
    for row in table_rows(comp):
        t.add_row(*row)
    console.print(t)
    for note in comp.notes:
        console.print(f"note: {note}")
    for d in comp.diagnoses.values():
        console.print(f"diagnosis: {d.summary()}", markup=False)


def markdown(comp: Comparison) -> str:
    atol, rtol = comp.tolerance
    lines = [f"# {comp.model.name} on {comp.dataset}", "",
             f"Optimizer {comp.train.optimizer.name} (lr {comp.train.optimizer.lr:g}), "
             f"{comp.train.epochs} epochs of batch {comp.train.batch_size}, {comp.train.dtype}, "
             f"seed {comp.train.seed}. Reference: **{comp.reference}**; tolerance "
             f"{atol:g} + {rtol:g}·|ref|." + (f" Split: {comp.split}." if comp.split else ""), "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(comp)]
    diverged = [n for n, r in comp.results.items() if r.first_divergent_step is not None]
    lines.append("")
    if diverged:
        lines.append("Diverged beyond tolerance: " + ", ".join(
            f"{n} at step {comp.results[n].first_divergent_step}" for n in diverged) + ".")
    else:
        lines.append("Every framework agrees with the reference at every step within tolerance.")
    lines += [f"- {n}" for n in comp.notes]
    if comp.diagnoses:
        lines += ["", "## Diagnosis", ""] + [f"- {d.summary()}" for d in comp.diagnoses.values()]
    lines += ["", "![loss curves](loss_curves.png)", "", "![differences](loss_diff.png)", ""]
    return "\n".join(lines)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the report private to its writer
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                          "pass --force to overwrite, or choose another --out/--json path.")


def write_json(comp: Comparison, path: Path) -> None:
    text = json.dumps(comp.to_json(), indent=1)
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def preload() -> None:
    """Import the plots' matplotlib (Agg) now: the CLI does it in a thread once a worker is
    done, while the others still train (0.36 s of the report's time, docs/benchmarks.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def plot(comp: Comparison, curves_path: Path, diff_path: Path) -> None:
    preload()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    styles = ["-", "--", ":", "-.", (0, (3, 1, 1, 1))]
    for i, (name, r) in enumerate(comp.results.items()):
        ax.plot(np.arange(len(r.history.losses)), r.history.losses, linestyle=styles[i % 5],
                linewidth=1.5, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("mini-batch loss")
    ax.set_title(f"{comp.model.name} on {comp.dataset}: loss per step")
    ax.legend()
    fig.tight_layout()
    _atomic_write(curves_path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)

    _atomic_write(diff_path, lambda tmp: _diff_figure(comp, plt).savefig(tmp, dpi=110,
                                                                          format="png"))
    plt.close("all")


def _diff_figure(comp: Comparison, plt):
    """Two panels against the reference, one colour per framework: |loss difference| per step
    and the largest |weight difference| after each step, on log axes. Exactly equal values sit
    on a grey line marked "0"; a dotted vertical line marks a framework's first divergent step."""
    atol, _ = comp.tolerance
    others = [(n, r) for n, r in comp.results.items() if n != comp.reference]
    values = [d for _, r in others for d in (r.loss_diff, r.weight_diff) if d is not None and len(d)]
    positive = np.concatenate([d[d > 0] for d in values]) if values else np.zeros(0)
    top = max(atol, float(positive.max()) if len(positive) else atol)
    low = float(positive.min()) if len(positive) else atol * 1e-3
    floor = 10.0 ** (np.floor(np.log10(min(low, atol * 1e-3))) - 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    panels = (("loss_diff", "|loss difference|"), ("weight_diff", "max |weight difference|"))
    for ax, (attr, label) in zip(axes, panels, strict=True):
        for i, (name, r) in enumerate(others):
            d = getattr(r, attr)
            if d is None or not len(d):
                continue
            color = colors[i % len(colors)]
            steps = r.weight_steps if attr == "weight_diff" and r.weight_steps is not None \
                else np.arange(len(d))
            ax.semilogy(steps, np.maximum(d, floor), color=color, linewidth=0.7,
                        alpha=0.8, marker=".", markersize=3, label=name)
            if r.first_divergent_step is not None:
                ax.axvline(r.first_divergent_step, color=color, linestyle=":", linewidth=1.2)
        ax.axhline(atol, color="red", linewidth=0.8, label=f"tolerance {atol:g}")
        ax.axhline(floor, color="grey", linewidth=0.6)
        ax.text(0.0, floor, " 0 (equal)", transform=ax.get_yaxis_transform(), fontsize=7,
                color="grey", va="bottom")
        ax.set_ylim(floor / 3, top * 30)
        ax.set_ylabel(label)
    axes[-1].set_xlabel("step")
    axes[0].set_title(f"{comp.model.name} on {comp.dataset}: differences against "
                      f"{comp.reference} per step")
    handles, labels = axes[0].get_legend_handles_labels()
    if others:
        axes[0].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def write_all(comp: Comparison, out_dir: Path, force: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / f for f in REPORT_FILES]
    check_writable(paths, force)
    write_json(comp, paths[0])
    plot(comp, paths[1], paths[2])
    _atomic_write(paths[3], lambda tmp: Path(tmp).write_text(markdown(comp)))
    return paths
