"""The printed table (model, base, difference) and eval.png."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless servers: no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

CJK_FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei",
             "Microsoft YaHei", "PingFang SC", "Source Han Sans SC"]


def _value(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if key == "accuracy":
        low, high = metrics["ci95"]
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def format_summary(summary: dict) -> str:
    results = summary["results"]
    columns = ["model"] + (["base", "difference"] if "base" in results else [])
    lines = [f"{summary['task']} on {summary['data']}: {summary['samples']} samples"
             f" ({summary['skipped']} skipped), {summary['model']}"]
    lines += [f"  skipped {s}" for s in summary["skipped_examples"][:3]]
    if "contamination" in summary:
        c = summary["contamination"]
        lines.append(f"  dropped {c['dropped']} contaminated items (sharing >= {c['min_chars']} characters with {c['train']})")
    lines.append(f"{'metric':<22}" + "".join(f"{c:>26}" for c in columns))
    for key in summary["headline"]:
        row = [_value(results["model"], key)]
        if "base" in results:
            row += [_value(results["base"], key), f"{summary['difference'][key]:+.4f}"]
        lines.append(f"{key:<22}" + "".join(f"{v:>26}" for v in row))
    for kind, scores in results["model"].get("by_type", {}).items():
        base = results.get("base", {}).get("by_type", {}).get(kind)
        lines.append(f"  {kind + '-answer':<20}{_value(scores, 'accuracy'):>26}" + (f"{_value(base, 'accuracy'):>26}" if base else "")
                     + f"   n={scores['total']}  partial credit {scores['partial_credit']:.3f}")
    for subject, scores in results["model"].get("per_subject", {}).items():
        base = results.get("base", {}).get("per_subject", {}).get(subject)
        lines.append(f"  {subject:<20}{_value(scores, 'accuracy'):>26}" + (f"{_value(base, 'accuracy'):>26}" if base else "")
                     + f"   n={scores['total']}")
    if "bleu_signature" in results["model"]:
        lines.append(f"BLEU {results['model']['bleu_signature']}; chrF {results['model']['chrf_signature']}")
    lines.append(f"wrote {summary['out_dir']}/ ({', '.join(summary['files'].values())}, metrics.json, eval.png)")
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
    results = summary["results"]
    models = [name for name in ("model", "base") if name in results]
    if results["model"].get("per_subject"):   # a task that scores per subject (mcq) gets one bar group each
        groups = ["overall"] + list(results["model"]["per_subject"])
        pick = lambda m, g: m if g == "overall" else m["per_subject"].get(g, {"accuracy": 0, "ci95": [0, 0]})  # noqa: E731
        keys = None
    else:
        # lengths (characters) and repetition (0-1) need scales of their own; they are in the table
        groups = [k for k in summary["headline"] if not k.startswith(("avg_", "repetition_"))]
        keys = groups
    font = _cjk_font()
    labels = [g if font or g.isascii() else f"S{i}" for i, g in enumerate(groups)]  # no CJK font: short labels
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups) + 2), 4), dpi=110)
    width = 0.8 / len(models)
    for n, name in enumerate(models):
        xs = [i + n * width for i in range(len(groups))]
        if keys:
            ax.bar(xs, [results[name].get(k, 0) for k in keys], width, label=name)
        else:
            parts = [pick(results[name], g) for g in groups]
            heights = [p["accuracy"] for p in parts]
            errors = [[h - p["ci95"][0] for h, p in zip(heights, parts)], [p["ci95"][1] - h for h, p in zip(heights, parts)]]
            ax.bar(xs, heights, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(groups))], labels,
                  fontfamily=font or "sans-serif", rotation=20 if len(groups) > 5 else 0)
    ax.set_ylabel("accuracy (95% CI)" if not keys else "score")
    if labels != groups:
        ax.set_xlabel("S1, S2, ...: subjects in the order of metrics.json per_subject (no CJK font installed)", fontsize=8)
    ax.set_title(f"{summary['task']}: {summary['model']} on {Path(summary['data']).name}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
