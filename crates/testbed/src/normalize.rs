//! Normalisation of `nft list ruleset` output.

/// Makes two `nft list ruleset` texts comparable when they differ only in
/// what nft does not keep stable.
///
/// Every `elements = { … }` block (possibly wrapped over several lines) is
/// split on top-level commas (not inside double quotes or nested braces),
/// its elements trimmed and sorted, and printed one element per line at the
/// indentation of the original `elements` line. All other lines are kept as
/// they are, minus trailing whitespace; empty lines are dropped and the output
/// ends with exactly one newline (an input without content gives `""`).
pub fn normalize_nft_listing(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
    while let Some(line) = lines.next() {
        let body = line.trim_start();
        let Some(rest) = body.strip_prefix("elements = {") else {
            out.push(line.to_owned());
            continue;
        };
        let indent = &line[..line.len() - body.len()];
        let mut original = vec![line];
        let mut inner = rest.to_owned();
        let mut block_end = closing_brace(&inner);
        while block_end.is_none() {
            let Some(next) = lines.next() else { break };
            original.push(next);
            inner.push(' ');
            inner.push_str(next);
            block_end = closing_brace(&inner);
        }
        let Some(end) = block_end else {
            // Unterminated block: keep it as it was.
            out.extend(original.into_iter().map(str::to_owned));
            continue;
        };
        let mut elements = split_top_level(&inner[..end]);
        elements.sort_unstable();
        out.push(format!("{indent}elements = {{"));
        let count = elements.len();
        for (i, element) in elements.into_iter().enumerate() {
            let comma = if i + 1 < count { "," } else { "" };
            out.push(format!("{indent}\t{element}{comma}"));
        }
        match inner[end + 1..].trim() {
            "" => out.push(format!("{indent}}}")),
            after => out.push(format!("{indent}}} {after}")),
        }
    }
    if out.is_empty() {
        return String::new();
    }
    let mut result = out.join("\n");
    result.push('\n');
    result
}

/// Byte index of the `}` closing a block whose opening brace precedes `s`.
fn closing_brace(s: &str) -> Option<usize> {
    let mut scanner = Scanner::default();
    s.char_indices()
        .find_map(|(i, c)| (scanner.step(c) && c == '}' && scanner.depth == -1).then_some(i))
}

/// Splits on commas outside quotes and nested braces; trims, drops empties.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut scanner = Scanner::default();
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if scanner.step(c) && c == ',' && scanner.depth == 0 {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Tracks double quotes (with backslash escapes) and brace depth.
#[derive(Default)]
struct Scanner {
    depth: i32,
    in_quotes: bool,
    escaped: bool,
}

impl Scanner {
    /// Feeds one character; returns whether it is structural (outside quotes).
    fn step(&mut self, c: char) -> bool {
        if self.in_quotes {
            match (self.escaped, c) {
                (true, _) => self.escaped = false,
                (false, '\\') => self.escaped = true,
                (false, '"') => self.in_quotes = false,
                _ => {}
            }
            return false;
        }
        match c {
            '"' => self.in_quotes = true,
            '{' => self.depth += 1,
            '}' => self.depth -= 1,
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_nft_listing;

    const SAMPLE_A: &str = "table ip kube-nftproxy {
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment \"ClusterIP\"
\t\telements = { 10.96.0.10 . udp . 53 : goto service-ABC-default/kubernetes/tcp/https,
\t\t\t     10.96.0.1 . tcp . 443 comment \"default/kubernetes:https\" : goto service-ABC-default/kubernetes/tcp/https }
\t}
}
";

    const SAMPLE_B: &str = "table ip kube-nftproxy {
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment \"ClusterIP\"
\t\telements = { 10.96.0.1 . tcp . 443 comment \"default/kubernetes:https\" : goto service-ABC-default/kubernetes/tcp/https,
\t\t\t     10.96.0.10 . udp . 53 : goto service-ABC-default/kubernetes/tcp/https }

\t}
}
";

    #[test]
    fn element_order_does_not_matter() {
        let expected = "table ip kube-nftproxy {
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment \"ClusterIP\"
\t\telements = {
\t\t\t10.96.0.1 . tcp . 443 comment \"default/kubernetes:https\" : goto service-ABC-default/kubernetes/tcp/https,
\t\t\t10.96.0.10 . udp . 53 : goto service-ABC-default/kubernetes/tcp/https
\t\t}
\t}
}
";
        assert_eq!(normalize_nft_listing(SAMPLE_A), expected);
        assert_eq!(normalize_nft_listing(SAMPLE_B), expected);
    }

    #[test]
    fn quoted_commas_and_nested_braces_do_not_split() {
        let a = "\t\telements = { 1.2.3.4 comment \"a, b\", 5.6.7.8 comment \"say \\\"x, y\\\"\",\n\t\t\t     9.9.9.9 : { x, y } }";
        let expected = "\t\telements = {
\t\t\t1.2.3.4 comment \"a, b\",
\t\t\t5.6.7.8 comment \"say \\\"x, y\\\"\",
\t\t\t9.9.9.9 : { x, y }
\t\t}
";
        assert_eq!(normalize_nft_listing(a), expected);
    }

    #[test]
    fn single_line_block() {
        let a = "\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.96.0.10, 10.96.0.1 }\n\t}\n";
        let b = "\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.96.0.1, 10.96.0.10 }   \n\t}";
        let expected = "\tset s {\n\t\ttype ipv4_addr\n\t\telements = {\n\t\t\t10.96.0.1,\n\t\t\t10.96.0.10\n\t\t}\n\t}\n";
        assert_eq!(normalize_nft_listing(a), expected);
        assert_eq!(normalize_nft_listing(b), expected);
    }

    #[test]
    fn listing_without_elements_only_loses_blank_lines() {
        let rule = "\t\tip daddr 10.0.0.1 numgen random mod 2 vmap { 1 : goto b, 0 : goto a }";
        let input = format!("table ip t {{\n\n\tchain c {{  \n{rule}\n\t}}\n}}\n\n\n");
        let expected = format!("table ip t {{\n\tchain c {{\n{rule}\n\t}}\n}}\n");
        assert_eq!(normalize_nft_listing(&input), expected);
    }

    #[test]
    fn unterminated_block_is_kept() {
        let input = "\telements = { 2, 1,\n\t\t3\n";
        assert_eq!(normalize_nft_listing(input), input);
    }

    #[test]
    fn empty_input() {
        assert_eq!(normalize_nft_listing(""), "");
        assert_eq!(normalize_nft_listing("\n \n"), "");
    }
}
