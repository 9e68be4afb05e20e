#!/usr/bin/env bash
# The HTML report in a real browser: Debian's chromium, headless. The file
# must be self-contained (no script, nothing fetched), the DOM Chromium
# builds must hold the four SVG charts with their data (the fourth: the top
# allocation sites of a profiled run, labelled with file:line), and a screenshot
# must show them drawn: the pixels of each series' colour are counted
# (python3-pil). The screenshot is kept as tests/tools/html-report.png in the
# build tree for a person to look at. Exit 77 (skipped) without chromium.
# Usage: html.sh TOOL LIBPOOLMALLOC FRAG PROBE BUILD_DIR
set -euo pipefail
tool="$(readlink -f "$1")"
frag="$(readlink -f "$3")"
build="$(readlink -f "$5")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python=/usr/bin/python3
fail() { echo "html: FAIL: $*" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then
  echo "html: SKIPPED: no chromium (Debian: apt-get install chromium)" >&2
  exit 77
fi
"$python" -c "import PIL" 2>/dev/null || fail "python3-pil is needed to read the screenshot"

# Profiled, so the report has the chart of allocation sites too (frag's
# three malloc calls; its frames are module+offset, resolved with --module).
# Scattered mode keeps 1 MiB live: at the default rate (one sample per
# 512 KiB) a site had no live sample in about one run in eight, and its bar
# no width; one per 16 KiB gives each site dozens.
POOLMALLOC_PROFILE_RATE=16384 "$tool" run -q --profile --stats "$work/frag.jsonl" --interval 50ms -- "$frag" scattered 300 >/dev/null
"$tool" report --module "$frag" --html "$work/report.html" "$work/frag.jsonl" 2>/dev/null
"$tool" report --module "$frag" --json "$work/frag.jsonl" >"$work/report.json"
debug=0
if readelf -S "$frag" 2>/dev/null | grep -q '\.debug_info'; then debug=1; fi

# Self-contained: nothing the browser could fetch, no script at all.
"$python" - "$work/report.html" <<'PY' || fail "the HTML is not self-contained"
import sys
from html.parser import HTMLParser
class Check(HTMLParser):
    def __init__(self):
        super().__init__(); self.svgs = []; self.csp = False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for k in ("src", "href", "xlink:href"):
            assert k not in a, (tag, k, a[k])
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = "default-src 'none'" in a["content"]
        if tag == "svg":
            self.svgs.append(a.get("id"))
text = open(sys.argv[1]).read()
assert "url(" not in text and "@import" not in text and "http://" not in text.replace(
    'xmlns="http://www.w3.org/2000/svg"', "")
c = Check(); c.feed(text)
assert c.csp, "no Content-Security-Policy"
assert c.svgs == ["chart-timeline", "chart-classes", "chart-occupancy", "chart-sites"], c.svgs
PY
echo "html: self-contained, four SVG charts, a Content-Security-Policy"

chrome() {
  timeout 90 "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
    --user-data-dir="$(mktemp -d -p "$work")" "$@" 2>>"$work/chromium.log"
}

# The DOM as Chromium parsed it.
chrome --dump-dom "file://$work/report.html" >"$work/dom.html" || {
  tail -20 "$work/chromium.log" >&2
  fail "chromium --dump-dom"
}
"$python" - "$work/dom.html" "$work/report.json" "$debug" <<'PY' || fail "the charts in the DOM"
import json, re, sys
from html.parser import HTMLParser
report = json.load(open(sys.argv[2]))
class Dom(HTMLParser):
    def __init__(self):
        super().__init__(); self.svg = None; self.found = {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.svg = a.get("id"); self.found[self.svg] = []
        elif self.svg:
            self.found[self.svg].append((tag, a))
    def handle_endtag(self, tag):
        if tag == "svg": self.svg = None
d = Dom(); d.feed(open(sys.argv[1]).read())
timeline = d.found["chart-timeline"]
lines = {a["class"]: a["points"].split() for t, a in timeline if t == "polyline"}
assert set(lines) == {"series arenas", "series pools", "series rss", "series live"}, lines.keys()
n = len(report["timeline"])
for name, points in lines.items():
    assert len(points) == n, (name, len(points), n)
    xs = [float(p.split(",")[0]) for p in points]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 500, (name, xs[0], xs[-1])
# RSS is drawn above live bytes at the end (y grows downwards).
assert float(lines["series rss"][-1].split(",")[1]) < float(lines["series live"][-1].split(",")[1])
used = [c for c in report["classes"] if c["pool_bytes"] > 0 or c["live_bytes"] > 0]
bars = [a for t, a in d.found["chart-classes"] if t == "rect" and "pool" in a.get("class", "")]
assert len(bars) == len(used), (len(bars), len(used))
assert all(float(b["height"]) >= 0 for b in bars) and max(float(b["height"]) for b in bars) > 100
occupancy = [a for t, a in d.found["chart-occupancy"] if t == "rect"]
assert len(occupancy) == 10, len(occupancy)
# The sites chart: one row per site of either top list, bars as wide as
# their bytes (each panel on its own scale), labelled by the first frame.
profile = report["profile"]
stacks = []
for site in profile["top_live"] + profile["top_allocated"]:
    key = [f["frame"] for f in site["frames"]]
    if key not in stacks:
        stacks.append(key)
sites = d.found["chart-sites"]
live = [a for t, a in sites if t == "rect" and a.get("class") == "bar site-live"]
alloc = [a for t, a in sites if t == "rect" and a.get("class") == "bar site-alloc"]
# frag's three calls, and maybe stdio's buffer for its printf, if sampled.
frag_stacks = [k for k in stacks if k[0].startswith("pmtool_frag")]
assert len(frag_stacks) == 3 and len(live) == len(alloc) == len(stacks), (len(live), len(alloc), stacks)
def proportional(bars, values):
    widths = sorted((float(a["width"]) for a in bars), reverse=True)
    values = sorted(values, reverse=True)
    assert widths[0] > 120, widths
    for w, v in zip(widths, values):
        assert abs(w / widths[0] - v / values[0]) < 0.02, (widths, values)
by_stack = {}
for site in profile["top_live"] + profile["top_allocated"]:
    by_stack[tuple(f["frame"] for f in site["frames"])] = site
proportional(alloc, [s["alloc_bytes"] for s in by_stack.values()])
proportional(live, [s["live_bytes"] for s in by_stack.values()])
class Labels(HTMLParser):
    def __init__(self):
        super().__init__(); self.inside = False; self.labels = []
    def handle_starttag(self, tag, attrs):
        if tag == "text" and dict(attrs).get("class") == "site-label":
            self.inside = True; self.labels.append("")
        elif tag == "title":
            self.inside = False
    def handle_data(self, data):
        if self.inside: self.labels[-1] += data
l = Labels(); l.feed(open(sys.argv[1]).read())
assert len(l.labels) == len(stacks), l.labels
if sys.argv[3] == "1":
    frag_labels = [x for x in l.labels if re.fullmatch(r"main \(frag\.c:\d+\)", x)]
    assert len(frag_labels) == 3, l.labels
print(f"html: DOM: 4 series of {n} points, {len(bars)} class bars, 10 occupancy bars, "
      f"{len(live)} sites: {l.labels}")
PY

# What a person sees.
chrome --window-size=1100,3300 --screenshot="$work/shot.png" "file://$work/report.html" >/dev/null || {
  tail -20 "$work/chromium.log" >&2
  fail "chromium --screenshot"
}
cp "$work/shot.png" "$build/tests/tools/html-report.png" 2>/dev/null || true
"$python" - "$work/shot.png" <<'PY' || fail "the screenshot does not show the charts"
import sys
from PIL import Image
image = Image.open(sys.argv[1]).convert("RGB")
w, h = image.size
pixels = image.load()
colours = {  # report_html.c's palette
    "RSS line": (0xd6, 0x27, 0x28), "live line": (0x1f, 0x77, 0xb4),
    "pools line": (0xff, 0x7f, 0x0e), "arenas line": (0x2c, 0xa0, 0x2c),
    "pool bars": (0xff, 0xbb, 0x78), "sparse arena bars": (0xc5, 0xb0, 0xd5),
    "site live bars": (0x17, 0xbe, 0xcf), "site allocated bars": (0x8c, 0x56, 0x4b)}
count = {k: 0 for k in colours}
xs = {k: [] for k in colours}
for y in range(0, h, 2):
    for x in range(0, w, 2):
        p = pixels[x, y]
        for k, c in colours.items():
            if all(abs(p[i] - c[i]) <= 12 for i in range(3)):
                count[k] += 1; xs[k].append(x)
print("html: screenshot pixels (every 4th):", count)
# The RSS line is drawn first: where it runs along the pools line it is
# covered (137 pixels were seen once), hence its lower bar.
minimum = {"RSS line": 100, "live line": 150, "pools line": 50, "arenas line": 50,
           "pool bars": 400, "sparse arena bars": 400,
           "site live bars": 100, "site allocated bars": 100}
for k, m in minimum.items():
    assert count[k] >= m, (k, count[k], m)
# The lines cross the whole plot, not a dot in a corner.
for k in ("RSS line", "live line"):
    assert max(xs[k]) - min(xs[k]) > w / 2, (k, min(xs[k]), max(xs[k]))
PY
echo "html: chromium drew every chart (screenshot: $build/tests/tools/html-report.png)"
echo "html: ok"
