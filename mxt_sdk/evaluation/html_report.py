"""The evaluation report as one self-contained HTML page (``<stem>.html`` beside ``report.json``).

It holds the headline metrics, the slices, the precision-recall curves, the per-pair table and a
gallery of test products: each product's photo (an embedded thumbnail), title and type, and per asked
attribute the predicted and gold values, the confidence, whether it was accepted and right, and the
zero-shot / value-absent tags. The gallery is filterable by pair and by right/wrong with a few lines
of inline JavaScript. Every image is a ``data:`` URI: the file opens offline, moved anywhere.
"""
from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mxt_sdk.evaluation.thumbnails import data_uri, thumbnail

MAX_GALLERY_PRODUCTS = 500

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h1,h2{margin:.6em 0 .3em}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3}.metrics td:not(:first-child){text-align:right}
.curves img{margin:4px;border:1px solid #ddd;width:360px}
.filters{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
.gallery{display:flex;flex-wrap:wrap;gap:10px;margin-top:10px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;width:560px;display:flex;gap:8px}
.card>div{flex:1;min-width:0}.card td{word-break:break-word}nav a{margin-right:1em}
.card img,.noimg{width:128px;height:128px;object-fit:contain;flex:none;background:#fafafa}
.noimg{font-size:11px;color:#888;overflow:hidden}.card table{font-size:12px;width:100%}
.title{font-weight:600;font-size:13px}.ptype{color:#666;font-size:12px}
.right td.pred{background:#e3f6e3}.wrong td.pred{background:#fbe3e3}
.tag{display:inline-block;font-size:10px;border-radius:3px;padding:0 3px;margin:1px;background:#e8e8ff;
white-space:nowrap}
.tag.no{background:#eee;color:#777}.tag.err{background:#fbb}
"""

_SCRIPT = """
function applyFilters(){
  const pair=document.getElementById('pair').value, outcome=document.getElementById('outcome').value;
  let rows=0, cards=0;
  document.querySelectorAll('.card').forEach(card=>{
    let shown=0;
    card.querySelectorAll('tr.row').forEach(tr=>{
      const ok=(!pair||tr.dataset.pair===pair)&&(!outcome||tr.dataset.outcome===outcome);
      tr.hidden=!ok; shown+=ok?1:0;
    });
    card.hidden=shown===0; rows+=shown; cards+=shown?1:0;
  });
  document.getElementById('shown').textContent=rows+' rows of '+cards+' products shown';
}
document.getElementById('pair').addEventListener('change',applyFilters);
document.getElementById('outcome').addEventListener('change',applyFilters);
applyFilters();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _headline(report: Mapping[str, Any]) -> str:
    p = report["target_precision"]
    micro, macro = report["micro"], report["macro"]
    rows = [f"<tr><th>average</th><th>precision</th><th>recall</th><th>F1</th><th>recall@{p:.0%}P</th></tr>",
            f"<tr><td>micro</td><td>{_number(micro['precision'])}</td><td>{_number(micro['recall'])}</td>"
            f"<td>{_number(micro['f1'])}</td><td></td></tr>",
            f"<tr><td>macro ({macro['pairs']} pairs)</td><td>{_number(macro['precision'])}</td>"
            f"<td>{_number(macro['recall'])}</td><td>{_number(macro['f1'])}</td>"
            f"<td>{_number(macro['recall_at_p'])}</td></tr>"]
    slices = ["<tr><th>slice</th><th>support</th><th>correct</th><th>accuracy</th></tr>"]
    slices += [f"<tr><td>{_e(name)}</td><td>{s['support']}</td><td>{s['correct']}</td>"
               f"<td>{_number(s['accuracy'])}</td></tr>" for name, s in report["slices"].items()]
    paths = ["<tr><th>decided by</th><th>answers</th><th>with a stated gold</th><th>correct</th>"
             "<th>accepted values</th><th>precision of those</th></tr>"]
    paths += [f"<tr><td>{_e(path)}</td><td>{n['answers']}</td><td>{n['stated']}</td><td>{n['correct']}</td>"
              f"<td>{n.get('accepted', '-')}</td>"
              f"<td>{'-' if n.get('precision') is None else format(n['precision'], '.3f')}</td></tr>"
              for path, n in report.get("decided_by", {}).get("overall", {}).items()]
    return (f"<p>{report['rows']} labelled (product, attribute) rows; {report['errors']} with an error, "
            f"{report['truncated']} answers cut at the token limit.</p>"
            f"<table class='metrics' id='headline'>{''.join(rows)}</table><h2>Slices</h2>"
            f"<table class='metrics' id='slices'>{''.join(slices)}</table><h2>How answers were decided</h2>"
            f"<table class='metrics' id='paths'>{''.join(paths)}</table>")


def _pairs(report: Mapping[str, Any]) -> str:
    p = report["target_precision"]
    head = (f"<tr><th>product type</th><th>attribute</th><th>support</th><th>P</th><th>R</th><th>F1</th>"
            f"<th>recall@{p:.0%}P</th><th>threshold@P</th></tr>")
    body = [f"<tr><td>{_e(m['product_type'])}</td><td>{_e(m['attribute'])}</td><td>{m['support']}</td>"
            f"<td>{_number(m['precision'])}</td><td>{_number(m['recall'])}</td><td>{_number(m['f1'])}</td>"
            f"<td>{_number(m['recall_at_p'])}</td><td>{_number(m['threshold_at_p'])}</td></tr>"
            for m in report["pairs"]]
    return f"<table class='metrics' id='pairs'>{head}{''.join(body)}</table>"


def _curves(plots: Mapping[str, Path]) -> str:
    images = [f"<img alt='{_e(name)}' title='{_e(name)}' src='{data_uri(Path(path).read_bytes(), 'image/png')}'>"
              for name, path in plots.items()]
    return f"<div class='curves'>{''.join(images) or '<p>No pair had rows to plot.</p>'}</div>"


def _tags(row: Mapping[str, Any]) -> str:
    tags = [("accepted", row["accepted"]), ("zero-shot", row["zero_shot"]), ("value-absent", row["value_absent"])]
    out = "".join(f"<span class='tag{'' if on else ' no'}'>{'' if on else 'not '}{name}</span>"
                  for name, on in tags if on or name == "accepted")
    if row.get("decided_by"):
        out += f"<span class='tag path'>{_e(row['decided_by'])}</span>"
    if row.get("error"):
        out += f"<span class='tag err' title='{_e(row['error'])}'>error</span>"
    return out


def _pair_key(row: Mapping[str, Any]) -> str:
    return f"{row['product_type']} / {row['attribute']}"


def _card(rows: list[dict[str, Any]], root: Path | None) -> str:
    first = rows[0]
    if first.get("image"):
        uri, why = thumbnail(first["image"], root)
    else:
        uri, why = None, "no image"
    picture = (f"<img alt='photo of {_e(first['product_id'])}' src='{uri}'>" if uri
               else f"<div class='noimg'>{_e(why)}</div>")
    lines = ["<tr><th>attribute</th><th>predicted</th><th>gold</th><th>conf.</th><th></th></tr>"]
    for row in rows:
        outcome = "right" if row["correct"] else "wrong"
        lines.append(
            f"<tr class='row {outcome}' data-pair='{_e(_pair_key(row))}' data-outcome='{outcome}'>"
            f"<td>{_e(row['attribute'])}</td><td class='pred'>{_e(row['value'] if row['value'] is not None else '—')}"
            f"</td><td>{_e(row['gold'] if row['gold'] is not None else '—')}</td>"
            f"<td>{_number(row['confidence'], 2)}</td><td>{_tags(row)}</td></tr>")
    return (f"<div class='card' data-product='{_e(first['product_id'])}'>{picture}<div>"
            f"<div class='title'>{_e(first.get('title') or first['product_id'])}</div>"
            f"<div class='ptype'>{_e(first['product_type'])} · {_e(first['product_id'])}</div>"
            f"<table>{''.join(lines)}</table></div></div>")


def _gallery(rows: list[dict[str, Any]], root: Path | None, max_products: int) -> str:
    by_product: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_product.setdefault(row["product_id"], []).append(row)
    shown = list(by_product.values())[:max_products]
    note = (f"<p>The first {len(shown)} of {len(by_product)} products are shown; all rows are in the "
            "predictions file.</p>" if len(shown) < len(by_product) else "")
    pairs = sorted({_pair_key(r) for r in rows})
    options = "".join(f"<option value='{_e(p)}'>{_e(p)}</option>" for p in pairs)
    filters = (f"<div class='filters'>pair <select id='pair'><option value=''>all pairs</option>{options}"
               "</select> outcome <select id='outcome'><option value=''>right and wrong</option>"
               "<option value='right'>right</option><option value='wrong'>wrong</option></select> "
               "<span id='shown'></span></div>")
    return note + filters + f"<div class='gallery'>{''.join(_card(r, root) for r in shown)}</div>"


def render_html(report: Mapping[str, Any], rows: list[dict[str, Any]], plots: Mapping[str, Path],
                image_root: Path | None, *, title: str = "Evaluation report",
                max_products: int = MAX_GALLERY_PRODUCTS) -> str:
    """The page for ``report`` (:func:`~mxt_sdk.evaluation.report.build_report`) and its scored ``rows``;
    ``plots`` maps a caption to a PNG file; images resolve under ``image_root``."""
    meta = json.dumps({"rows": len(rows), "target_precision": report["target_precision"]})
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body data-report='{_e(meta)}'><h1>{_e(title)}</h1>"
            "<nav><a href='#curves'>PR curves</a><a href='#per-pair'>per pair</a>"
            "<a href='#products'>test products</a></nav>"
            f"{_headline(report)}<h2 id='curves'>Precision-recall curves</h2>{_curves(plots)}"
            f"<h2 id='per-pair'>Per (product type, attribute)</h2>{_pairs(report)}"
            f"<h2 id='products'>Test products</h2>{_gallery(rows, image_root, max_products)}"
            f"<script>{_SCRIPT}</script></body></html>\n")


def write_html(path: Path, report: Mapping[str, Any], rows: list[dict[str, Any]], plots: Mapping[str, Path],
               image_root: Path | None, **options: Any) -> Path:
    """Write :func:`render_html` to ``path``; return ``path``."""
    Path(path).write_text(render_html(report, rows, plots, image_root, **options), encoding="utf-8")
    return Path(path)
