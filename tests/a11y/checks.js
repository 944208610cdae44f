// Accessibility checks run in the browser on a page of the web view
// (tests/tests/ui.rs runs this as a WebDriver script, a function body):
// the rules of axe-core that the page has broken or could break, written
// out so that they run where axe-core is not installed. Returns a list of
// problems, empty when there is none.
const problems = [];
const describe = (e) => e.id ? `#${e.id}` : e.outerHTML.slice(0, 90);
const shown = (e) => {
  if (e.closest("[hidden]") || e.getClientRects().length === 0) return false;
  const cs = getComputedStyle(e);
  return cs.visibility !== "hidden" && cs.display !== "none";
};
// The accessible name as far as this page needs it: aria-label,
// aria-labelledby, a <label>, a title.
const accessibleName = (e) => {
  const label = (e.getAttribute("aria-label") || "").trim();
  if (label) return label;
  const by = (e.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean)
    .map((id) => (document.getElementById(id) || {}).textContent || "").join(" ").trim();
  if (by) return by;
  const labels = [...(e.labels || [])].map((l) => l.textContent).join(" ").trim();
  if (labels) return labels;
  return (e.getAttribute("title") || "").trim();
};

// The language of the page (WCAG 3.1.1).
if (!document.documentElement.lang) problems.push("<html> has no lang");

// Every form control has a name (WCAG 4.1.2, axe's label rule).
for (const e of document.querySelectorAll("input:not([type=hidden]), textarea, select")) {
  if (!accessibleName(e)) problems.push(`form control without an accessible name: ${describe(e)}`);
}
for (const e of document.querySelectorAll("button, a[href]")) {
  if (!e.textContent.trim() && !accessibleName(e)) problems.push(`control without text or name: ${describe(e)}`);
}

// A pane that scrolls can be reached and scrolled by keyboard, and says
// what it is (axe's scrollable-region-focusable).
for (const e of document.body.querySelectorAll("*")) {
  const cs = getComputedStyle(e);
  if (!/auto|scroll/.test(cs.overflowX + " " + cs.overflowY) || e.tagName === "TEXTAREA") continue;
  if (e.tabIndex < 0) problems.push(`scroll pane not focusable: ${describe(e)}`);
  if (!e.getAttribute("role") || !accessibleName(e)) problems.push(`scroll pane without a role and a name: ${describe(e)}`);
}

// Text contrast at least 4.5:1 against what is behind it (WCAG 1.4.3 AA).
const rgba = (c) => {
  const m = /rgba?\(([^)]+)\)/.exec(c);
  if (!m) return null;
  const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
};
const over = (top, below) => ({
  r: top.r * top.a + below.r * (1 - top.a),
  g: top.g * top.a + below.g * (1 - top.a),
  b: top.b * top.a + below.b * (1 - top.a),
  a: 1,
});
const background = (e) => {
  const layers = [];
  for (let x = e; x; x = x.parentElement) {
    const c = rgba(getComputedStyle(x).backgroundColor);
    if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
  }
  return layers.reverse().reduce((below, top) => over(top, below), { r: 255, g: 255, b: 255, a: 1 });
};
const luminance = ({ r, g, b }) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
let texts = 0;
for (const e of document.body.querySelectorAll("*")) {
  if (e.closest("svg") || !shown(e)) continue;
  const text = [...e.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join("").trim();
  if (!text) continue;
  texts += 1;
  const bg = background(e);
  const fg = over(rgba(getComputedStyle(e).color), bg);
  const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  if (ratio < 4.5) {
    problems.push(`contrast ${ratio.toFixed(2)}:1 < 4.5:1 for "${text.slice(0, 30)}" in ${describe(e)} (${getComputedStyle(e).color} on rgb(${Math.round(bg.r)}, ${Math.round(bg.g)}, ${Math.round(bg.b)}))`);
  }
}
if (texts === 0) problems.push("no text was checked for contrast");

// Rows that open something on a click are reachable by keyboard.
for (const tr of document.querySelectorAll("#jobs tr.job")) {
  if (tr.tabIndex < 0) problems.push(`job row not reachable by keyboard: ${describe(tr)}`);
}
return problems;
