//! The analysis's Markdown ([`crate::analysis::markdown`]) as HTML: the
//! few constructs it uses (headings, pipe tables, bullet lists, paragraphs,
//! `**bold**` and `` `code` ``), every piece of text escaped by maud. A
//! line it does not recognise is shown as a paragraph, as written.

use maud::{Markup, html};

enum Block {
    Heading(usize, String),
    Table(Vec<Vec<String>>),
    List(Vec<String>),
    Paragraph(String),
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            // A blank line ends a paragraph or list; tables end on their own.
            out.push(Block::Paragraph(String::new()));
            continue;
        }
        if let Some(rest) = t.strip_prefix('#') {
            let level = 1 + rest.chars().take_while(|c| *c == '#').count();
            out.push(Block::Heading(level.min(6), rest.trim_start_matches('#').trim().to_string()));
        } else if t.starts_with('|') {
            if is_rule(t) {
                continue;
            }
            match out.last_mut() {
                Some(Block::Table(rows)) => rows.push(cells(t)),
                _ => out.push(Block::Table(vec![cells(t)])),
            }
        } else if let Some(item) = t.strip_prefix("- ") {
            match out.last_mut() {
                Some(Block::List(items)) => items.push(item.to_string()),
                _ => out.push(Block::List(vec![item.to_string()])),
            }
        } else {
            match out.last_mut() {
                Some(Block::Paragraph(p)) if !p.is_empty() => {
                    p.push(' ');
                    p.push_str(t);
                }
                _ => out.push(Block::Paragraph(t.to_string())),
            }
        }
    }
    out
}

/// `**bold**` and `` `code` `` within a line; the rest as text.
fn inline(text: &str) -> Markup {
    let mut parts: Vec<(u8, String)> = Vec::new(); // 0 text, 1 bold, 2 code
    let mut rest = text;
    while !rest.is_empty() {
        let bold = rest.find("**");
        let code = rest.find('`');
        let (at, marker, kind) = match (bold, code) {
            (Some(b), Some(c)) if c < b => (c, "`", 2),
            (Some(b), _) => (b, "**", 1),
            (None, Some(c)) => (c, "`", 2),
            (None, None) => break,
        };
        let after = &rest[at + marker.len()..];
        let Some(end) = after.find(marker) else { break };
        parts.push((0, rest[..at].to_string()));
        parts.push((kind, after[..end].to_string()));
        rest = &after[end + marker.len()..];
    }
    parts.push((0, rest.to_string()));
    html! {
        @for (kind, s) in parts {
            @match kind { 1 => strong { (s) }, 2 => code { (s) }, _ => (s) }
        }
    }
}

/// The Markdown as HTML.
pub fn render(text: &str) -> Markup {
    html! {
        @for b in blocks(text) {
            @match b {
                Block::Heading(1, t) => h2 { (inline(&t)) },
                Block::Heading(2, t) => h2 { (inline(&t)) },
                Block::Heading(_, t) => h3 { (inline(&t)) },
                Block::Table(rows) => div.table { table {
                    @if let Some((head, body)) = rows.split_first() {
                        thead { tr { @for c in head { th scope="col" { (inline(c)) } } } }
                        tbody { @for r in body { tr { @for c in r { td { (inline(c)) } } } } }
                    }
                } },
                Block::List(items) => ul { @for i in items { li { (inline(&i)) } } },
                Block::Paragraph(p) => @if !p.is_empty() { p { (inline(&p)) } },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_tables_lists_and_inline_marks_become_html_and_text_is_escaped() {
        let md = "# Title <x>\n\nSome `code` and **bold**.\n\n| a | b |\n|---|---|\n| 1 | <2> |\n\n- one\n- two\n";
        let html = render(md).into_string();
        assert!(html.contains("<h2>Title &lt;x&gt;</h2>"), "{html}");
        assert!(html.contains("<p>Some <code>code</code> and <strong>bold</strong>.</p>"), "{html}");
        assert!(html.contains("<th scope=\"col\">a</th>") && html.contains("<td>&lt;2&gt;</td>"), "{html}");
        assert!(html.contains("<ul><li>one</li><li>two</li></ul>"), "{html}");
        assert!(!html.contains("---"));
    }
}
