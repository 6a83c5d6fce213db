//! Folded stacks and an interactive flamegraph SVG, written from scratch.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nemutator_core::profile::{Frame, Profile};
use nemutator_core::report::escape_markup;

/// Image width in pixels.
const WIDTH: f64 = 1200.0;
/// Height of one frame row.
const ROW: f64 = 16.0;
/// Space above the frames (title, controls) and below them (details line).
const TOP: f64 = 48.0;
const BOTTOM: f64 = 28.0;
/// Side margin.
const PAD: f64 = 10.0;
/// Frames narrower than this are not drawn (their samples stay in the
/// parents' widths and tooltips).
const MIN_WIDTH: f64 = 0.1;
/// Approximate width of one character of the 12px font.
const CHAR_W: f64 = 7.0;

/// The display name of a frame: kernel frames carry a `_[k]` suffix, and
/// `;` and line breaks (which would break the folded format) are replaced.
fn display_name(f: &Frame) -> String {
    let mut name: String = f
        .name
        .chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    if f.kernel {
        name.push_str("_[k]");
    }
    name
}

/// Folded stacks: one `root;caller;leaf COUNT` line per distinct stack,
/// sorted, kernel frames suffixed `_[k]`. The format of Brendan Gregg's
/// `stackcollapse` scripts, readable by most flamegraph tools.
pub fn folded(profile: &Profile) -> String {
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for (frames, count) in &profile.stacks {
        let key = frames
            .iter()
            .map(display_name)
            .collect::<Vec<_>>()
            .join(";");
        *lines.entry(key).or_default() += count;
    }
    let mut out = String::new();
    for (stack, count) in lines {
        let _ = writeln!(out, "{stack} {count}");
    }
    out
}

#[derive(Default)]
struct Node {
    value: u64,
    kernel: bool,
    children: BTreeMap<String, Node>,
}

fn build_tree(profile: &Profile) -> Node {
    let mut root = Node::default();
    for (frames, count) in &profile.stacks {
        root.value += count;
        let mut node = &mut root;
        for f in frames {
            node = node.children.entry(display_name(f)).or_default();
            node.value += count;
            node.kernel = f.kernel;
        }
    }
    root
}

/// A stable colour per name: warm for user code, blue-green for the kernel.
fn colour(name: &str, kernel: bool) -> String {
    // FNV-1a, so colours do not change between runs.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let v = |shift: u32| f64::from((h >> shift) & 0xff) / 255.0;
    if kernel {
        let g = 150.0 + 60.0 * v(0);
        format!(
            "rgb({:.0},{:.0},{:.0})",
            60.0 + 40.0 * v(8),
            g,
            200.0 + 40.0 * v(16)
        )
    } else {
        let r = 205.0 + 50.0 * v(0);
        let g = 60.0 + 150.0 * v(8);
        format!("rgb({r:.0},{g:.0},{:.0})", 40.0 + 40.0 * v(16))
    }
}

fn fit_text(name: &str, width: f64) -> String {
    let fits = (width / CHAR_W).floor() as usize;
    let n = name.chars().count();
    if fits < 3 {
        String::new()
    } else if n <= fits {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(fits - 2).collect();
        s.push_str("..");
        s
    }
}

struct Layout<'a> {
    out: &'a mut String,
    total: u64,
    scale: f64,
    height: f64,
}

impl Layout<'_> {
    /// Draws `node`'s children from sample offset `start` at `depth`.
    fn children(&mut self, node: &Node, start: u64, depth: usize) {
        let mut offset = start;
        for (name, child) in &node.children {
            self.frame(name, child, offset, depth);
            offset += child.value;
        }
    }

    fn frame(&mut self, name: &str, node: &Node, start: u64, depth: usize) {
        let width = node.value as f64 * self.scale;
        if width < MIN_WIDTH {
            return;
        }
        let x = PAD + start as f64 * self.scale;
        let y = self.height - BOTTOM - (depth as f64 + 1.0) * ROW;
        let pct = 100.0 * node.value as f64 / self.total as f64;
        let esc = escape_markup(name);
        let _ = writeln!(
            self.out,
            "<g class=\"f\" data-s=\"{start}\" data-v=\"{v}\" data-d=\"{depth}\" data-n=\"{esc}\">\
             <title>{esc} ({v} samples, {pct:.2}%)</title>\
             <rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{h:.1}\" fill=\"{fill}\" rx=\"2\"/>\
             <text x=\"{tx:.2}\" y=\"{ty:.1}\">{text}</text></g>",
            v = node.value,
            w = width,
            h = ROW - 1.0,
            fill = colour(name, node.kernel),
            tx = x + 3.0,
            ty = y + ROW - 4.5,
            text = escape_markup(&fit_text(name, width - 6.0)),
        );
        self.children(node, start, depth + 1);
    }
}

fn max_depth(node: &Node) -> usize {
    node.children
        .values()
        .map(|c| 1 + max_depth(c))
        .max()
        .unwrap_or(0)
}

/// An interactive flamegraph: one rectangle per frame, as wide as its share
/// of the samples, callers below callees. Hovering shows the name, samples
/// and percentage; clicking a frame zooms into it (click the bottom row or
/// "Reset zoom" to go back); "Search" highlights frames matching a regular
/// expression. Self-contained: no external scripts, fonts or styles.
pub fn flamegraph_svg(profile: &Profile, title: &str) -> String {
    let tree = build_tree(profile);
    // One extra row for the "all" root.
    let depth = max_depth(&tree) + 1;
    let height = TOP + BOTTOM + depth as f64 * ROW;
    let total = tree.value;
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\" data-total=\"{total}\">\n\
         <style>text{{font-family:monospace;font-size:12px;fill:#000}}\
         .f{{cursor:pointer}}.f:hover rect{{stroke:#000;stroke-width:0.5}}\
         .hide{{display:none}}.dim rect{{opacity:0.5}}\
         .ctl{{cursor:pointer;fill:#333}}#details{{fill:#333}}</style>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#f8f8f4\"/>\n\
         <text x=\"{cx}\" y=\"20\" text-anchor=\"middle\" style=\"font-size:16px\">{t}</text>\n\
         <text x=\"{cx}\" y=\"36\" text-anchor=\"middle\">{sub}</text>\n\
         <text id=\"reset\" class=\"ctl hide\" x=\"{PAD}\" y=\"20\">Reset zoom</text>\n\
         <text id=\"search\" class=\"ctl\" x=\"{sx}\" y=\"20\" text-anchor=\"end\">Search</text>\n\
         <text id=\"matched\" x=\"{sx}\" y=\"36\" text-anchor=\"end\"></text>\n\
         <text id=\"details\" x=\"{PAD}\" y=\"{dy}\"> </text>\n\
         <g id=\"frames\">\n",
        w = WIDTH,
        cx = WIDTH / 2.0,
        sx = WIDTH - PAD,
        dy = height - 10.0,
        t = escape_markup(title),
        sub = escape_markup(&format!(
            "{} samples, {} lost, backend {}",
            profile.samples, profile.lost, profile.backend
        )),
    );
    if total > 0 {
        let mut layout = Layout {
            out: &mut out,
            total,
            scale: (WIDTH - 2.0 * PAD) / total as f64,
            height,
        };
        let root = Node {
            value: tree.value,
            kernel: false,
            children: tree.children,
        };
        layout.frame("all", &root, 0, 0);
    }
    out.push_str("</g>\n<script><![CDATA[\n");
    out.push_str(SCRIPT);
    out.push_str("\n]]></script>\n</svg>\n");
    out
}

/// Zoom, search and details. Frames carry their sample offset (`data-s`),
/// samples (`data-v`), depth (`data-d`) and full name (`data-n`).
const SCRIPT: &str = r#"(function () {
  var svg = document.documentElement;
  var W = 1200, PAD = 10, CW = 7;
  var total = +svg.getAttribute('data-total');
  var frames = Array.prototype.slice.call(document.querySelectorAll('g.f'));
  var details = document.getElementById('details');
  var reset = document.getElementById('reset');
  function fit(name, w) {
    var n = Math.floor((w - 6) / CW);
    if (n < 3) return '';
    return name.length <= n ? name : name.slice(0, n - 2) + '..';
  }
  function place(g, s0, v0) {
    var s = +g.getAttribute('data-s'), v = +g.getAttribute('data-v');
    var scale = (W - 2 * PAD) / v0;
    var x = PAD + (s - s0) * scale, w = v * scale;
    var r = g.querySelector('rect'), t = g.querySelector('text');
    r.setAttribute('x', x.toFixed(2)); r.setAttribute('width', w.toFixed(2));
    t.setAttribute('x', (x + 3).toFixed(2));
    t.textContent = fit(g.getAttribute('data-n'), w);
  }
  function zoom(z) {
    var s0 = +z.getAttribute('data-s'), v0 = +z.getAttribute('data-v'), d0 = +z.getAttribute('data-d');
    frames.forEach(function (g) {
      var s = +g.getAttribute('data-s'), v = +g.getAttribute('data-v'), d = +g.getAttribute('data-d');
      g.classList.remove('hide'); g.classList.remove('dim');
      if (d < d0 && s <= s0 && s + v >= s0 + v0) {
        g.classList.add('dim'); place(g, s, v);
      } else if (d >= d0 && s >= s0 && s + v <= s0 + v0) {
        place(g, s0, v0);
      } else {
        g.classList.add('hide');
      }
    });
    reset.classList.toggle('hide', d0 === 0);
  }
  frames.forEach(function (g) {
    g.addEventListener('click', function () { zoom(g); });
    g.addEventListener('mouseover', function () {
      details.textContent = g.querySelector('title').textContent;
    });
    g.addEventListener('mouseout', function () { details.textContent = ' '; });
  });
  reset.addEventListener('click', function () { if (frames.length) zoom(frames[0]); });
  document.getElementById('search').addEventListener('click', function () {
    var term = window.prompt('Search frames (regular expression):', '');
    var matched = document.getElementById('matched');
    var re = null;
    if (term) { try { re = new RegExp(term); } catch (e) { matched.textContent = 'bad expression'; return; } }
    var hits = 0, covered = -1;
    frames.forEach(function (g) {
      var r = g.querySelector('rect');
      if (!r.hasAttribute('data-fill')) r.setAttribute('data-fill', r.getAttribute('fill'));
      var hit = re && re.test(g.getAttribute('data-n'));
      r.setAttribute('fill', hit ? 'rgb(230,0,230)' : r.getAttribute('data-fill'));
      var s = +g.getAttribute('data-s'), v = +g.getAttribute('data-v');
      if (hit && s >= covered) { hits += v; covered = s + v; }
    });
    matched.textContent = re ? 'Matched: ' + (100 * hits / Math.max(total, 1)).toFixed(1) + '%' : '';
  });
})();"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_profile() -> Profile {
        Profile {
            stacks: vec![
                (vec![Frame::user("main"), Frame::user("hot")], 30),
                (
                    vec![
                        Frame::user("main"),
                        Frame::user("write"),
                        Frame::kernel("ksys_write"),
                    ],
                    10,
                ),
                (vec![Frame::user("a;b<c>&\"d\"")], 2),
            ],
            backend: "test",
            samples: 42,
            lost: 1,
        }
    }

    #[test]
    fn folds_stacks_with_kernel_suffix() {
        let f = folded(&mk_profile());
        assert_eq!(
            f,
            "a:b<c>&\"d\" 2\nmain;hot 30\nmain;write;ksys_write_[k] 10\n"
        );
    }

    #[test]
    fn folded_merges_stacks_that_fold_the_same() {
        let mut p = mk_profile();
        p.stacks.push((vec![Frame::user("a:b<c>&\"d\"")], 3));
        assert!(folded(&p).starts_with("a:b<c>&\"d\" 5\n"));
    }

    #[test]
    fn svg_has_one_titled_rect_per_frame_sized_by_samples() {
        let svg = flamegraph_svg(&mk_profile(), "demo <1>");
        assert!(svg.starts_with("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("demo &lt;1&gt;"));
        // all, main, hot, write, ksys_write_[k], a:b...
        assert_eq!(svg.matches("<g class=\"f\"").count(), 6);
        assert!(svg.contains("<title>hot (30 samples, 71.43%)</title>"));
        assert!(svg.contains("<title>all (42 samples, 100.00%)</title>"));
        assert!(svg.contains("<title>ksys_write_[k] (10 samples, 23.81%)</title>"));
        assert!(svg.contains("a:b&lt;c&gt;&amp;&quot;d&quot;"));
        // The root spans the full width between the margins.
        assert!(svg.contains("width=\"1180.00\""));
        // "hot" is 30/42 of it.
        assert!(svg.contains(&format!("width=\"{:.2}\"", 1180.0 * 30.0 / 42.0)));
        assert!(svg.contains("<script><![CDATA["));
        assert!(!svg[svg.find("<script>").unwrap_or(0)..].contains("]]>\n]]>"));
    }

    #[test]
    fn svg_of_an_empty_profile_is_valid() {
        let svg = flamegraph_svg(&Profile::default(), "empty");
        assert!(svg.contains("0 samples"));
        assert_eq!(svg.matches("<g class=\"f\"").count(), 0);
    }

    #[test]
    fn text_is_truncated_to_the_rect() {
        assert_eq!(fit_text("abcdefghij", 70.0), "abcdefghij");
        assert_eq!(fit_text("abcdefghijk", 70.0), "abcdefgh..");
        assert_eq!(fit_text("abc", 10.0), "");
    }

    #[test]
    fn colours_are_stable_and_distinguish_kernel() {
        assert_eq!(colour("x", false), colour("x", false));
        assert_ne!(colour("x", false), colour("x", true));
    }
}
