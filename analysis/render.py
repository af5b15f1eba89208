"""A plain table model and its Markdown / LaTeX renderings (no tabulate dependency)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_TEX_ESCAPES = str.maketrans({
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
})


@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    """``n_index`` leading columns are labels (left-aligned); the rest are values."""
    header: list[str]
    rows: list[list[Cell]]
    caption: str
    notes: list[str] = field(default_factory=list)
    n_index: int = 1


def fmt_percent(ratio: float) -> str:
    """A fraction as a percentage with two significant digits: 1e-4 -> '0.01%', 1 -> '100%'."""
    if ratio is None or np.isnan(ratio):
        return "—"
    digits = np.format_float_positional(ratio * 100, precision=2, unique=True, fractional=False, trim="-")
    return f"{digits}%"


def fmt_ratio(tag: str) -> str:
    """A ratio tag in short scientific form: '0.0001' -> '1e-4', '0.0025' -> '2.5e-3'."""
    if tag == "native":
        return tag
    mantissa, exponent = f"{float(tag):e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def to_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown: caption, table, notes; bold as ``**x**``."""
    def cell(c: Cell) -> str:
        text = c.text.replace("|", r"\|")
        return f"**{text}**" if c.bold else text

    align = [":---"] * table.n_index + ["---:"] * (len(table.header) - table.n_index)
    lines = [f"**{table.caption}**", "", "| " + " | ".join(table.header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def tex_escape(text: str) -> str:
    """Escape LaTeX specials; '±' -> '$\\pm$', '—' -> '--', '−' -> '-'."""
    return text.translate(_TEX_ESCAPES).replace("±", r"$\pm$").replace("—", "--").replace("−", "-")


def to_latex(table: Table) -> str:
    """A booktabs ``table`` float; bold as ``\\textbf{x}``."""
    def cell(c: Cell) -> str:
        text = tex_escape(c.text)
        return rf"\textbf{{{text}}}" if c.bold else text

    spec = "l" * table.n_index + "c" * (len(table.header) - table.n_index)
    lines = [
        r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
        rf"\caption{{{tex_escape(table.caption)}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
        " & ".join(tex_escape(h) for h in table.header) + r" \\", r"\midrule",
        *(" & ".join(cell(c) for c in row) + r" \\" for row in table.rows),
        r"\bottomrule", r"\end{tabular}",
        *(rf"\par{{\footnotesize {tex_escape(note)}}}" for note in table.notes),
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"
