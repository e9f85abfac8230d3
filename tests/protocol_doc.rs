//! `docs/PROTOCOL.md` is the document the crate cites: every "PROTOCOL.md §x" in the
//! sources, tests and README names a section it has, and it states its revision.

use std::path::{Path, PathBuf};

fn protocol() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md is in the repository")
}

/// The section numbers ("2", "2.3", "6.4") of the document's headings.
fn sections(doc: &str) -> Vec<String> {
    doc.lines()
        .filter(|l| l.starts_with("## ") || l.starts_with("### "))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .map(|n| n.trim_end_matches('.').to_string())
        .filter(|n| n.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("readable directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every "§x" or "§x.y" that follows "PROTOCOL.md" on one line of `text`.
fn citations(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| l.contains("PROTOCOL.md")) {
        let after = &line[line.find("PROTOCOL.md").unwrap_or(0)..];
        for part in after.split('§').skip(1) {
            let number: String = part
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.').to_string();
            if !number.is_empty() {
                found.push(number);
            }
        }
    }
    found
}

#[test]
fn every_cited_section_exists() {
    let doc = protocol();
    let have = sections(&doc);
    assert!(
        have.contains(&"6.4".to_string()),
        "headings parsed: {have:?}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "examples", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.push(root.join("README.md"));
    let mut cited = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for number in citations(&text) {
            cited += 1;
            assert!(
                have.contains(&number),
                "{} cites PROTOCOL.md §{number}, which docs/PROTOCOL.md does not have",
                file.display()
            );
        }
    }
    assert!(
        cited > 10,
        "only {cited} citations found: is the scan broken?"
    );
}

#[test]
fn states_its_wire_version_and_revision() {
    let doc = protocol();
    assert!(doc.starts_with("# Wire protocol, version 1\n"));
    assert!(
        doc.contains("\nRevision "),
        "the document names its revision"
    );
    assert!(doc.contains("| revision | date | what changed |"));
    assert!(!doc.contains("PLACEHOLDER"), "an unfinished section");
}
