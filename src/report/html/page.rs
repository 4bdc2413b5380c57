//! The page itself: one HTML file with the chart runtime (vega, vega-lite, vega-embed, vendored
//! in `vendor/vega/` by `scripts/setup/vendor_vega.sh`, embedded in the binary), the report's
//! own script and style, the chart specifications as JSON, and the sections. Its
//! Content-Security-Policy allows no network request at all (images are data URIs).
use serde_json::Value;

const VEGA: &str = include_str!("../../../vendor/vega/vega.min.js");
const VEGA_LITE: &str = include_str!("../../../vendor/vega/vega-lite.min.js");
const VEGA_EMBED: &str = include_str!("../../../vendor/vega/vega-embed.min.js");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// HTML-escape text (element content and quoted attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A rate as a percentage with `digits` decimals (0.5 → "50.0%").
pub fn pct(v: f64, digits: usize) -> String {
    format!("{:.digits$}%", 100.0 * v)
}

/// A table cell: text shown, and the value it sorts by (numbers sort as numbers).
pub enum Cell {
    Text(String),
    Num(Option<f64>, String),
}

impl Cell {
    pub fn num(v: Option<f64>, shown: impl Fn(f64) -> String) -> Cell {
        let text = v.map(&shown).unwrap_or_else(|| "–".into());
        Cell::Num(v.filter(|x| x.is_finite()), text)
    }
}

/// The page being built.
#[derive(Default)]
pub struct Page {
    pub body: String,
    specs: serde_json::Map<String, Value>,
    nav: Vec<(String, String)>,
}

impl Page {
    /// A placeholder for chart `spec`, rendered by the page's script.
    pub fn chart(&mut self, spec: Value) -> String {
        let id = format!("chart-{}", self.specs.len());
        self.specs.insert(id.clone(), spec);
        format!("<div class=\"chart\" data-chart=\"{id}\"></div>")
    }

    pub fn charts(&self) -> usize {
        self.specs.len()
    }

    /// Open a section with a heading and a navigation entry.
    pub fn section(&mut self, id: &str, title: &str, kind: &str) {
        self.nav.push((id.to_string(), title.to_string()));
        self.body += &format!(
            "<section id=\"{}\" data-kind=\"{kind}\"><h2>{}</h2>\n",
            esc(id),
            esc(title)
        );
    }

    pub fn end_section(&mut self) {
        self.body += "</section>\n";
    }

    /// A sortable table (click a heading).
    pub fn table(&mut self, class: &str, head: &[&str], rows: Vec<Vec<Cell>>) {
        let mut t = format!("<table class=\"sortable {class}\"><thead><tr>");
        for h in head {
            t += &format!("<th>{}</th>", esc(h));
        }
        t += "</tr></thead><tbody>\n";
        for r in rows {
            t += "<tr>";
            for c in r {
                match c {
                    Cell::Text(s) => t += &format!("<td>{}</td>", esc(&s)),
                    Cell::Num(v, s) => {
                        let key = v.map(|v| format!("{v}")).unwrap_or_default();
                        t += &format!("<td class=\"num\" data-v=\"{key}\">{}</td>", esc(&s));
                    }
                }
            }
            t += "</tr>\n";
        }
        t += "</tbody></table>\n";
        self.body += &t;
    }

    /// The finished page.
    pub fn finish(
        self,
        title: &str,
        header: &str,
        images: serde_json::Map<String, Value>,
    ) -> String {
        let json = |v: Value| {
            serde_json::to_string(&v)
                .expect("JSON")
                .replace("</", "<\\/")
        };
        let specs = json(Value::Object(self.specs));
        let images = json(Value::Object(images));
        let nav: String = self
            .nav
            .iter()
            .map(|(id, t)| format!("<a href=\"#{}\">{}</a>", esc(id), esc(t)))
            .collect::<Vec<_>>()
            .join("\n");
        // vega compiles its expressions with Function(): 'unsafe-eval' is needed; nothing may
        // be fetched (default-src 'none'), images come inline.
        let csp = "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:";
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n\
             <script>{VEGA}</script>\n<script>{VEGA_LITE}</script>\n<script>{VEGA_EMBED}</script>\n\
             </head><body>\n<header>{header}</header>\n<nav>{nav}</nav>\n<main>\n{}</main>\n\
             <script id=\"fool-specs\" type=\"application/json\">{specs}</script>\n\
             <script id=\"fool-images\" type=\"application/json\">{images}</script>\n<script>{SCRIPT}</script>\n\
             </body></html>\n",
            esc(title),
            self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_cannot_close_their_script_and_text_is_escaped() {
        let mut p = Page::default();
        let div = p.chart(serde_json::json!({"title": "</script><b>"}));
        assert_eq!(div, "<div class=\"chart\" data-chart=\"chart-0\"></div>");
        p.section("s", "a <b> & 'c'", "bench");
        let html = p.finish("t", "", Default::default());
        assert!(html.contains("<h2>a &lt;b&gt; &amp; &#39;c&#39;</h2>"));
        assert!(html.contains("\"title\":\"<\\/script><b>\""));
        assert!(!html.contains("\"</script><b>"));
        for (name, js) in [
            ("vega", VEGA),
            ("vega-lite", VEGA_LITE),
            ("vega-embed", VEGA_EMBED),
        ] {
            assert!(
                !js.to_lowercase().contains("</script"),
                "{name} would close its script element"
            );
        }
    }
}
