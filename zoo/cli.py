"""The `zoo` command line. Subcommands live in `zoo.commands.<name>`, each with
`add_arguments(parser)` and `run(args) -> int`; none imports a deep-learning framework at
module level, so `zoo --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

from zoo import __version__
from zoo.errors import ZooError

#: subcommand -> (module, one-line help). Add a command by adding a module and a line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("zoo.commands.data", "summarise a dataset (sizes, classes, source)"),
    "quadratic": ("zoo.commands.quadratic", "minimise w^2 - 10w + 25 in every framework (seeds 000/004)"),
    "saddle": ("zoo.commands.saddle", "steps each optimizer needs to escape a saddle point (seed 000)"),
    "list": ("zoo.commands.list", "list models by framework, optimizers and datasets"),
    "compare": ("zoo.commands.compare", "train one model in several frameworks and compare them step by step"),
    "train": ("zoo.commands.train", "train one model in one framework, print the test metric, save the weights"),
    "convert": ("zoo.commands.convert", "convert saved weights between .keras, .pt and .ckpt (TF1)"),
    "predict": ("zoo.commands.predict", "predict a dataset's test split with saved weights of any format"),
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
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
