//! Every relative link in the project's Markdown resolves: README.md, docs/ and the other
//! Markdown files a reader follows from them. A link names a file or directory of this
//! repository, optionally with `#anchor`; the anchor must be a heading of the target, slugged
//! the way GitHub slugs headings. Links to `http(s)://` and `mailto:` are not followed (no test
//! touches the network).

#![expect(
    clippy::unwrap_used,
    reason = "a failed set-up step in a test should panic with its location"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Markdown files checked: README.md, everything under docs/, and every other tracked
/// `*.md` outside target/ and fuzz's generated directories.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.')
                    && !matches!(name.as_str(), "target" | "corpus" | "artifacts" | "dist")
                {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out.sort();
    out
}

/// The text outside fenced code blocks and inline code spans: links inside code are examples.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // A code span becomes placeholder text: whatever it holds is an example, not a link,
        // but one that is a link's whole text (`[`name`](target)`) keeps that link.
        let mut rest = line;
        while let Some(open) = rest.find('`') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('`') else {
                rest = after;
                break;
            };
            out.push_str(&"x".repeat(close.max(1)));
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// `(target)` of every inline link `[text](target)`.
fn links(text: &str) -> Vec<String> {
    let text = prose(text);
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        found.push(after[..end].trim().to_owned());
        rest = &after[end..];
    }
    found
}

/// GitHub's heading anchors: lower-case, punctuation other than `-` and `_` dropped, spaces
/// to `-`; a repeated heading gets `-1`, `-2`, ….
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while !seen.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
    }
    seen
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let files = markdown_files();
    assert!(
        files.iter().any(|f| f.ends_with("README.md"))
            && files.iter().any(|f| f.starts_with(root().join("docs"))),
        "README.md and docs/ must be found"
    );
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let rel = file.strip_prefix(root()).unwrap().display().to_string();
            if !target.exists() {
                broken.push(format!("{rel}: ({link}): no such file"));
                continue;
            }
            // A link must stay inside the repository: a fresh clone has nothing beside it.
            let inside = target
                .canonicalize()
                .unwrap()
                .starts_with(root().canonicalize().unwrap());
            if !inside {
                broken.push(format!("{rel}: ({link}): outside the repository"));
                continue;
            }
            if let Some(anchor) = anchor {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap_or_default());
                if !headings.contains(anchor) {
                    broken.push(format!("{rel}: ({link}): no heading #{anchor}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 10,
        "only {checked} relative links found: is the parser right?"
    );
}

#[test]
fn headings_slug_like_github() {
    let a = anchors(
        "# The daemon: `gh-token-refresh`\n## Exit codes\n## Exit codes\n```\n# not a heading\n```\n",
    );
    assert_eq!(
        a,
        BTreeSet::from([
            "the-daemon-gh-token-refresh".to_owned(),
            "exit-codes".to_owned(),
            "exit-codes-1".to_owned()
        ])
    );
    assert_eq!(
        links("see [a](x.md) and `[b](y.md)` and\n```\n[c](z.md)\n```\n[`d`](docs/d.md#h)"),
        ["x.md", "docs/d.md#h"]
    );
}
