//! Labels a model carries in its ONNX `metadata_props`, as exporters write them:
//! - Ultralytics (YOLO `-cls`, `-det`...): key `names`, the `str()` of a Python dict,
//!   `{0: 'person', 1: "potter's wheel", ...}`;
//! - hand-made and tool exports: `labels`, `classes` or `class_names` holding a JSON list
//!   (`["cat", "dog"]`), a JSON object of indexes (`{"0": "cat", "1": "dog"}`, what
//!   `json.dumps` makes of an int-keyed dict), a Python list, or one label per line.
//!
//! torchvision and timm exports carry no labels; skl2onnx classifiers carry their classes in
//! the graph (a ZipMap or a label output), not in metadata.

use super::Labels;

/// The metadata keys read for labels, in the order they are tried.
pub const METADATA_KEYS: [&str; 4] = ["labels", "classes", "class_names", "names"];

/// The labels in a model's metadata (key, value pairs), and the key they came from. `None`
/// when no key of `METADATA_KEYS` is there; an error names the key whose value is not a
/// list of labels.
pub fn labels_from_metadata<'m>(
    props: impl IntoIterator<Item = (&'m str, &'m str)>,
) -> Result<Option<(&'m str, Labels)>, String> {
    let props: Vec<(&str, &str)> = props.into_iter().collect();
    for key in METADATA_KEYS {
        if let Some(&(found, value)) = props.iter().find(|(k, _)| *k == key) {
            let labels = parse_labels(value)
                .map_err(|e| format!("model metadata '{found}' is not a list of labels: {e}"))?;
            return Ok(Some((found, labels)));
        }
    }
    Ok(None)
}

/// A list (`[...]`), an index-to-label dict (`{...}`), JSON or Python literal syntax, or
/// else one label per line.
pub(super) fn parse_labels(text: &str) -> Result<Labels, String> {
    let trimmed = text.trim();
    let names = match trimmed.chars().next() {
        Some('[') => Literal::new(trimmed).list()?,
        Some('{') => Literal::new(trimmed).dict()?,
        _ => return Labels::from_lines(text),
    };
    Labels::new(names).map_err(|_| "it is empty".to_owned())
}

/// A reader of the small part of JSON and Python literal syntax that label lists use:
/// strings in either quote, integers, lists, dicts, trailing commas.
struct Literal<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Literal<'a> {
    fn new(text: &'a str) -> Literal<'a> {
        Literal { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.rest().chars().next()
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.peek() {
            Some(found) if found == c => {
                self.at += c.len_utf8();
                Ok(())
            }
            Some(found) => Err(format!(
                "expected '{c}' at character {}, found '{found}'",
                self.at
            )),
            None => Err(format!("expected '{c}', found the end")),
        }
    }

    fn end(&mut self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(c) => Err(format!(
                "unexpected '{c}' after the end at character {}",
                self.at
            )),
        }
    }

    /// Items separated by commas up to `close` (a trailing comma allowed).
    fn items(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            if self.peek() == Some(close) {
                self.at += 1;
                return Ok(());
            }
            item(self)?;
            match self.peek() {
                Some(',') => self.at += 1,
                Some(c) if c == close => {}
                Some(c) => {
                    return Err(format!(
                        "expected ',' or '{close}' at character {}, found '{c}'",
                        self.at
                    ));
                }
                None => return Err(format!("expected '{close}', found the end")),
            }
        }
    }

    fn list(mut self) -> Result<Vec<String>, String> {
        self.expect('[')?;
        let mut names = Vec::new();
        self.items(']', |p| {
            names.push(p.string()?);
            Ok(())
        })?;
        self.end()?;
        Ok(names)
    }

    /// `{index: label}` with every index from 0 to n-1 once, in any order.
    fn dict(mut self) -> Result<Vec<String>, String> {
        self.expect('{')?;
        let mut pairs = Vec::new();
        self.items('}', |p| {
            let key = p.index()?;
            p.expect(':')?;
            pairs.push((key, p.string()?));
            Ok(())
        })?;
        self.end()?;
        pairs.sort_by_key(|(k, _)| *k);
        for (expected, (key, _)) in pairs.iter().enumerate() {
            if *key != expected {
                return Err(format!(
                    "its keys are not the indexes 0 to {} (missing or repeated: {expected})",
                    pairs.len().saturating_sub(1)
                ));
            }
        }
        Ok(pairs.into_iter().map(|(_, v)| v).collect())
    }

    /// A dict key: an integer, or a string of digits (JSON keys are strings).
    fn index(&mut self) -> Result<usize, String> {
        let at = self.at;
        let digits = if matches!(self.peek(), Some('"' | '\'')) {
            self.string()?
        } else {
            let rest = self.rest();
            let len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            self.at += len;
            rest[..len].to_owned()
        };
        digits
            .parse()
            .map_err(|_| format!("expected a class index at character {at}, found '{digits}'"))
    }

    /// A string in single or double quotes with JSON's and Python's escapes.
    fn string(&mut self) -> Result<String, String> {
        let start = self.at;
        let quote = match self.peek() {
            Some(q @ ('"' | '\'')) => q,
            Some(c) => {
                return Err(format!(
                    "expected a quoted label at character {}, found '{c}'",
                    self.at
                ));
            }
            None => return Err("expected a quoted label, found the end".into()),
        };
        self.at += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let (_, e) = chars.next().ok_or("a label ends inside an escape")?;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        '0' => out.push('\0'),
                        '\\' | '\'' | '"' | '/' => out.push(e),
                        'x' => out.push(hex_char(&mut chars, 2)?),
                        'u' => {
                            let first = hex_code(&mut chars, 4)?;
                            out.push(utf16_char(first, &mut chars)?);
                        }
                        'U' => out.push(hex_char(&mut chars, 8)?),
                        other => return Err(format!("unknown escape '\\{other}' in a label")),
                    }
                }
                c => out.push(c),
            }
        }
        Err(format!(
            "the label starting at character {start} has no closing quote"
        ))
    }
}

fn hex_code(chars: &mut std::str::CharIndices<'_>, digits: usize) -> Result<u32, String> {
    let mut code = 0;
    for _ in 0..digits {
        let (_, c) = chars.next().ok_or("a label ends inside an escape")?;
        let digit = c
            .to_digit(16)
            .ok_or_else(|| format!("'{c}' in a hex escape"))?;
        code = code * 16 + digit;
    }
    Ok(code)
}

fn hex_char(chars: &mut std::str::CharIndices<'_>, digits: usize) -> Result<char, String> {
    let code = hex_code(chars, digits)?;
    char::from_u32(code).ok_or_else(|| format!("escape of {code:#x} is not a character"))
}

/// A `\u` escape's character; a high surrogate takes the `\uDC00`-style low one after it
/// (JSON writes characters outside the BMP as such pairs).
fn utf16_char(first: u32, chars: &mut std::str::CharIndices<'_>) -> Result<char, String> {
    if !(0xD800..0xDC00).contains(&first) {
        return char::from_u32(first)
            .ok_or_else(|| format!("escape of {first:#x} is not a character"));
    }
    let low = match (chars.next(), chars.next()) {
        (Some((_, '\\')), Some((_, 'u'))) => hex_code(chars, 4)?,
        _ => return Err("a lone surrogate escape in a label".into()),
    };
    if !(0xDC00..0xE000).contains(&low) {
        return Err("a lone surrogate escape in a label".into());
    }
    let code = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
    char::from_u32(code).ok_or_else(|| format!("escape of {code:#x} is not a character"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn names(text: &str) -> Vec<String> {
        parse_labels(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .names()
            .to_vec()
    }

    #[test]
    fn reads_what_the_fixture_script_wrote_like_exporters() {
        // make_images.py writes the labels as Python's str(dict) (Ultralytics' `names`),
        // json.dumps of a list and of a dict, str(list), and lines.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images/expected.json");
        let expected: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let labels: Vec<String> = expected["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert!(labels.iter().any(|l| l.contains('\'')) && labels.iter().any(|l| l.contains('"')));
        let texts = expected["metadata_texts"].as_object().unwrap();
        assert_eq!(texts.len(), 5);
        for (kind, text) in texts {
            assert_eq!(names(text.as_str().unwrap()), labels, "{kind}");
        }
    }

    #[test]
    fn python_and_json_escapes() {
        assert_eq!(
            names(r#"['a\'b', "c\"d", 'e\\f', 'g\x41\u00e9\U0001F600']"#),
            ["a'b", "c\"d", "e\\f", "gAé😀"]
        );
        assert_eq!(
            names(r#"["\ud83d\ude00", "tab\there"]"#),
            ["😀", "tab\there"]
        );
        assert_eq!(names("{1: 'b', 0: 'a',}"), ["a", "b"]);
        assert_eq!(names(r#"{"1": "b", "0": "a"}"#), ["a", "b"]);
        assert_eq!(names("[\n  'a',\n  'b',\n]"), ["a", "b"]);
        assert_eq!(names("cat\ndog\n"), ["cat", "dog"]);
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            "[",
            "['a'",
            "['a' 'b']",
            "[1, 2]",
            "['a'] extra",
            "{0: 'a', 2: 'c'}",
            "{0: 'a', 0: 'b'}",
            "{x: 'a'}",
            "{'0' 'a'}",
            r"['\q']",
            r"['\ud800']",
            "[]",
            "{}",
            "",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_labels("{0: 'a', 2: 'c'}").unwrap_err(),
            "its keys are not the indexes 0 to 1 (missing or repeated: 1)"
        );
    }

    #[test]
    fn finds_labels_under_the_known_keys() {
        let props = [("author", "me"), ("names", "{0: 'cat', 1: 'dog'}")];
        let (key, labels) = labels_from_metadata(props).unwrap().unwrap();
        assert_eq!(
            (key, labels.names()),
            ("names", &["cat".to_owned(), "dog".to_owned()][..])
        );
        // `labels` comes before `names`.
        let props = [("names", "['x']"), ("labels", "['y']")];
        assert_eq!(labels_from_metadata(props).unwrap().unwrap().0, "labels");
        assert_eq!(labels_from_metadata([("author", "me")]), Ok(None));
        assert_eq!(
            labels_from_metadata([("classes", "[1, 2]")]).unwrap_err(),
            "model metadata 'classes' is not a list of labels: expected a quoted label at \
             character 1, found '1'"
        );
    }
}
