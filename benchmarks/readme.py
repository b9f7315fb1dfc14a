"""Write a benchmark's table into README.md between its markers, so no figure is typed by hand."""

import re

from benchmarks import ROOT

README = ROOT / "README.md"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(map(str, cells)) + " |" for cells in [header, *rows]]
    lines.insert(1, "|" + "---|" * len(header))
    return "\n".join(lines)


def replace_section(name, text, readme=README):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    content = readme.read_text(encoding="utf-8")
    if begin not in content or end not in content:
        raise SystemExit(f"{readme}: markers {begin} ... {end} not found")
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    readme.write_text(pattern.sub(lambda _: f"{begin}\n{text.strip()}\n{end}", content), encoding="utf-8")


def publish(name, table, footnote, write_readme):
    """Print a benchmark's table and how it was made; with --write-readme, also into its README section."""
    text = table + "\n\n" + footnote
    print(text)
    if write_readme:
        replace_section(name, text)
