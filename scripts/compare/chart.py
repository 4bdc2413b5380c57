"""Line charts for the benchmark scripts: one SVG and one PNG (Pillow, already a torchvision
dependency) with a log2 x axis, so the scaling benchmarks need no plotting package.

    from chart import line_chart
    line_chart("docs/x", "title", "batch", "image-steps/s", {"fool": [(1, 20.0), (8, 30.0)]})
"""
import math

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
W, H, LEFT, RIGHT, TOP, BOTTOM = 760, 460, 80, 200, 50, 60


def _ticks(lo, hi, n=5):
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    out, v = [], start
    while not out or out[-1] < hi:  # the last tick is at or above hi: nothing is clipped
        out.append(round(v, 10))
        v += step
    return out


def _fmt(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:g}"


def line_chart(path_stem, title, xlabel, ylabel, series, dashed=()):
    """series: {name: [(x, y), ...]} with numeric x > 0 (log2 axis) or string x (categories, in
    order of first appearance); writes path_stem.svg and .png."""
    cats = []
    for pts in series.values():
        cats += [x for x, _ in pts if isinstance(x, str) and x not in cats]
    if cats:  # categories: positions 1, 2, 4, ... on the log2 axis, labelled by name
        pos = {c: 2.0 ** i for i, c in enumerate(cats)}
        series = {k: [(pos[x], y) for x, y in pts] for k, pts in series.items()}
    label = {v: k for k, v in pos.items()} if cats else {}
    xs = sorted({x for pts in series.values() for x, _ in pts})
    ys = [y for pts in series.values() for _, y in pts]
    yt = _ticks(0.0, max(ys) * 1.05)
    xl = {x: label.get(x, _fmt(x)) for x in xs}
    x0, x1 = math.log2(xs[0]), math.log2(xs[-1])
    if x1 == x0:
        x1 = x0 + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x):
        return LEFT + (math.log2(x) - x0) / (x1 - x0) * pw

    def py(y):
        return TOP + ph - (y - yt[0]) / (yt[-1] - yt[0]) * ph

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="13"><rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="28" text-anchor="middle" font-size="16">{title}</text>']
    for v in yt:
        svg.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{LEFT - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for x in xs:
        svg.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#eee"/>'
                   f'<text x="{px(x):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{xl[x]}</text>')
    svg.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    svg.append(f'<text x="{LEFT + pw / 2}" y="{H - 15}" text-anchor="middle">{xlabel}</text>')
    svg.append(f'<text transform="translate(20,{TOP + ph / 2}) rotate(-90)" text-anchor="middle">{ylabel}</text>')
    for i, (name, pts) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="6,4"' if name in dashed else ""
        svg.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for x, y in pts:
            svg.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>')
        ly = TOP + 10 + 20 * i
        svg.append(f'<line x1="{LEFT + pw + 12}" x2="{LEFT + pw + 36}" y1="{ly}" y2="{ly}" stroke="{c}" '
                   f'stroke-width="2"{dash}/><text x="{LEFT + pw + 42}" y="{ly + 4}">{name}</text>')
    svg.append("</svg>")
    with open(path_stem + ".svg", "w") as f:
        f.write("\n".join(svg) + "\n")

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (W, H), "white")
    dr = ImageDraw.Draw(img)
    dr.text((W / 2, 20), title, fill="black", anchor="mm")
    for v in yt:
        dr.line([(LEFT, py(v)), (LEFT + pw, py(v))], fill="#dddddd")
        dr.text((LEFT - 6, py(v)), _fmt(v), fill="black", anchor="rm")
    for x in xs:
        dr.text((px(x), TOP + ph + 12), xl[x], fill="black", anchor="mm")
    dr.rectangle([LEFT, TOP, LEFT + pw, TOP + ph], outline="#444444")
    dr.text((LEFT + pw / 2, H - 15), xlabel, fill="black", anchor="mm")
    dr.text((8, TOP - 20), ylabel, fill="black")
    for i, (name, pts) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        pts = [(px(x), py(y)) for x, y in sorted(pts)]
        if name in dashed:
            for (a, b), (cc, dd) in zip(pts, pts[1:]):
                for t in range(0, 20, 2):
                    dr.line([(a + (cc - a) * t / 20, b + (dd - b) * t / 20),
                             (a + (cc - a) * (t + 1) / 20, b + (dd - b) * (t + 1) / 20)], fill=c, width=2)
        else:
            dr.line(pts, fill=c, width=2)
        for x, y in pts:
            dr.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        ly = TOP + 10 + 20 * i
        dr.line([(LEFT + pw + 12, ly), (LEFT + pw + 36, ly)], fill=c, width=2)
        dr.text((LEFT + pw + 42, ly), name, fill="black", anchor="lm")
    img.save(path_stem + ".png")
