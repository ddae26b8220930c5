"""The `zoo` command line. Subcommands live in `zoo.commands.<name>`, each with
`add_arguments(parser)` and `run(args) -> int`; none imports a deep-learning framework at
module level, so `zoo --help` stays fast."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import threading

from zoo import __version__
from zoo.errors import ConfigError, ZooError

#: subcommand -> (module, one-line help). Add a command by adding a module and a line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("zoo.commands.data", "summarise a dataset (sizes, classes, source)"),
    "quadratic": ("zoo.commands.quadratic", "minimise w^2 - 10w + 25 in every framework (seeds 000/004)"),
    "saddle": ("zoo.commands.saddle", "steps each optimizer needs to escape a saddle point (seed 000)"),
    "list": ("zoo.commands.list", "list models by framework, optimizers and datasets"),
    "compare": ("zoo.commands.compare", "train one model in several frameworks and compare them step by step"),
    "train": ("zoo.commands.train", "train one model in one framework, print the test metric, save the weights"),
    "convert": ("zoo.commands.convert", "convert saved weights between .keras, .pt, .ckpt (TF1), .npz (canonical) and .onnx"),
    "predict": ("zoo.commands.predict", "predict a dataset's test split with saved weights of any format"),
    "inspect": ("zoo.commands.inspect", "list a TF1 checkpoint's variables and the zoo model they map to"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zoo", description="A Keras-first model zoo: every model in TF2 Keras, "
                     "TF1 graphs and PyTorch, proven to agree step by step.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip())
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


#: TensorFlow's native (absl) log lines, which no environment variable silences in TF 2.21
#: ("WARNING: All log messages before absl::InitializeLog() ...", "I0000 ... port.cc:153] ...").
NATIVE_LOG = re.compile(rb"^([IWEF]\d{4} \d+:\d+:\d+\.\d+ +\d+ \S+:\d+\]|WARNING: All log "
                        rb"messages before absl::InitializeLog\(\) is called|To enable the "
                        rb"following instructions: .* rebuild TensorFlow)")


@contextlib.contextmanager
def native_log_filter():
    """Drop TensorFlow's native log lines from stderr for the duration of a command.

    Native code writes to file descriptor 2; it is pointed at a pipe whose reader thread drops
    the absl-format lines (and their indented continuations) and forwards everything else.
    Python's own `sys.stderr` keeps the original descriptor, so the zoo's one-line errors and
    rich's progress display (which needs a terminal) are untouched."""
    try:
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
    except OSError:  # no usable stderr: nothing to filter
        yield
        return

    def pump() -> None:
        skipping = False
        with os.fdopen(read_fd, "rb", buffering=0) as src:
            buf = b""
            while chunk := src.read(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if NATIVE_LOG.match(line):
                        skipping = True
                    elif not (skipping and line.startswith((b"\t", b" "))):
                        skipping = False
                        os.write(saved, line + b"\n")
            if buf:
                os.write(saved, buf)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    sys.stderr.flush()
    old_stderr = sys.stderr
    try:
        on_fd2 = old_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced, e.g. by a test's capture
        on_fd2 = False
    if on_fd2:
        sys.stderr = open(os.dup(saved), "w", buffering=1,
                          encoding=old_stderr.encoding or "utf-8", errors="backslashreplace")
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        thread.join(timeout=5)
        if on_fd2:
            sys.stderr.close()
            sys.stderr = old_stderr
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        legacy = _needs_keras2(args)
    except ZooError as exc:
        sys.stderr.write(f"zoo {args.command}: error: {exc}\n")
        return 2
    if legacy and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        # Keras 2 must be chosen before TensorFlow is first imported: the command runs again
        # in a Python process started with TF_USE_LEGACY_KERAS=1 (this one never imports it)
        import subprocess

        env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
        return subprocess.call([sys.executable, "-m", "zoo", *argv], env=env)
    with native_log_filter():
        return _run(args)


def _needs_keras2(args: argparse.Namespace) -> bool:
    """Whether the command runs a Keras 2 framework in this process (`zoo train --framework
    keras2`, a Keras 2 `.h5` file to convert or predict). Keras 2 and Keras 3 never share a
    process, so converting between `.h5` and `.keras` goes through the canonical `.npz`."""
    from zoo import frameworks

    if args.command == "train":
        return frameworks.get(args.framework).legacy_keras \
            if args.framework in frameworks.NAMES else False
    paths = {"convert": ("src", "dst"), "predict": ("weights",)}.get(args.command, ())
    fws = [frameworks.FRAMEWORKS[fw] for fw in frameworks.NAMES
           if frameworks.FRAMEWORKS[fw].suffix]
    used = [fw for name in paths for fw in fws
            if str(getattr(args, name, "")).lower().endswith(fw.suffix)]
    if getattr(args, "to", None):
        used += [fw for fw in fws if fw.weight_format == args.to]
    legacy = [fw for fw in used if fw.legacy_keras]
    if legacy and any("keras" in fw.imports for fw in used):
        raise ConfigError(f"a {legacy[0].weight_file} file (Keras 2) and a Keras 3 file cannot "
                          "be converted in one process (the two Keras versions never share "
                          "one): convert through the canonical .npz, e.g. `zoo convert "
                          "w.h5 w.npz` then `zoo convert w.npz w.keras`.")
    return bool(legacy)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args._module.run(args) or 0)
    except ZooError as exc:
        if getattr(args, "debug", False):
            raise
        sys.stderr.write(f"zoo {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"zoo {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
