//! The shape of a job document, checked in one pass before any parser
//! sees it: what would make parsing slow or its result huge is refused
//! with an error naming the limit.

use super::SpecError;

/// Deepest nesting of `[`/`{` a document may have (a job document needs
/// four or five levels).
pub const MAX_NESTING: usize = 32;
/// Widest indentation a YAML line may have (columns).
pub const MAX_INDENT: usize = 256;
/// Rejects, in one pass and before any parser sees it, a document whose
/// shape alone would make parsing slow or its result huge: flow nesting
/// deeper than [`MAX_NESTING`], indentation wider than [`MAX_INDENT`], or
/// YAML aliases (`*name`, which can expand exponentially; job documents
/// never need them).
/// Whether a YAML scalar (quoted, or an alias) can begin after `prev`.
fn scalar_may_start_after(prev: u8) -> bool {
    matches!(prev, b' ' | b'\t' | b'\n' | b'[' | b',' | b'{' | b':' | b'-')
}

pub(super) fn check_shape(text: &str) -> Result<(), SpecError> {
    let shape = |reason: String| SpecError::Parse { field: ".".into(), reason };
    let (mut depth, mut quote, mut escaped, mut comment) = (0usize, None::<u8>, false, false);
    let mut line_start = true;
    let mut indent = 0usize;
    let mut prev = b'\n';
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if b == b'\n' {
            comment = false;
            line_start = true;
            indent = 0;
            prev = b;
            continue;
        }
        if line_start {
            if b == b' ' {
                indent += 1;
                if indent > MAX_INDENT {
                    return Err(shape(format!(
                        "indentation deeper than {MAX_INDENT} columns (line starting at byte {i})"
                    )));
                }
                prev = b;
                continue;
            }
            line_start = false;
        }
        if comment {
            continue;
        }
        match quote {
            Some(q) => {
                if q == b'"' && b == b'\\' && !escaped {
                    escaped = true;
                    continue;
                }
                if b == q && !escaped {
                    quote = None;
                }
                escaped = false;
            }
            None => match b {
                // A quote opens a scalar only where a scalar can start.
                b'"' | b'\'' if scalar_may_start_after(prev) => {
                    quote = Some(b);
                }
                b'#' if prev == b' ' || prev == b'\t' || prev == b'\n' => comment = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(shape(format!("nested deeper than {MAX_NESTING} levels (at byte {i})")));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b'*' if scalar_may_start_after(prev)
                    && text.as_bytes().get(i + 1).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') =>
                {
                    return Err(shape(format!("YAML aliases (*name) are not accepted in job documents (at byte {i})")));
                }
                _ => {}
            },
        }
        prev = b;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::spec::{parse_document, parse_job};

    const OK: &str = "apiVersion: twinmesh.io/v1\nmetadata: {name: a, origin: {cluster: dc-core}}\nspec:\n  stages:\n    - {id: s, compute: {cpu: 1, mem_gb: 1, duration_ms: 10}}\n";

    // Rule: a document's shape is checked before any parser sees it: deep
    // nesting, deep indentation and aliases get an error naming the limit,
    // in one linear pass (a 60 KB nested body is refused at once).
    #[test]
    fn deep_nesting_wide_indentation_and_aliases_are_refused_by_name() {
        parse_job(OK).expect("a plain document passes");
        let deep = format!("apiVersion: twinmesh.io/v1\nmetadata: {}{}", "[".repeat(30_000), "]".repeat(30_000));
        let t = std::time::Instant::now();
        let e = parse_document(&deep).unwrap_err().to_string();
        assert!(e.contains("nested deeper than 32 levels"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "linear, not the parser's time");
        let json = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert!(parse_document(&json).unwrap_err().to_string().contains("nested deeper"));
        let mut indented = String::from("a:\n");
        for i in 1..300 {
            indented.push_str(&format!("{}b{i}:\n", " ".repeat(i)));
        }
        assert!(parse_document(&indented).unwrap_err().to_string().contains("indentation deeper than 256"));
        let laughs = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
        let e = parse_document(laughs).unwrap_err().to_string();
        assert!(e.contains("aliases"), "{e}");
    }

    // Rule: what looks like structure inside quotes, comments or plain
    // words is not structure; a stray apostrophe does not hide nesting.
    #[test]
    fn quotes_and_comments_do_not_count_and_do_not_hide() {
        let quoted = OK.replace("name: a,", &format!("name: a, labels: {{x: \"{}*y\"}},", "[".repeat(50)));
        let e = parse_document(&quoted).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!e.contains("nested") && !e.contains("aliases"), "{e}");
        let commented = format!("# {}\n# *alias\n{OK}", "{".repeat(50));
        parse_job(&commented).expect("comments are not structure");
        let sneaky = format!("a: it's {}{}", "[".repeat(40), "]".repeat(40));
        assert!(parse_document(&sneaky).unwrap_err().to_string().contains("nested deeper"));
        let long = OK.replace("cluster: dc-core", &format!("cluster: dc-core, node: {}", "n".repeat(300)));
        assert_eq!(parse_job(&long).unwrap_err().field(), "metadata.origin.node");
    }
}
