//! The module whitelists, compiled into the binary from `whitelist/`.

const PYTHON: &str = include_str!("../whitelist/python.txt");
const JAVASCRIPT: &str = include_str!("../whitelist/javascript.txt");

/// Python modules user code may import, in file order.
pub fn python() -> Vec<String> {
    names(PYTHON)
}

/// Names `require()` resolves, in file order.
pub fn javascript() -> Vec<String> {
    names(JAVASCRIPT)
}

fn names(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn comments_and_blanks_are_skipped() {
        let py = super::python();
        assert!(py.contains(&"math".to_owned()));
        assert!(py.iter().all(|n| !n.starts_with('#') && !n.is_empty()));
        assert!(!py.contains(&"os".to_owned()));
    }
}
