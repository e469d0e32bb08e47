"""suite.png: tuned vs base accuracy per exam with 95% intervals. Chinese exam names need a CJK font
(report.cjk_font); without one the bars are labelled S1..Sn and suite_labels.md beside the chart says which
exam each label is."""
from __future__ import annotations

from pathlib import Path

from doctorkit.evaluate.report import cjk_font, plt
from doctorkit.rundir import SUITE_LABELS as LABELS_FILE, SUITE_PNG


def plot_suite(rows: list[dict], out: Path) -> list[str]:
    """Draw OUT/suite.png (and OUT/suite_labels.md when names cannot render); returns the file names."""
    out.mkdir(parents=True, exist_ok=True)
    names = [row["name"] for row in rows]
    font = cjk_font()
    short = not font and not all(name.isascii() for name in names)
    labels = [f"S{i}" for i in range(1, len(rows) + 1)] if short else names
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) + 2), 4), dpi=110)
    width = 0.4
    for n, key in enumerate(("tuned", "base")):
        heights = [row[key]["accuracy"] for row in rows]
        errors = [[h - row[key]["ci95"][0] for h, row in zip(heights, rows)],
                  [row[key]["ci95"][1] - h for h, row in zip(heights, rows)]]
        ax.bar([i + n * width for i in range(len(rows))], heights, width, yerr=errors, capsize=3, label=key)
    for i, row in enumerate(rows):
        if row["mcnemar"]["p_value"] < 0.05:
            ax.annotate("*", (i + width / 2, 1.02), ha="center", fontsize=12)
    ax.set_xticks([i + width / 2 for i in range(len(rows))],
                  [f"{label}\n({row['slice']})" for label, row in zip(labels, rows)], fontfamily=font or "sans-serif")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy (95% CI); * paired p < 0.05")
    if short:
        ax.set_xlabel(f"S1..S{len(rows)}: exam names in {LABELS_FILE} (no CJK font installed)", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / SUITE_PNG)
    plt.close(fig)
    if not short:
        return [SUITE_PNG]
    table = ["| label | exam | slice | tuned | base |", "|---|---|---|---|---|"]
    table += [f"| {label} | {row['name']} | {row['slice']} | {row['tuned']['accuracy']:.3f} | {row['base']['accuracy']:.3f} |"
              for label, row in zip(labels, rows)]
    (out / LABELS_FILE).write_text("\n".join(table) + "\n", encoding="utf-8")
    return [SUITE_PNG, LABELS_FILE]
