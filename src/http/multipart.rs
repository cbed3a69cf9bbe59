//! The one file of a `multipart/form-data` body (RFC 7578 on RFC 2046's multipart syntax),
//! found in memory: `curl -F image=@cat.jpg` and HTML forms send an image this way.
//!
//! The body is already read whole (the body limit applies first), so parts are borrowed
//! slices of it and nothing is copied. A file part is a part whose Content-Disposition has a
//! `filename` (or `filename*`); failing any, a part with a Content-Type other than
//! `text/plain`. Text fields are skipped. Exactly one file part is accepted.
//!
//! Not a crate: `multer` is async (a `Stream` of `Bytes`), `multipart` is unmaintained
//! (RUSTSEC-2023-0050), the `*-multipart-rfc7578` crates are client-side only; an in-memory
//! parser is this file.

use std::borrow::Cow;

/// The file part of a form: its headers' values, and its content borrowed from the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePart<'a> {
    /// The form field's name (`image` in `curl -F image=@cat.jpg`).
    pub field: String,
    /// The file's name as the client sent it, if any. Never used as a path.
    pub filename: Option<String>,
    /// The part's Content-Type header (`image/jpeg`), if any.
    pub content_type: Option<String>,
    pub data: &'a [u8],
}

/// True when `content_type` names `multipart/form-data` (any case, any parameters).
pub fn is_form_data(content_type: &str) -> bool {
    media_type(content_type).eq_ignore_ascii_case("multipart/form-data")
}

fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Result<Cow<'_, str>, String> {
    if !is_form_data(content_type) {
        return Err(format!(
            "Content-Type '{}' is not multipart/form-data",
            shorten(content_type)
        ));
    }
    let params = content_type.split_once(';').map_or("", |(_, p)| p);
    let boundary = parameters(params)
        .find(|(name, _)| name.eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value)
        .ok_or("multipart/form-data Content-Type has no boundary parameter")?;
    // RFC 2046: 1 to 70 characters, and never CR or LF (they end the delimiter line).
    if boundary.is_empty() || boundary.len() > 70 || boundary.contains(['\r', '\n']) {
        return Err(format!(
            "multipart boundary '{}' is not 1 to 70 characters on one line",
            shorten(&boundary)
        ));
    }
    Ok(boundary)
}

/// The single file part of a `multipart/form-data` body.
pub fn single_file<'a>(content_type: &str, body: &'a [u8]) -> Result<FilePart<'a>, String> {
    let boundary = boundary(content_type)?;
    let mut files: Vec<FilePart<'a>> = Vec::new();
    let mut typed: Vec<FilePart<'a>> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    for part in Parts::new(body, &boundary)? {
        let Part { file, kind } = part?;
        match kind {
            Kind::File => files.push(file),
            // Two are enough to refuse; memory stays small however many a body holds.
            Kind::Typed if typed.len() < 2 => typed.push(file),
            Kind::Field if fields.len() < 5 => fields.push(format!("'{}'", shorten(&file.field))),
            Kind::Typed | Kind::Field | Kind::NoFileChosen => {}
        }
        if files.len() > 1 {
            break; // enough to refuse, however many more follow
        }
    }
    if files.is_empty() {
        files = typed;
    }
    let mut files = files.into_iter();
    match (files.next(), files.next()) {
        (Some(file), None) => Ok(file),
        (None, _) => {
            let seen = if fields.is_empty() {
                String::new()
            } else {
                format!(" (text fields: {})", fields.join(", "))
            };
            Err(format!(
                "multipart body has no file part{seen}: send the image as a file, as \
                 `curl -F image=@cat.jpg` does"
            ))
        }
        (Some(first), Some(second)) => Err(format!(
            "multipart body has more than one file part ('{}' and '{}'): send one image",
            shorten(&first.field),
            shorten(&second.field)
        )),
    }
}

/// One parsed part and what kind of part it is.
struct Part<'a> {
    file: FilePart<'a>,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Has a filename: a file.
    File,
    /// No filename but a Content-Type other than text/plain: a file if no part names one.
    Typed,
    /// A text field.
    Field,
    /// `filename=""` and no content: a browser's file input with no file chosen.
    NoFileChosen,
}

/// The parts of a body, in order, each an error if malformed; the iteration ends after the
/// closing delimiter, or after an error.
struct Parts<'a> {
    body: &'a [u8],
    /// `\r\n--boundary`: a delimiter with the line end that precedes it inside the body.
    line: Vec<u8>,
    /// Where the next delimiter starts; `None` once done.
    at: Option<usize>,
    count: usize,
}

impl<'a> Parts<'a> {
    fn new(body: &'a [u8], boundary: &str) -> Result<Parts<'a>, String> {
        let line = format!("\r\n--{boundary}").into_bytes();
        // Anything before the first delimiter is a preamble, to ignore.
        let first = if body.starts_with(&line[2..]) {
            0
        } else {
            find(body, &line).map(|i| i + 2).ok_or_else(|| {
                format!(
                    "multipart body has no boundary line '--{}' (the boundary from its \
                     Content-Type)",
                    shorten(boundary)
                )
            })?
        };
        Ok(Parts {
            body,
            line,
            at: Some(first),
            count: 0,
        })
    }

    fn delimiter(&self) -> &[u8] {
        &self.line[2..]
    }

    fn delimiter_text(&self) -> String {
        String::from_utf8_lossy(self.delimiter()).into_owned()
    }

    fn truncated(&self) -> String {
        format!(
            "multipart body is truncated: it ends before the closing boundary '{}--'",
            self.delimiter_text()
        )
    }

    /// Reads the delimiter line at `at`: where the part after it starts, or `None` for the
    /// closing delimiter.
    fn delimiter_line(&self, at: usize) -> Result<Option<usize>, String> {
        let after = at + self.delimiter().len();
        let rest = &self.body[after..];
        if rest.starts_with(b"--") {
            return Ok(None);
        }
        // Transport padding (spaces and tabs) may come before the line end.
        let padding = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        match rest.get(padding..padding + 2) {
            Some(b"\r\n") => Ok(Some(after + padding + 2)),
            None => Err(self.truncated()),
            Some(_) => Err(format!(
                "multipart body: the boundary line '{}' is followed by something other \
                 than a line end",
                self.delimiter_text()
            )),
        }
    }

    fn part_at(&mut self, at: usize) -> Result<Option<Part<'a>>, String> {
        let Some(start) = self.delimiter_line(at)? else {
            return Ok(None);
        };
        let end = find(&self.body[start..], &self.line)
            .map(|i| start + i)
            .ok_or_else(|| self.truncated())?;
        self.at = Some(end + 2);
        self.count += 1;
        parse_part(&self.body[start..end], self.count).map(Some)
    }
}

impl<'a> Iterator for Parts<'a> {
    type Item = Result<Part<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at.take()?;
        self.part_at(at).transpose()
    }
}

/// Splits a part into its headers and content and reads the two headers that matter.
fn parse_part(part: &[u8], number: usize) -> Result<Part<'_>, String> {
    let (head, data) = if let Some(data) = part.strip_prefix(b"\r\n") {
        (&[][..], data)
    } else {
        let split = find(part, b"\r\n\r\n").ok_or_else(|| {
            format!("multipart part {number} has no blank line after its headers")
        })?;
        (&part[..split], &part[split + 4..])
    };
    let mut disposition = None;
    let mut content_type = None;
    for line in head.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        let Some((name, value)) = split_header(line) else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value);
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value);
        }
    }
    let disposition = disposition
        .ok_or_else(|| format!("multipart part {number} has no Content-Disposition header"))?;
    let (kind, params) = disposition.split_once(';').unwrap_or((&disposition, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(format!(
            "multipart part {number} has Content-Disposition '{}', not form-data",
            shorten(kind.trim())
        ));
    }
    let mut field = None;
    let mut filename = None;
    let mut extended_filename = None;
    for (name, value) in parameters(params) {
        if name.eq_ignore_ascii_case("name") {
            field = Some(value.into_owned());
        } else if name.eq_ignore_ascii_case("filename") {
            filename = Some(value.into_owned());
        } else if name.eq_ignore_ascii_case("filename*") {
            extended_filename = Some(decode_extended(&value));
        }
    }
    let filename = extended_filename.or(filename);
    let kind = match (&filename, &content_type) {
        (Some(name), _) if name.is_empty() && data.is_empty() => Kind::NoFileChosen,
        (Some(_), _) => Kind::File,
        (None, Some(t)) if !media_type(t).eq_ignore_ascii_case("text/plain") => Kind::Typed,
        (None, _) => Kind::Field,
    };
    Ok(Part {
        file: FilePart {
            field: field.unwrap_or_default(),
            filename,
            content_type,
            data,
        },
        kind,
    })
}

fn split_header(line: Cow<'_, str>) -> Option<(String, String)> {
    let (name, value) = line.split_once(':')?;
    Some((name.trim().to_owned(), value.trim().to_owned()))
}

/// `; name=value; name="quoted \"value\""` parameters, in order. Quoted values lose their
/// quotes and backslash escapes; unquoted ones are trimmed.
fn parameters(text: &str) -> impl Iterator<Item = (String, Cow<'_, str>)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches([' ', '\t', ';']);
            if rest.is_empty() {
                return None;
            }
            let name_end = rest.find(['=', ';']).unwrap_or(rest.len());
            let name = rest[..name_end].trim().to_owned();
            rest = &rest[name_end..];
            let Some(after_eq) = rest.strip_prefix('=') else {
                continue; // a bare token without a value
            };
            let after_eq = after_eq.trim_start();
            let value;
            if let Some(quoted) = after_eq.strip_prefix('"') {
                let (v, remaining) = quoted_string(quoted);
                value = v;
                rest = remaining;
            } else {
                let end = after_eq.find(';').unwrap_or(after_eq.len());
                value = Cow::Borrowed(after_eq[..end].trim());
                rest = &after_eq[end..];
            }
            return Some((name, value));
        }
    })
}

/// Reads a quoted string's content (after its opening quote): the value and what follows
/// the closing quote. An unclosed quote runs to the end.
fn quoted_string(text: &str) -> (Cow<'_, str>, &str) {
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (escaped, c) {
            (true, c) => {
                value.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, '"') => {
                let rest = &text[i + 1..];
                return if value.len() == i {
                    (Cow::Borrowed(&text[..i]), rest)
                } else {
                    (Cow::Owned(value), rest)
                };
            }
            (false, c) => value.push(c),
        }
    }
    (Cow::Owned(value), "")
}

/// RFC 8187 `filename*=UTF-8''caf%C3%A9.jpg` (other charsets are read as UTF-8 too).
fn decode_extended(value: &str) -> String {
    let encoded = value.splitn(3, '\'').nth(2).unwrap_or(value);
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// Client text in messages, cut to a readable length.
fn shorten(text: &str) -> Cow<'_, str> {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn body(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (headers, data) in parts {
            out.extend_from_slice(b"--XyZ\r\n");
            out.extend_from_slice(headers.as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    const FILE: &str = "Content-Disposition: form-data; name=\"image\"; filename=\"cat.jpg\"\r\nContent-Type: image/jpeg";

    #[test]
    fn finds_the_file_among_fields() {
        let b = body(&[
            ("Content-Disposition: form-data; name=\"top_k\"", b"3"),
            (FILE, b"\xFF\xD8\xFF\r\n--Xy\r\n-- binary"),
            ("Content-Disposition: form-data; name=\"note\"", b"hi"),
        ]);
        let file = single_file(CT, &b).unwrap();
        assert_eq!(file.field, "image");
        assert_eq!(file.filename.as_deref(), Some("cat.jpg"));
        assert_eq!(file.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(file.data, b"\xFF\xD8\xFF\r\n--Xy\r\n-- binary");
    }

    #[test]
    fn reads_the_body_curl_sent() {
        // Captured from `curl -F image=@palette4.png -F top_k=3` (tests/fixtures/make_images.py).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let content_type = String::from_utf8(read("curl_form.content-type")).unwrap();
        let body = read("curl_form.body");
        let file = single_file(&content_type, &body).unwrap();
        assert_eq!(file.field, "image");
        assert_eq!(file.filename.as_deref(), Some("palette4.png"));
        assert_eq!(file.content_type.as_deref(), Some("image/png"));
        assert_eq!(file.data, &read("palette4.png")[..]);
    }

    #[test]
    fn boundary_parameter_forms() {
        assert_eq!(boundary(CT).unwrap(), "XyZ");
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b;c\"").unwrap(),
            "a b;c"
        );
        assert_eq!(
            boundary("multipart/form-data").unwrap_err(),
            "multipart/form-data Content-Type has no boundary parameter"
        );
        assert_eq!(
            boundary("image/png").unwrap_err(),
            "Content-Type 'image/png' is not multipart/form-data"
        );
        assert!(boundary("multipart/form-data; boundary=\"\"").is_err());
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert!(boundary(&long).unwrap_err().contains("1 to 70"));
        assert!(is_form_data("MULTIPART/FORM-DATA ; boundary=x"));
        assert!(!is_form_data("multipart/mixed; boundary=x"));
    }

    #[test]
    fn preamble_epilogue_padding_and_quoting() {
        let b = b"This is a preamble.\r\n--XyZ  \t\r\n\
Content-Disposition: form-data; name=\"a\\\"b\"; filename=\"x\\\\y.png\"\r\n\r\n\
DATA\r\n--XyZ--\r\nepilogue";
        let file = single_file(CT, b).unwrap();
        assert_eq!(file.field, "a\"b");
        assert_eq!(file.filename.as_deref(), Some("x\\y.png"));
        assert_eq!(file.content_type, None);
        assert_eq!(file.data, b"DATA");
    }

    #[test]
    fn extended_filenames_and_headerless_parts() {
        let b = body(&[(
            "content-disposition: form-data; name=img; filename*=UTF-8''caf%C3%A9.jpg",
            b"x",
        )]);
        let file = single_file(CT, &b).unwrap();
        assert_eq!(file.filename.as_deref(), Some("café.jpg"));
        assert_eq!(file.field, "img");
        // A part with no headers at all has no Content-Disposition.
        let b = b"--XyZ\r\n\r\ndata\r\n--XyZ--";
        assert_eq!(
            single_file(CT, b).unwrap_err(),
            "multipart part 1 has no Content-Disposition header"
        );
    }

    #[test]
    fn a_typed_part_counts_when_no_part_has_a_filename() {
        let b = body(&[
            ("Content-Disposition: form-data; name=\"k\"", b"3"),
            (
                "Content-Disposition: form-data; name=\"img\"\r\nContent-Type: image/png",
                b"P",
            ),
        ]);
        assert_eq!(single_file(CT, &b).unwrap().data, b"P");
    }

    #[test]
    fn an_empty_file_input_is_no_file() {
        // What a browser sends for a file input with no file chosen.
        let b = body(&[(
            "Content-Disposition: form-data; name=\"image\"; filename=\"\"\r\nContent-Type: application/octet-stream",
            b"",
        )]);
        assert!(single_file(CT, &b).unwrap_err().contains("no file part"));
        // An empty file with a name is a file (and an image decoder will say it is empty).
        let b = body(&[(
            "Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"",
            b"",
        )]);
        assert_eq!(single_file(CT, &b).unwrap().data, b"");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let fields = body(&[("Content-Disposition: form-data; name=\"a\"", b"1")]);
        assert_eq!(
            single_file(CT, &fields).unwrap_err(),
            "multipart body has no file part (text fields: 'a'): send the image as a file, \
             as `curl -F image=@cat.jpg` does"
        );
        let two = body(&[(FILE, b"1"), (&FILE.replace("image", "other"), b"2")]);
        assert_eq!(
            single_file(CT, &two).unwrap_err(),
            "multipart body has more than one file part ('image' and 'other'): send one image"
        );
        let whole = body(&[(FILE, b"0123456789")]);
        for cut in [whole.len() - 4, whole.len() / 2, 9, 3] {
            let err = single_file(CT, &whole[..cut]).unwrap_err();
            assert!(
                err.contains("truncated") || err.contains("no boundary"),
                "{cut}: {err}"
            );
        }
        assert_eq!(
            single_file(CT, b"no boundary here").unwrap_err(),
            "multipart body has no boundary line '--XyZ' (the boundary from its Content-Type)"
        );
        assert!(
            single_file(CT, b"--XyZjunk\r\n")
                .unwrap_err()
                .contains("line end")
        );
        let no_blank = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n--XyZ--";
        assert!(
            single_file(CT, no_blank)
                .unwrap_err()
                .contains("no blank line")
        );
        let mixed = body(&[("Content-Disposition: attachment; filename=a", b"1")]);
        assert!(
            single_file(CT, &mixed)
                .unwrap_err()
                .contains("not form-data")
        );
        assert!(single_file("text/plain", &fields).is_err());
        // Client text in messages is cut short.
        let long = format!("multipart/form-data; boundary=\"{}\"", "é".repeat(200));
        assert!(boundary(&long).unwrap_err().len() < 400);
    }

    /// Bytes that favour what confuses a parser: CR, LF, dashes, quotes, boundary text.
    fn parser_bytes(rng: &mut XorShift, boundary: &str, max: usize) -> Vec<u8> {
        let len = rng.below(max + 1);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            match rng.below(8) {
                0 => out.extend_from_slice(b"\r\n"),
                1 => out.extend_from_slice(b"--"),
                2 => out.extend_from_slice(&boundary.as_bytes()[..rng.below(boundary.len())]),
                3 => out.push(b'"'),
                _ => out.push(rng.next() as u8),
            }
        }
        out
    }

    #[test]
    fn random_forms_round_trip_and_mutations_never_panic() {
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        for round in 0..3000 {
            let boundary = format!("b{:x}", rng.next());
            let ct = format!("multipart/form-data; boundary=\"{boundary}\"");
            let file_at = rng.below(4);
            let mut parts = Vec::new();
            let mut expected = Vec::new();
            let delimiter = format!("\r\n--{boundary}");
            let mut clean_bytes = |max| loop {
                // RFC 2046: the sender picks a boundary that its content does not hold.
                let data = parser_bytes(&mut rng, &boundary, max);
                let framed = [b"\r\n", &data[..], b"\r\n"].concat();
                if find(&framed, delimiter.as_bytes()).is_none() {
                    return data;
                }
            };
            for i in 0..4 {
                let data = clean_bytes(200);
                let headers = if i == file_at {
                    expected = data.clone();
                    format!(
                        "Content-Disposition: form-data; name=\"f{i}\"; filename=\"f.bin\"\r\n\
                         Content-Type: application/octet-stream"
                    )
                } else {
                    format!("Content-Disposition: form-data; name=\"t{i}\"")
                };
                parts.push((headers, data));
            }
            let mut whole = clean_bytes(20); // a preamble
            whole.extend_from_slice(b"\r\n");
            for (headers, data) in &parts {
                whole.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
                whole.extend_from_slice(data);
                whole.extend_from_slice(b"\r\n");
            }
            whole.extend_from_slice(format!("--{boundary}--").as_bytes());
            let file = single_file(&ct, &whole).unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(file.data, &expected[..], "round {round}");
            assert_eq!(file.field, format!("f{file_at}"));

            // Mutations: cut, flip, insert. Any result is fine but a panic, and data found
            // is always a slice of the body.
            for _ in 0..5 {
                let mut mutated = whole.clone();
                match rng.below(3) {
                    0 => mutated.truncate(rng.below(whole.len())),
                    1 => {
                        let i = rng.below(whole.len());
                        mutated[i] ^= 1 << rng.below(8);
                    }
                    _ => {
                        let i = rng.below(whole.len());
                        let junk = parser_bytes(&mut rng, &boundary, 12);
                        mutated.splice(i..i, junk);
                    }
                }
                if let Ok(file) = single_file(&ct, &mutated) {
                    let range = mutated.as_ptr_range();
                    assert!(range.contains(&file.data.as_ptr()) || file.data.is_empty());
                }
            }
        }
    }
}
