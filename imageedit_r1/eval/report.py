"""One self-contained HTML report of a run: tables, plots and a side-by-side gallery.

Everything is inlined (images as base64 JPEG thumbnails, plots as base64 PNG drawn with
matplotlib's Agg backend, CSS in a <style> block), so the file can be mailed or archived and
opens offline. All text from data (requests, sub-requests, judge reasoning) is HTML-escaped,
and only images inside the run folder are embedded, whatever path a record names.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from imageedit_r1.eval import tables
from imageedit_r1.eval.results import RunData, load_run
from imageedit_r1.images import ImageLoadError, load_image
from imageedit_r1.store import atomic_write_text

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table.t{border-collapse:collapse;font-size:13px;margin:8px 0}
table.t th,table.t td{border:1px solid #ccc;padding:4px 8px;text-align:right}
table.t td:nth-child(-n+2),table.t th:nth-child(-n+2){text-align:left}
.gallery{display:flex;flex-direction:column;gap:18px}
.item{border:1px solid #ddd;border-radius:6px;padding:10px}
.request{font-size:14px;margin-bottom:8px}.meta{color:#666;font-size:12px}
.row{display:flex;gap:10px;flex-wrap:wrap;align-items:flex-start}
.cell{width:220px;font-size:12px}.cell img{width:208px;height:208px;object-fit:contain;background:#f4f4f4;
border:1px solid #ccc;display:block}
.score{font-weight:600}.fail{color:#b00020}.subs{margin:4px 0 0 16px;padding:0}
.plots img{max-width:100%;border:1px solid #eee}
table.failures td.reason{text-align:left;max-width:640px}
details{font-size:12px;color:#444}
"""


def _thumbnail(path: Path | None, size: int) -> str | None:
    if path is None:
        return None
    try:
        image = load_image(path)
    except ImageLoadError:
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_data_url(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _method_names(run: RunData) -> list[tuple[str, str]]:
    return [(m["name"], f"{m.get('group')} · {m.get('label') or m['name']}" if m.get("group")
             else (m.get("label") or m["name"])) for m in run.methods]


def method_colours(run: RunData) -> dict[str, Any]:
    """One colour per method, the same in every plot (matplotlib's tab10, then tab20)."""
    import matplotlib

    names = [m["name"] for m in run.methods]
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(index % cmap.N) for index, name in enumerate(names)}


def plots(run: RunData) -> list[tuple[str, str]]:
    """(title, PNG data URL) for the score distributions and the per-benchmark bars."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    scored = run.scored()
    names = _method_names(run)
    colours = method_colours(run)
    legend = {"fontsize": 7, "loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}
    out: list[tuple[str, str]] = []
    by_method: dict[str, list[float]] = defaultdict(list)
    for record in scored:
        by_method[record["method"]].append(float(record["total"]))
    figure, axis = plt.subplots(figsize=(8, 3.6))
    bins = np.arange(-0.25, 10.5, 0.5)
    for name, title in names:
        if by_method[name]:
            axis.hist(by_method[name], bins=bins, histtype="step", linewidth=1.6, color=colours[name],
                      label=f"{title} (n={len(by_method[name])})")
    axis.set_xlabel("judge score (0–10)")
    axis.set_ylabel("items")
    axis.set_xlim(-0.5, 10.5)
    if scored:
        axis.legend(**legend)  # beside the axes, never over the data
    out.append(("Score distributions (all benchmarks and judges)", _figure_data_url(figure)))

    cell: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in scored:
        cell[(record["method"], record["benchmark"])].append(float(record["total"]))
    figure, axis = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(run.benchmarks))
    for index, (name, title) in enumerate(names):
        means = [float(np.mean(cell[(name, bench)])) if cell[(name, bench)] else 0.0 for bench in run.benchmarks]
        axis.bar(x + (index - (len(names) - 1) / 2) * width, means, width, label=title, color=colours[name])
    axis.set_xticks(x, run.benchmarks)
    axis.set_ylabel("mean score (0–10), over judges")
    axis.set_ylim(0, 10)
    axis.legend(**legend)
    out.append(("Mean score per benchmark", _figure_data_url(figure)))
    return out


_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _table_html(markdown: str) -> str:
    """The markdown tables rendered as HTML (pipes to cells; ** to <b>)."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    notes = [line for line in markdown.splitlines() if line and not line.startswith("|")]
    parts = ['<table class="t">']
    for index, line in enumerate(rows):
        if index == 1:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        tag = "th" if index == 0 else "td"
        rendered = []
        for c in cells:
            text = _BOLD.sub(r"<b>\1</b>", html.escape(c))
            rendered.append(f"<{tag}>{text}</{tag}>")
        parts.append("<tr>" + "".join(rendered) + "</tr>")
    parts.append("</table>")
    parts.extend(f'<p class="meta">{html.escape(note)}</p>' for note in notes)
    return "\n".join(parts)


def _gallery_items(run: RunData, max_items: int) -> list[tuple[str, str]]:
    """(benchmark, sample id) pairs, spread evenly over benchmarks, in run order."""
    per_bench: dict[str, list[str]] = defaultdict(list)
    for record in run.edits:
        ids = per_bench[record["benchmark"]]
        if record["sample_id"] not in ids:
            ids.append(record["sample_id"])
    chosen: list[tuple[str, str]] = []
    benches = [b for b in run.benchmarks if per_bench[b]]
    position = 0
    while len(chosen) < max_items and any(position < len(per_bench[b]) for b in benches):
        for bench in benches:
            if position < len(per_bench[bench]) and len(chosen) < max_items:
                chosen.append((bench, per_bench[bench][position]))
        position += 1
    return chosen


def _failure_text(record: dict[str, Any]) -> str:
    """"refused (IMAGE_SAFETY)" for a refusal, with the provider's code; else "failed (kind)"."""
    if record.get("error_kind") == "refusal":
        return f"refused ({(record.get('refusal') or {}).get('reason', 'declined')})"
    return f"failed ({record.get('error_kind', '?')})"


def _scores_html(judgments: list[dict[str, Any]]) -> str:
    parts = []
    for record in judgments:
        judge = html.escape(record["judge"])
        if record.get("status") == "scored":
            parts.append(
                f'<div><span class="score">{judge}: {record["total"]:g}</span> '
                f'(F {record["fulfillment"]:g} · Q {record["quality"]:g} · P {record["preservation"]:g})'
                + (f"<details><summary>reasoning</summary>{html.escape(record.get('reasoning') or '')}</details>"
                   if record.get("reasoning") else "") + "</div>")
        else:
            parts.append(f'<div class="fail">{judge}: {html.escape(_failure_text(record))}</div>')
    return "".join(parts)


def gallery_html(run: RunData, max_items: int = 40, thumb: int = 256) -> str:
    edits = {(r["benchmark"], r["sample_id"], r["method"]): r for r in run.edits}
    judgments: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in run.results:
        judgments[(record["benchmark"], record["sample_id"], record["method"])].append(record)
    names = _method_names(run)
    blocks = []
    for bench, sample_id in _gallery_items(run, max_items):
        records = [edits.get((bench, sample_id, name)) for name, _ in names]
        first = next((r for r in records if r), None)
        if first is None:
            continue
        original = next((r.get("original_path") for r in records if r and r.get("original_path")), None)
        original_src = _thumbnail(run.file(original), thumb)
        # "Input", not "Original": "Original" is also the name of the baseline method's rows.
        cells = ['<div class="cell"><div><b>Input</b></div>'
                 + (f'<img alt="input" src="{original_src}">' if original_src else '<div class="fail">missing</div>')
                 + "</div>"]
        for (name, title), record in zip(names, records, strict=True):
            body = f"<div><b>{html.escape(title)}</b></div>"
            if record is None:
                body += '<div class="meta">not run</div>'
            elif record.get("status") != "ok":
                body += (f'<div class="fail">edit {html.escape(_failure_text(record))}: '
                         f'{html.escape(_failure_reason(record))}</div>')
            else:
                src = _thumbnail(run.file(record.get("edited_path")), thumb)
                body += f'<img alt="{html.escape(name)}" src="{src}">' if src else '<div class="fail">image missing</div>'
                subs = (record.get("trace") or {}).get("sub_requests") or []
                if subs and subs != [first["request"]]:
                    body += '<ol class="subs">' + "".join(f"<li>{html.escape(str(s))}</li>" for s in subs) + "</ol>"
                body += _scores_html(judgments.get((bench, sample_id, name), []))
            cells.append(f'<div class="cell">{body}</div>')
        blocks.append(
            f'<div class="item"><div class="request"><b>Request:</b> {html.escape(first["request"])}</div>'
            f'<div class="meta">{html.escape(bench)} · {html.escape(sample_id)}</div>'
            f'<div class="row">{"".join(cells)}</div></div>')
    return '<div class="gallery">' + "\n".join(blocks) + "</div>"


def _failure_reason(record: dict[str, Any]) -> str:
    return str(record.get("error") or "no reason recorded")


def failures_html(run: RunData) -> str:
    """Every failed edit with its reason (the gallery shows only a sample of items)."""
    failed = [r for r in run.edits if r.get("status") != "ok"]
    if not failed:
        return '<p class="meta">No edit failed.</p>'
    labels = dict(_method_names(run))
    rows = "".join(
        f"<tr><td>{html.escape(labels.get(r['method'], r['method']))}</td><td>{html.escape(r['benchmark'])}</td>"
        f"<td>{html.escape(str(r['sample_id']))}</td><td>{html.escape(r.get('error_kind', '?'))}</td>"
        f'<td class="reason">{html.escape(_failure_reason(r))}</td></tr>' for r in failed)
    return ('<table class="t failures"><tr><th>Method</th><th>Benchmark</th><th>Sample</th><th>Kind</th>'
            f"<th>Why</th></tr>{rows}</table>")


def render_report(run: RunData, *, max_items: int = 40, n_boot: int = 1000, title: str = "ImageEdit-R1 evaluation") -> str:
    main = tables.build_table(run, n_boot=n_boot)
    breakdown = tables.criteria_breakdown(run)
    served: dict[str, set[str]] = {}
    for record in run.scored():
        if record.get("served_model"):
            served.setdefault(record["judge"], set()).add(record["served_model"])
    judges = ", ".join(f"{j['name']} = {j['model']}" + (f" (served as {', '.join(sorted(served[j['name']]))})"
                                                        if served.get(j["name"]) else "") for j in run.judges)
    plot_html = "".join(f'<h3>{html.escape(t)}</h3><img alt="{html.escape(t)}" src="{src}">' for t, src in plots(run))
    # The same counts as the table's Failed and Refused columns summed: each edit once, each judgment.
    failed_judgments = sum(c.judge_failed for row in main.rows for c in row.cells.values())
    failed_edits = sum(row.failed for row in main.rows) - failed_judgments
    refused = sum(row.refused for row in main.rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">Judges: {html.escape(judges)}. Judge prompt sha256: {html.escape(run.manifest.get('prompt_sha256', '?'))}.
Scored judgments: {len(run.scored())}; failures: {failed_edits + failed_judgments}
({failed_edits} edits, {failed_judgments} judgments); refusals (edits and judgments): {refused}.</p>
<h2>Main results (Table 1 layout)</h2>
{_table_html(tables.to_markdown(main))}
<h2>Per-criterion breakdown</h2>
{_table_html(tables.breakdown_markdown(breakdown))}
<h2>Failed edits</h2>
{failures_html(run)}
<h2>Gallery</h2>
{gallery_html(run, max_items=max_items)}
<h2>Plots</h2>
<div class="plots">{plot_html}</div>
</body></html>
"""


def write_report(run_dir: str | Path, out: str | Path, *, max_items: int = 40, n_boot: int = 1000) -> Path:
    run = load_run(run_dir)
    return atomic_write_text(out, render_report(run, max_items=max_items, n_boot=n_boot))
