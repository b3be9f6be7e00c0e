"""Fill the generated tables into ``paper.md`` and, when pandoc is installed, build the PDF.

Each ``<!-- table: NAME -->`` ... ``<!-- end table -->`` block of ``paper.md`` is replaced by
the text of ``<out>/tables/NAME.md`` (the table scripts write them), so that no number in the
paper is typed by hand. Figures are referenced as ``![caption](figures/NAME.png)``; missing
ones are reported. With ``pandoc`` on PATH the filled paper is also rendered to
``<out>/paper.pdf`` (citations from ``paper.bib``); without it that step is skipped with a
message.

Usage::

    python paper/scripts/build_paper.py              # fills paper/paper.md in place
    python paper/scripts/build_paper.py --out /tmp/paper   # paper.md from paper/, tables from
                                                           # /tmp/paper/tables, writes there
"""

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

TABLE_BLOCK = re.compile(
    r"<!-- table: (?P<name>[A-Za-z0-9_.-]+) -->\n(?P<body>.*?)<!-- end table -->", re.DOTALL
)
FIGURE = re.compile(r"!\[[^\]]*\]\((?P<path>figures/[^)\s]+)\)")


def table_names(text: str) -> list[str]:
    """The names of the table blocks of a paper, in order."""
    return [m.group("name") for m in TABLE_BLOCK.finditer(text)]


def extract_tables(text: str) -> dict[str, str]:
    """The current content of every table block (stripped), by name."""
    return {m.group("name"): m.group("body").strip() for m in TABLE_BLOCK.finditer(text)}


def figure_paths(text: str) -> list[str]:
    """The figure paths (``figures/NAME.png``) a paper references, in order."""
    return [m.group("path") for m in FIGURE.finditer(text)]


def fill_tables(text: str, tables_dir: Path) -> tuple[str, list[str]]:
    """Replace each table block by its file; return the new text and the missing names."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        path = Path(tables_dir) / f"{name}.md"
        if not path.exists():
            missing.append(name)
            return match.group(0)
        body = path.read_text().strip()
        return f"<!-- table: {name} -->\n\n{body}\n\n<!-- end table -->"

    return TABLE_BLOCK.sub(replace, text), missing


def build_pdf(out: Path) -> int:
    """Render ``out/paper.md`` with pandoc (citations from ``paper.bib``)."""
    pandoc = shutil.which("pandoc")
    if pandoc is None:
        common.log("pandoc is not on PATH: paper.pdf not built (paper.md is up to date)")
        return 0
    bib = common.PAPER_DIR / "paper.bib"
    command = [
        pandoc,
        "paper.md",
        "--citeproc",
        f"--bibliography={bib}",
        f"--resource-path={out}",
        "-o",
        "paper.pdf",
    ]
    done = subprocess.run(command, cwd=out, capture_output=True, text=True, check=False)
    if done.returncode:
        common.log(f"pandoc failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return 1
    common.log(f"wrote {out / 'paper.pdf'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Fill the tables, check the figures, build the PDF."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=common.PAPER_DIR,
        help="folder with tables/ and figures/; receives paper.md (default: the paper folder)",
    )
    parser.add_argument("--no-pdf", action="store_true", help="do not run pandoc")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = common.PAPER_DIR / "paper.md"
    text, missing = fill_tables(source.read_text(), out / "tables")
    target = out / "paper.md"
    target.write_text(text)
    common.log(f"wrote {target} ({len(table_names(text))} tables)")
    status = 0
    if missing:
        common.log(f"tables not found under {out / 'tables'} (left as they were): {missing}")
        status = 1
    absent = [p for p in figure_paths(text) if not (out / p).exists()]
    if absent:
        common.log(f"figures not found under {out}: {absent}")
        status = 1
    if not args.no_pdf:
        status = max(status, build_pdf(out))
    return status


if __name__ == "__main__":
    sys.exit(main())
