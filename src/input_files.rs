//! The files a request gives its run (`files`): checked by the server (names, encoding, caps)
//! before anything is forked, carried in the job as given, and decoded by the child, which
//! serves them read-only beside the code — to Python's `open`, JavaScript's `fs`, and a shell
//! command's working directory.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::output_files::{check_name, OUTPUT_DIR};

/// How many files a request may give.
pub const MAX_INPUT_FILES: usize = 64;

/// One file of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// A plain file name (`data.csv`): no directory, no `..`.
    pub name: String,
    pub content: String,
    /// How `content` is written: `utf-8` (the default) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8", alias = "utf8", alias = "text")]
    Utf8,
    #[serde(rename = "base64")]
    Base64,
}

impl InputFile {
    /// The file's bytes. Checked by [`check`] before the job was sent, so a child decodes
    /// only what decodes.
    pub fn bytes(&self) -> Vec<u8> {
        match self.encoding {
            Encoding::Utf8 => self.content.as_bytes().to_vec(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(self.content.trim())
                .unwrap_or_default(),
        }
    }
}

/// Checks a request's files against the rules and the cap on their total (`max_bytes`,
/// decoded); the refusal names the file and starts with the field.
pub fn check(files: &[InputFile], max_bytes: u64) -> Result<(), String> {
    if files.len() > MAX_INPUT_FILES {
        return Err(format!(
            "files: at most {MAX_INPUT_FILES} files, got {}",
            files.len()
        ));
    }
    let mut total: u64 = 0;
    for (i, file) in files.iter().enumerate() {
        let at = format!("files[{i}] ({:?})", file.name);
        check_name(&file.name).map_err(|why| format!("{at}: name: {why}"))?;
        if file.name == OUTPUT_DIR {
            return Err(format!(
                "{at}: name: {OUTPUT_DIR:?} is the run's output directory"
            ));
        }
        if files[..i].iter().any(|other| other.name == file.name) {
            return Err(format!("{at}: name: given twice"));
        }
        let size = match file.encoding {
            Encoding::Utf8 => file.content.len(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(file.content.trim())
                .map_err(|e| format!("{at}: content: not valid base64 ({e})"))?
                .len(),
        };
        total = total.saturating_add(size as u64);
        if total > max_bytes {
            return Err(format!(
                "{at}: the files take more than the {max_bytes} bytes a request's files may \
                 hold together (--max-input-files-bytes)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str, encoding: Encoding) -> InputFile {
        InputFile {
            name: name.into(),
            content: content.into(),
            encoding,
        }
    }

    #[test]
    fn plain_names_pass_and_tricks_are_refused_naming_the_file() {
        let ok = [
            file("data.csv", "a,b\n1,2\n", Encoding::Utf8),
            file("图表 1.png", "iVBORw0KGgo=", Encoding::Base64),
        ];
        assert_eq!(check(&ok, 1024), Ok(()));
        for name in [
            "../etc/passwd",
            "/etc/passwd",
            "a/b.csv",
            "..",
            ".",
            "",
            "a\0b",
            "output",
        ] {
            let refused = check(&[file(name, "x", Encoding::Utf8)], 1024).unwrap_err();
            assert!(refused.starts_with("files[0]"), "{name:?}: {refused}");
        }
        let twice = [
            file("a.txt", "x", Encoding::Utf8),
            file("a.txt", "y", Encoding::Utf8),
        ];
        assert!(check(&twice, 1024).unwrap_err().contains("given twice"));
    }

    #[test]
    fn the_cap_counts_decoded_bytes_and_names_the_file_that_crosses_it() {
        // 8 bytes of base64 are 6 decoded bytes.
        let files = [
            file("a.bin", "AAAAAAAA", Encoding::Base64),
            file("b.txt", "12345", Encoding::Utf8),
        ];
        assert_eq!(check(&files, 11), Ok(()));
        let refused = check(&files, 10).unwrap_err();
        assert!(refused.starts_with("files[1] (\"b.txt\")"), "{refused}");
        let bad = check(&[file("c.bin", "not base64!", Encoding::Base64)], 100).unwrap_err();
        assert!(bad.contains("not valid base64"), "{bad}");
        assert_eq!(files[0].bytes(), vec![0u8; 6]);
    }
}
