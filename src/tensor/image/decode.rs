//! PNG and JPEG bytes to 8-bit RGB pixels, as Pillow's `Image.open(f).convert("RGB")` gives
//! them.
//!
//! - Grey, grey+alpha, RGBA and palette images become RGB; alpha is dropped, not composited
//!   (Pillow's `convert("RGB")` drops it too), and a palette's tRNS is ignored.
//! - 16-bit samples keep their high byte (Pillow does this for 16-bit RGB and RGBA; for a
//!   16-bit grey image its `convert("RGB")` clips every value over 255 instead, which we do
//!   not copy).
//! - No gamma, ICC profile or EXIF orientation is applied (Pillow's `open` applies none).
//! - JPEG is decoded by zune-jpeg, Pillow by libjpeg-turbo: their IDCT and chroma upsampling
//!   differ by a few levels (max 3 on the fixtures' 4:2:0 images, 1 on grey and CMYK).
//!   A truncated or corrupt JPEG is an error (zune-jpeg's strict mode), as Pillow's
//!   "image file is truncated" is, never a silently grey-filled picture.
//!
//! The header's width and height are checked against the pixel cap before any pixel buffer
//! is allocated, so a small file declaring a huge image is refused cheaply.

use std::fmt;
use std::io::Cursor;
use zune_jpeg::JpegDecoder;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// The default cap on width x height: 40 megapixels (a 7300x5500 photograph), 120 MB as RGB.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// Decoded pixels: `height` rows of `width` RGB triples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Why image bytes could not be decoded. `Display` gives the message for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Neither PNG nor JPEG; `hint` names the format when it is a known other one.
    NotAnImage { hint: Option<&'static str> },
    /// Over the pixel cap (a decompression bomb, or just too large).
    TooLarge {
        width: u64,
        height: u64,
        max_pixels: u64,
    },
    /// A PNG or JPEG that cannot be decoded: truncated, corrupt, or a variant the decoder
    /// does not support (12-bit or arithmetic-coded JPEG).
    Corrupt {
        format: &'static str,
        detail: String,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::NotAnImage { hint: None } => f.write_str("not a PNG or JPEG image"),
            ImageError::NotAnImage { hint: Some(other) } => {
                write!(f, "not a PNG or JPEG image (it looks like {other})")
            }
            ImageError::TooLarge {
                width,
                height,
                max_pixels,
            } => write!(
                f,
                "image of {width}x{height} pixels is over the limit of {max_pixels} pixels"
            ),
            ImageError::Corrupt { format, detail } => write!(f, "corrupt {format}: {detail}"),
        }
    }
}

impl std::error::Error for ImageError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
}

/// The format, from the first bytes (the Content-Type of an upload is often wrong).
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    Err(ImageError::NotAnImage {
        hint: other_format(bytes),
    })
}

/// Names formats people commonly send by mistake, for the error message.
fn other_format(bytes: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"GIF8") {
        Some("a GIF image")
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some("a WebP image")
    } else if at(0, b"BM") {
        Some("a BMP image")
    } else if at(0, b"II*\0") || at(0, b"MM\0*") {
        Some("a TIFF image")
    } else if at(4, b"ftypheic") || at(4, b"ftypheix") || at(4, b"ftypmif1") {
        Some("a HEIC image")
    } else if at(4, b"ftypavif") {
        Some("an AVIF image")
    } else if at(0, b"{") || at(0, b"[") {
        Some("JSON")
    } else {
        None
    }
}

/// Decodes PNG or JPEG bytes to RGB, refusing images of more than `max_pixels` pixels.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    match sniff(bytes)? {
        ImageFormat::Png => decode_png(bytes, max_pixels),
        ImageFormat::Jpeg => decode_jpeg(bytes, max_pixels),
    }
}

fn check_size(width: u64, height: u64, max_pixels: u64) -> Result<(), ImageError> {
    if width.saturating_mul(height) > max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    Ok(())
}

fn corrupt_png(e: png::DecodingError) -> ImageError {
    let detail = match e {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the data ends early (truncated upload?)".to_owned()
        }
        other => other.to_string(),
    };
    ImageError::Corrupt {
        format: "PNG",
        detail,
    }
}

fn decode_png(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Palette to RGB(A), grey under 8 bits to 8 bits, tRNS to alpha, 16 bits to the high byte.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let header = decoder.read_header_info().map_err(corrupt_png)?;
    check_size(header.width.into(), header.height.into(), max_pixels)?;
    let mut reader = decoder.read_info().map_err(corrupt_png)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ImageError::Corrupt {
            format: "PNG",
            detail: "its dimensions overflow".to_owned(),
        })?;
    let mut pixels = vec![0; size];
    let frame = reader.next_frame(&mut pixels).map_err(corrupt_png)?;
    pixels.truncate(frame.buffer_size());
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(ImageError::Corrupt {
                format: "PNG",
                detail: "a palette image was not expanded".to_owned(),
            });
        }
    };
    let (width, height) = (frame.width as usize, frame.height as usize);
    to_rgb_in_place(&mut pixels, width * height, channels);
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}

/// Rewrites `pixel_count` pixels of `channels` bytes (grey, grey+alpha, RGB, RGBA) as RGB in
/// the same buffer: alpha dropped, grey repeated. No second full-size buffer.
fn to_rgb_in_place(buf: &mut Vec<u8>, pixel_count: usize, channels: usize) {
    match channels {
        4 => {
            for i in 0..pixel_count {
                buf.copy_within(4 * i..4 * i + 3, 3 * i);
            }
            buf.truncate(3 * pixel_count);
        }
        1 | 2 => {
            // Grow, then fill from the end: pixel i is read at channels*i before anything is
            // written at or below 3*i, which only pixels <= i write.
            buf.resize(3 * pixel_count, 0);
            for i in (0..pixel_count).rev() {
                let grey = buf[channels * i];
                buf[3 * i..3 * i + 3].fill(grey);
            }
        }
        _ => buf.truncate(3 * pixel_count),
    }
}

fn corrupt_jpeg(e: DecodeErrors) -> ImageError {
    let detail = match e {
        DecodeErrors::ExhaustedData => "the data ends early (truncated upload?)".to_owned(),
        DecodeErrors::FormatStatic("Premature end of buffer") => {
            "the data ends early (truncated upload?)".to_owned()
        }
        other => other.to_string().trim_end().to_owned(),
    };
    ImageError::Corrupt {
        format: "JPEG",
        detail,
    }
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        // Our pixel cap, checked below with a clear message, is the only size limit.
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        // Errors for truncated or corrupt data instead of a partly grey picture.
        .set_strict_mode(true);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt_jpeg)?;
    let (width, height) = decoder.dimensions().ok_or_else(|| ImageError::Corrupt {
        format: "JPEG",
        detail: "no frame header".to_owned(),
    })?;
    check_size(width as u64, height as u64, max_pixels)?;
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| ImageError::Corrupt {
            format: "JPEG",
            detail: "its dimensions overflow".to_owned(),
        })?;
    let mut pixels = vec![0; size];
    decoder.decode_into(&mut pixels).map_err(corrupt_jpeg)?;
    if pixels.len() != width * height * 3 {
        return Err(ImageError::Corrupt {
            format: "JPEG",
            detail: format!("decoded {} bytes for {width}x{height} RGB", pixels.len()),
        });
    }
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(width: u32, height: u32, color: png::ColorType, depth: png::BitDepth) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(depth);
        let mut writer = encoder.write_header().unwrap();
        let bits = color.samples() * depth as usize;
        let row = (width as usize * bits).div_ceil(8);
        let data: Vec<u8> = (0..row * height as usize)
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        writer.write_image_data(&data).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn sniffs_png_and_jpeg_and_names_other_formats() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Ok(ImageFormat::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Ok(ImageFormat::Jpeg));
        let message = |b: &[u8]| sniff(b).unwrap_err().to_string();
        assert_eq!(message(b""), "not a PNG or JPEG image");
        assert_eq!(message(b"hello"), "not a PNG or JPEG image");
        assert_eq!(
            message(b"GIF89a..."),
            "not a PNG or JPEG image (it looks like a GIF image)"
        );
        assert_eq!(
            message(b"RIFF\0\0\0\0WEBPVP8 "),
            "not a PNG or JPEG image (it looks like a WebP image)"
        );
        assert!(message(b"{\"inputs\": [1]}").contains("JSON"));
        // A PNG signature cut short is not a PNG.
        assert!(sniff(b"\x89PNG\r\n").is_err());
    }

    #[test]
    fn a_huge_declared_size_is_refused_before_allocating() {
        // A valid PNG header declaring 20000x20000, with no pixel data at all.
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&20000u32.to_be_bytes());
        ihdr.extend_from_slice(&20000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        bytes.extend_from_slice(&13u32.to_be_bytes());
        bytes.extend_from_slice(&ihdr);
        bytes.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        let err = decode_rgb(&bytes, DEFAULT_MAX_PIXELS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image of 20000x20000 pixels is over the limit of 40000000 pixels"
        );
        // The same header under a larger cap reaches the (missing) data instead.
        let err = decode_rgb(&bytes, u64::MAX).unwrap_err();
        assert!(
            matches!(err, ImageError::Corrupt { format: "PNG", .. }),
            "{err}"
        );
    }

    #[test]
    fn a_huge_jpeg_header_is_refused_by_the_cap() {
        let mut bytes = std::fs::read(fixture("baseline.jpg")).unwrap();
        // Rewrite the SOF0 frame's height and width to 60000x60000.
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bytes[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let err = decode_rgb(&bytes, DEFAULT_MAX_PIXELS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image of 60000x60000 pixels is over the limit of 40000000 pixels"
        );
    }

    #[test]
    fn every_png_colour_type_and_depth_becomes_rgb() {
        use png::{BitDepth as B, ColorType as C};
        let cases = [
            (C::Grayscale, B::One),
            (C::Grayscale, B::Two),
            (C::Grayscale, B::Four),
            (C::Grayscale, B::Eight),
            (C::Grayscale, B::Sixteen),
            (C::GrayscaleAlpha, B::Eight),
            (C::GrayscaleAlpha, B::Sixteen),
            (C::Rgb, B::Eight),
            (C::Rgb, B::Sixteen),
            (C::Rgba, B::Eight),
            (C::Rgba, B::Sixteen),
        ];
        for (color, depth) in cases {
            let bytes = png_bytes(7, 5, color, depth);
            let image =
                decode_rgb(&bytes, 1000).unwrap_or_else(|e| panic!("{color:?} {depth:?}: {e}"));
            assert_eq!((image.width, image.height), (7, 5));
            assert_eq!(image.pixels.len(), 7 * 5 * 3, "{color:?} {depth:?}");
        }
    }

    #[test]
    fn grey_and_alpha_pixels_convert_like_pillow() {
        // 2x1 grey+alpha, 8 bits: grey repeated, alpha dropped.
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, 2, 1);
        encoder.set_color(png::ColorType::GrayscaleAlpha);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[10, 0, 200, 255]).unwrap();
        writer.finish().unwrap();
        let image = decode_rgb(&out, 10).unwrap();
        assert_eq!(image.pixels, [10, 10, 10, 200, 200, 200]);

        // 16-bit RGBA: the high byte of each sample, alpha dropped.
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, 1, 1);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Sixteen);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&[0x12, 0x80, 0x34, 0xFF, 0xFE, 0x01, 0x80, 0x00])
            .unwrap();
        writer.finish().unwrap();
        assert_eq!(decode_rgb(&out, 10).unwrap().pixels, [0x12, 0x34, 0xFE]);
    }

    #[test]
    fn truncated_and_corrupt_files_are_errors_that_say_so() {
        for name in ["rgb.png", "baseline.jpg", "progressive.jpg"] {
            let bytes = std::fs::read(fixture(name)).unwrap();
            let half = decode_rgb(&bytes[..bytes.len() / 2], DEFAULT_MAX_PIXELS).unwrap_err();
            let message = half.to_string();
            assert!(message.starts_with("corrupt "), "{name}: {message}");
        }
        let bytes = std::fs::read(fixture("baseline.jpg")).unwrap();
        let err = decode_rgb(&bytes[..bytes.len() / 2], DEFAULT_MAX_PIXELS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "corrupt JPEG: the data ends early (truncated upload?)"
        );
        let bytes = std::fs::read(fixture("rgb.png")).unwrap();
        let err = decode_rgb(&bytes[..bytes.len() / 2], DEFAULT_MAX_PIXELS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "corrupt PNG: the data ends early (truncated upload?)"
        );
    }

    #[test]
    fn in_place_conversion_handles_every_channel_count() {
        let mut grey = vec![1, 2, 3];
        to_rgb_in_place(&mut grey, 3, 1);
        assert_eq!(grey, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
        let mut grey_alpha = vec![1, 9, 2, 9];
        to_rgb_in_place(&mut grey_alpha, 2, 2);
        assert_eq!(grey_alpha, [1, 1, 1, 2, 2, 2]);
        let mut rgba = vec![1, 2, 3, 9, 4, 5, 6, 9];
        to_rgb_in_place(&mut rgba, 2, 4);
        assert_eq!(rgba, [1, 2, 3, 4, 5, 6]);
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    pub(super) fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images")
            .join(name)
    }
}
