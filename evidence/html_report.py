"""The assessor's HTML report (``assessor.html`` in the bundle, a copy at ``--evidence-html``).

One self-contained page (no script, no external resource, printable): the first screen names
the target, the policy, the run time and the compliance figure, with an inline SVG bar chart of
verdicts by control family; then one section per catalog control with its severity, rationale,
mappings, verdict, every test's outcome and message, waivers, and relative links to the
evidence files (``prefix`` + the bundle-relative name: "" inside the unpacked bundle,
"bundle/" for the copy next to the archive).

A fleet run gets one such page per target on the same page and a target switcher: plain
radio buttons and CSS (still no script), every target shown when printed.
"""

from __future__ import annotations

from html import escape
from typing import Any

from evidence.catalog import Catalog
from evidence.results import TestResult
from evidence.summary import (
    NOT_APPLICABLE,
    NOT_ASSESSED,
    NOT_SATISFIED,
    SATISFIED,
    WAIVED,
    ControlVerdict,
    control_verdicts,
)

HTML_NAME = "assessor.html"
FILL = {SATISFIED: "#1a7f37", NOT_SATISFIED: "#cf222e", WAIVED: "#bf8700", NOT_ASSESSED: "#8c959f",
        NOT_APPLICABLE: "#d0d7de"}
ORDER = (NOT_SATISFIED, WAIVED, NOT_ASSESSED, NOT_APPLICABLE, SATISFIED)
STYLE = """body{font:14px/1.4 sans-serif;margin:2em;color:#1f2328}table{border-collapse:collapse}
td,th{border:1px solid #d0d7de;padding:2px 6px;text-align:left;vertical-align:top}
.v{font-weight:bold;color:#fff;padding:1px 6px;border-radius:3px}section{break-inside:avoid;margin:1.5em 0}
#first,.first{min-height:95vh}@media print{#first,.first{min-height:auto;break-after:page}}
.switch{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #d0d7de}
.switch label{margin-right:1em;cursor:pointer}.fleet>input{position:absolute;opacity:0}
.fleet>.target{display:none}@media print{.fleet>.target{display:block!important}.switch{display:none}}"""


def _badge(verdict: str) -> str:
    colour = FILL[verdict] if verdict != NOT_APPLICABLE else "#57606a"
    return f'<span class="v" style="background:{colour}" data-verdict="{escape(verdict)}">{escape(verdict)}</span>'


def chart(verdicts: list[ControlVerdict]) -> str:
    """Horizontal stacked bars, one per control family, segments by verdict (inline SVG)."""
    families: dict[str, dict[str, int]] = {}
    for v in verdicts:
        families.setdefault(v.family or "other", {}).setdefault(v.verdict, 0)
        families[v.family or "other"][v.verdict] += 1
    widest = max((sum(c.values()) for c in families.values()), default=1)
    unit, row = 300 / widest, 24
    parts = []
    for i, (family, counts) in enumerate(families.items()):
        y, x = i * row, 130.0
        parts.append(f'<text x="0" y="{y + 16}" font-size="13">{escape(family)}</text>')
        for verdict in ORDER:
            n = counts.get(verdict, 0)
            if n:
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{n * unit:.1f}" height="18" '
                             f'fill="{FILL[verdict]}"><title>{escape(family)}: {n} {escape(verdict)}</title></rect>')
                x += n * unit
    legend_y = len(families) * row + 8
    for j, verdict in enumerate(ORDER):
        parts.append(f'<rect x="{j * 95}" y="{legend_y}" width="10" height="10" fill="{FILL[verdict]}"/>'
                     f'<text x="{j * 95 + 14}" y="{legend_y + 10}" font-size="11">{escape(verdict)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="480" height="{legend_y + 20}" role="img" '
            f'aria-label="verdicts by control family">{"".join(parts)}</svg>')


def render(catalog: Catalog, results: list[TestResult] | dict[str, list[TestResult]], run: dict[str, Any],
           waivers: list[dict[str, Any]], prefix: str = "") -> str:
    """The page for the tests of one target, or of each target by name (a fleet: a switcher)."""
    groups = results if isinstance(results, dict) else {str(run.get("target", {}).get("name")): results}
    if len(groups) <= 1:
        tests = next(iter(groups.values()), [])
        body = _target_page(catalog, control_verdicts(catalog, tests), tests, run.get("target", {}),
                            run.get("policy", {}), run, waivers, prefix, "")
        title = str(run.get("target", {}).get("name") or "unknown")
        return "\n".join([*_head(title), *body, "</body></html>"])
    infos = run.get("targets", {})
    out = [*_head(str(run.get("target", {}).get("name") or "fleet")), '<div class="fleet">']
    out += [f'<input type="radio" name="target" id="pick-{i}"{" checked" if i == 0 else ""}>'
            for i in range(len(groups))]
    failing = {name: sum(v.verdict == NOT_SATISFIED for v in control_verdicts(catalog, tests))
               for name, tests in groups.items()}
    out.append('<nav class="switch"><strong>Target:</strong> ' + "".join(
        f'<label for="pick-{i}" data-target="{escape(name)}">{escape(name)} ({failing[name]} not satisfied)</label>'
        for i, name in enumerate(groups)) + "</nav>")
    out.append("<style>" + "".join(f"#pick-{i}:checked~#target-{i}{{display:block}}"
                                   f"#pick-{i}:checked~.switch label[for=pick-{i}]{{font-weight:bold;"
                                   "text-decoration:underline}" for i in range(len(groups))) + "</style>")
    for i, (name, tests) in enumerate(groups.items()):
        info = infos.get(name, {"name": name})
        out.append(f'<div class="target" id="target-{i}" data-target="{escape(name)}">')
        out += _target_page(catalog, control_verdicts(catalog, tests), tests, info, info.get("policy", {}), run,
                            waivers, prefix, f"t{i}-")
        out.append("</div>")
    out.append("</div></body></html>")
    return "\n".join(out)


def _head(title: str) -> list[str]:
    return ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
            f"<title>ZTM assessment: {escape(title)}</title>", f"<style>{STYLE}</style></head><body>"]


def _target_page(catalog: Catalog, verdicts: list[ControlVerdict], results: list[TestResult], target: dict[str, Any],
                 policy: dict[str, Any], run: dict[str, Any], waivers: list[dict[str, Any]], prefix: str,
                 anchor: str) -> list[str]:
    """One target's first screen and control sections; ``anchor`` prefixes element ids (a fleet)."""
    assessed = [v for v in verdicts if v.verdict not in (NOT_ASSESSED, NOT_APPLICABLE)]
    ok = sum(v.verdict == SATISFIED for v in assessed)
    figure = (f"{ok} of {len(assessed)} assessed controls satisfied ({100 * ok / len(assessed):.0f} %); "
              if assessed else "no control assessed; ")
    figure += ", ".join(f"{sum(v.verdict == x for v in verdicts)} {x}" for x in ORDER)
    failing = [v for v in verdicts if v.verdict == NOT_SATISFIED]
    rows = [("Target", target.get("name") or "unknown"), ("Engine", target.get("engine", "?")),
            ("Server version", target.get("server_version", "?")),
            ("Host", f"{target.get('host', '?')}:{target.get('port', '?')}"),
            ("Policy profile", policy.get("profile") or policy.get("note", "?")),
            ("Run", f"{run.get('started', '?')} to {run.get('finished', '?')}"),
            ("Gate", f"--fail-on {run.get('fail_on', 'any')}, exit status {run.get('exit_status', '?')}")]
    first = f'<div class="first" id="{anchor}first">' if anchor else '<div id="first">'
    out = [f"{first}<h1>Zero-Trust MySQL assessment</h1><table>",
           *(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows),
           f'</table><p id="{anchor}compliance"><strong>Compliance:</strong> {escape(figure)}</p>', chart(verdicts)]
    if failing:
        out.append(f'<h2>Not satisfied</h2><ul id="{anchor}failing">')
        out += [f'<li style="color:{FILL[NOT_SATISFIED]}"><a href="#{anchor}{escape(v.id)}">{escape(v.id)}</a> '
                f"({escape(v.severity)}) {escape(v.title)}: {escape(v.reason)}</li>" for v in failing]
        out.append("</ul>")
    out.append("<h2>Controls</h2><table><tr><th>Control</th><th>Severity</th><th>Title</th><th>Verdict</th>"
               "<th>Tests passed</th></tr>")
    out += [f'<tr><td><a href="#{anchor}{escape(v.id)}">{escape(v.id)}</a></td><td>{escape(v.severity)}</td>'
            f"<td>{escape(v.title)}</td><td>{_badge(v.verdict)}</td><td>{v.passed}/{v.total}</td></tr>"
            for v in verdicts]
    out.append("</table></div>")
    for v in verdicts:
        out.append(_section(catalog, v, [r for r in results if v.id in r.controls],
                            [w for w in waivers if w.get("control") == v.id], prefix, anchor))
    return out


def _section(catalog: Catalog, v: ControlVerdict, tests: list[TestResult], waivers: list[dict[str, Any]],
             prefix: str, anchor: str = "") -> str:
    control = catalog.get(v.id)
    out = [f'<section id="{anchor}{escape(v.id)}" class="control"><h2>{escape(v.id)} {escape(v.title)} '
           f"{_badge(v.verdict)}</h2>",
           f"<p><strong>Severity:</strong> {escape(control.severity_text() if control else v.severity)}",
           f" &middot; <strong>Family:</strong> {escape(v.family)}</p>"]
    if control is not None:
        out.append(f"<p>{escape(control.rationale)}</p><p><strong>Mappings:</strong> "
                   f"{escape(control.mapping_text())}</p>")
    if v.reason:
        out.append(f"<p><strong>Reason:</strong> {escape(v.reason)}</p>")
    if tests:
        out.append("<table><tr><th>Test</th><th>Outcome</th><th>Message</th><th>Evidence</th></tr>")
        for t in tests:
            links = "<br>".join(f'<a class="evidence" href="{escape(prefix + f)}">{escape(f)}</a>'
                                for f in t.evidence_files)
            out.append(f"<tr><td>{escape(t.nodeid)}</td><td>{escape(t.outcome)}</td>"
                       f"<td>{escape(t.message[:1000])}</td><td>{links}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No test of this control ran.</p>")
    for w in waivers:
        out.append(f"<p><strong>Waiver:</strong> {escape(str(w))}</p>")
    out.append("</section>")
    return "".join(out)
