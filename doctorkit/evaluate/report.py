"""The printed table (model, base, difference) and eval.png."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless servers: no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from doctorkit.rundir import EVAL_PNG, METRICS  # noqa: E402

CJK_FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei",
             "Microsoft YaHei", "PingFang SC", "Source Han Sans SC"]


def format_summary(summary: dict) -> str:
    """The table: the task's headline rows (model, base, difference), then the lines the task adds under it."""
    from doctorkit.evaluate.tasks import get_task

    task = get_task(summary["task"])
    results = summary["results"]
    columns = ["model"] + (["base", "difference"] if "base" in results else [])
    lines = [f"{summary['task']} on {summary['data']}: {summary['samples']} samples"
             f" ({summary['skipped']} skipped), {summary['model']}"]
    lines += [f"  skipped {s}" for s in summary["skipped_examples"][:3]]
    if "contamination" in summary:
        c = summary["contamination"]
        lines.append(f"  dropped {c['dropped']} contaminated items (sharing >= {c['min_chars']} characters with {c['train']})")
    lines.append(f"{'metric':<22}" + "".join(f"{c:>26}" for c in columns))
    base = dict(task.headline(results["base"])) if "base" in results else None
    for key, text in task.headline(results["model"]):
        row = [text]
        if base is not None:
            difference = summary["difference"].get(key)
            row += [base.get(key, ""), "" if difference is None else f"{difference:+.4f}"]
        lines.append(f"{key:<22}" + "".join(f"{v:>26}" for v in row))
    lines += task.details(results)
    files = [*summary["files"].values(), METRICS, EVAL_PNG]
    lines.append(f"wrote {summary['out_dir']}/ ({', '.join(files)})")
    return "\n".join(lines)


# Debian's fonts-noto-cjk (`make` installs it as root); matplotlib's font cache predates it, so add it by path.
CJK_FONT_FILES = ["/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                  "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf"]


def cjk_font() -> str | None:
    """A font family that renders Chinese, or None (charts then label with S1..Sn)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = next((name for name in CJK_FONTS if name in installed), None)
    if found is None:
        for path in CJK_FONT_FILES:
            if Path(path).is_file():
                font_manager.fontManager.addfont(path)
                return font_manager.FontProperties(fname=path).get_name()
    return found


_cjk_font = cjk_font


def plot_summary(summary: dict, path: Path) -> None:
    """eval.png: the bars the task charts (task.chart), one colour per model, intervals where it gives them."""
    from doctorkit.evaluate.tasks import get_task

    chart = get_task(summary["task"]).chart
    results = summary["results"]
    models = [name for name in ("model", "base") if name in results]
    ylabel, bars = chart(results["model"])
    groups = [label for label, _, _ in bars]
    font = _cjk_font()
    labels = [g if font or g.isascii() else f"S{i}" for i, g in enumerate(groups)]  # no CJK font: short labels
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups) + 2), 4), dpi=110)
    width = 0.8 / len(models)
    for n, name in enumerate(models):
        found = {label: (value, ci) for label, value, ci in chart(results[name])[1]}
        parts = [found.get(g, (0, None)) for g in groups]
        heights = [value for value, _ in parts]
        errors = None
        if any(ci for _, ci in parts):
            cis = [ci or (h, h) for h, (_, ci) in zip(heights, parts)]
            errors = [[h - low for h, (low, _) in zip(heights, cis)], [high - h for h, (_, high) in zip(heights, cis)]]
        ax.bar([i + n * width for i in range(len(groups))], heights, width, yerr=errors, capsize=3 if errors else 0,
               label=name)
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(groups))], labels,
                  fontfamily=font or "sans-serif", rotation=20 if len(groups) > 5 else 0)
    ax.set_ylabel(ylabel)
    if labels != groups:
        ax.set_xlabel("S1, S2, ...: the bars in the order of metrics.json (no CJK font installed)", fontsize=8)
    ax.set_title(f"{summary['task']}: {summary['model']} on {Path(summary['data']).name}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
