//! The parts of a child's report that are untrusted *and* potentially large, each with a
//! deserializer that bounds what it keeps: a report is parsed on the server from bytes that
//! code past the import policy may have written, so no shape of JSON may make the server hold
//! more than the frame it read.

use std::fmt;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Figures a Python run may return, the size of each PNG, and of all together
/// (`_sandlot/figures.py` holds the same numbers; the server checks them whatever the child
/// sends).
pub const MAX_IMAGES: usize = 16;
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_IMAGES_TOTAL_BYTES: usize = 10 * 1024 * 1024;
/// Error text a report may carry: its message and its traceback, each. Longer text is cut
/// (by the child, and again by the server), so the two together stay within 1 MiB.
pub const MAX_ERROR_TEXT_BYTES: usize = 512 * 1024;

/// Base64 characters for `bytes` bytes.
pub const fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// A figure a run drew: a PNG, as base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub format: ImageFormat,
    pub base64: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
}

/// The figures of a report: the first [`MAX_IMAGES`] are kept, the rest only counted (and
/// skipped without being built), so a list of a million figures costs nothing but its bytes.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Figures {
    pub kept: Vec<Image>,
    #[serde(skip)]
    pub left_out: usize,
}

impl From<Vec<Image>> for Figures {
    fn from(kept: Vec<Image>) -> Self {
        Self { kept, left_out: 0 }
    }
}

impl Figures {
    /// Why these figures may not be returned, if they may not: too many, or too large.
    pub fn over_caps(&self) -> Option<String> {
        if self.left_out > 0 || self.kept.len() > MAX_IMAGES {
            return Some(format!("more than {MAX_IMAGES} figures"));
        }
        if self
            .kept
            .iter()
            .any(|i| i.base64.len() > base64_len(MAX_IMAGE_BYTES))
        {
            return Some(format!("a figure over {MAX_IMAGE_BYTES} bytes as PNG"));
        }
        let total: usize = self.kept.iter().map(|i| i.base64.len()).sum();
        if total > base64_len(MAX_IMAGES_TOTAL_BYTES) {
            return Some(format!(
                "figures over {MAX_IMAGES_TOTAL_BYTES} bytes as PNG in all"
            ));
        }
        None
    }
}

impl<'de> Deserialize<'de> for Figures {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bounded;
        impl<'de> Visitor<'de> for Bounded {
            type Value = Figures;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of {format, base64} figures")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Figures, A::Error> {
                let mut figures = Figures::default();
                while figures.kept.len() < MAX_IMAGES {
                    match seq.next_element::<Image>()? {
                        Some(image) => figures.kept.push(image),
                        None => return Ok(figures),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    figures.left_out += 1;
                }
                Ok(figures)
            }
        }
        deserializer.deserialize_seq(Bounded)
    }
}

/// `text` cut to at most `max` bytes, on a character boundary, marked as cut.
pub fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    const MARK: &str = "\n[... cut: error text is limited to 512 KiB]";
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

/// Deserializes error text, keeping at most [`MAX_ERROR_TEXT_BYTES`] of it (the rest is
/// never copied).
pub fn error_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_str(CutText)
}

/// [`error_text`] for the optional traceback.
pub fn optional_error_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct Optional;
    impl<'de> Visitor<'de> for Optional {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("text or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            error_text(d).map(Some)
        }
    }
    deserializer.deserialize_option(Optional)
}

struct CutText;

impl Visitor<'_> for CutText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("text")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        Ok(cut_text(text, MAX_ERROR_TEXT_BYTES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_past_the_count_are_counted_not_kept() {
        let one = r#"{"format":"png","base64":"AA"}"#;
        let json = format!("[{}]", vec![one; 40].join(","));
        let figures: Figures = serde_json::from_str(&json).unwrap();
        assert_eq!((figures.kept.len(), figures.left_out), (MAX_IMAGES, 24));
        assert!(figures.over_caps().is_some());
        let figures: Figures = serde_json::from_str(&format!("[{one}]")).unwrap();
        assert!(figures.over_caps().is_none());
        for bad in [
            r#"[0]"#,
            r#"[{"format":"svg","base64":"AA"}]"#,
            r#"[{"format":"png","base64":"AA","x":1}]"#,
        ] {
            assert!(serde_json::from_str::<Figures>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_error_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_TEXT_BYTES);
        let cut = cut_text(&long, MAX_ERROR_TEXT_BYTES);
        assert!(cut.len() <= MAX_ERROR_TEXT_BYTES);
        assert!(cut.ends_with("512 KiB]"));
        assert_eq!(cut_text("short", MAX_ERROR_TEXT_BYTES), "short");
    }
}
