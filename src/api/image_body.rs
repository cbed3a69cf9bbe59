//! `/predict` with an image instead of JSON: a raw `image/png` or `image/jpeg` body, or a
//! `multipart/form-data` body with one file (`curl -F image=@cat.jpg`). The image becomes
//! the model's single image input (`tensor::image`), with the preprocessing set at start-up.
//!
//! Statuses: a body that is not a decodable PNG or JPEG is a 400 naming the problem; an
//! image over `--max-image-pixels` is a 413 (refused from its header, before its pixels are
//! allocated); an image sent to a model that takes none, or an image type other than PNG and
//! JPEG, is a 415: the media type itself is what this route cannot take here, and the
//! message says what it takes instead.

use crate::http::multipart;
use crate::http::{ApiError, clip};
use crate::tensor::image::{
    DEFAULT_MAX_PIXELS, ImageError, ImageInput, ImagePipeline, Preprocess, image_input,
};
use crate::tensor::{DataType, Signature, Tensor};

/// The image preprocessing flags (`--image-scale`, `--image-mean`, `--image-std`,
/// `--max-image-pixels`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSettings {
    /// Pixels are scaled to [0, range]: 1 (the default) or 255. `None` when not given.
    pub range: Option<f64>,
    /// Per channel, or one for all; empty when not given.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub max_pixels: u64,
}

impl Default for ImageSettings {
    fn default() -> ImageSettings {
        ImageSettings {
            range: None,
            mean: Vec::new(),
            std: Vec::new(),
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl ImageSettings {
    fn is_default_preprocessing(&self) -> bool {
        self.range.is_none() && self.mean.is_empty() && self.std.is_empty()
    }

    /// The preprocessing for `input`. A UINT8 input takes pixel values as they are, so
    /// without flags it gets them so (with flags, `ImagePipeline::new` checks they agree).
    fn preprocess(&self, input: &ImageInput) -> Preprocess {
        let default_range = if input.datatype == DataType::Uint8 {
            255.0
        } else {
            1.0
        };
        let or = |values: &[f64], default: f64| {
            if values.is_empty() {
                vec![default]
            } else {
                values.to_vec()
            }
        };
        Preprocess {
            scale: Preprocess::scale_for_range(self.range.unwrap_or(default_range)),
            mean: or(&self.mean, 0.0),
            std: or(&self.std, 1.0),
        }
    }
}

/// Whether this model takes image bodies, made once at start-up.
#[derive(Clone, Debug)]
pub enum Images {
    Taken(ImagePipeline),
    /// Why not, for the 415's message.
    NotTaken(String),
}

impl Images {
    /// The pipeline for the model's single image input, or why there is none. An error
    /// (for start-up to report) when preprocessing flags were given that cannot apply.
    pub fn for_model(signature: &Signature, settings: &ImageSettings) -> Result<Images, String> {
        let input = match signature.inputs.as_slice() {
            [one] => image_input(one),
            many => Err(format!(
                "the model has {} inputs ({}), and an image fills a model's single image input",
                many.len(),
                signature.input_names()
            )),
        };
        match input {
            Ok(input) => {
                let preprocess = settings.preprocess(&input);
                ImagePipeline::new(input, &preprocess, settings.max_pixels).map(Images::Taken)
            }
            Err(why) if settings.is_default_preprocessing() => Ok(Images::NotTaken(why)),
            Err(why) => Err(format!(
                "--image-scale, --image-mean and --image-std apply to an image input: {why}"
            )),
        }
    }

    pub fn pipeline(&self) -> Option<&ImagePipeline> {
        match self {
            Images::Taken(pipeline) => Some(pipeline),
            Images::NotTaken(_) => None,
        }
    }
}

/// What a `/predict` body holds, by its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `{"inputs": ...}`: any Content-Type but the ones below, as before images existed.
    Json,
    /// The body is a PNG or JPEG file.
    Image,
    /// `multipart/form-data` holding one file.
    Form,
}

/// The image media types taken; the bytes decide between PNG and JPEG, whatever the type
/// says (`image/jpg` and `image/pjpeg` are JPEG's in the wild).
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/jpg", "image/pjpeg"];

/// The kind of body `content_type` announces; 415 for another image type.
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, ApiError> {
    let Some(content_type) = content_type else {
        return Ok(BodyKind::Json);
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    if multipart::is_form_data(content_type) {
        Ok(BodyKind::Form)
    } else if IMAGE_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t)) {
        Ok(BodyKind::Image)
    } else if media
        .get(..6)
        .is_some_and(|start| start.eq_ignore_ascii_case("image/"))
    {
        Err(ApiError::new(
            415,
            format!(
                "Content-Type {} is not supported: send a PNG or JPEG image (image/png, \
                 image/jpeg), or JSON",
                clip(media, 64)
            ),
        ))
    } else {
        Ok(BodyKind::Json)
    }
}

/// The model's input tensor made of an image body (`kind` is `Image` or `Form`).
pub fn image_tensor(
    images: &Images,
    kind: BodyKind,
    content_type: &str,
    body: &[u8],
) -> Result<Tensor, ApiError> {
    let pipeline = match images {
        Images::Taken(pipeline) => pipeline,
        Images::NotTaken(why) => {
            return Err(ApiError::new(
                415,
                format!("this model takes no image: {why}; send JSON {{\"inputs\": ...}} instead"),
            ));
        }
    };
    let bytes = match kind {
        BodyKind::Form => {
            multipart::single_file(content_type, body)
                .map_err(ApiError::bad_request)?
                .data
        }
        _ => body,
    };
    pipeline.tensor(bytes).map_err(|e| match e {
        ImageError::TooLarge { .. } => ApiError::new(413, format!("{e} (--max-image-pixels)")),
        ImageError::NotAnImage { .. } | ImageError::Corrupt { .. } => {
            ApiError::bad_request(format!("the image cannot be read: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Dim, TensorSpec};

    fn signature(datatype: DataType, dims: &[usize]) -> Signature {
        Signature {
            inputs: vec![TensorSpec {
                name: "image".into(),
                datatype,
                shape: dims.iter().map(|&d| Dim::Fixed(d)).collect(),
                map_keys: None,
            }],
            outputs: vec![],
        }
    }

    #[test]
    fn content_types_pick_the_body_kind() {
        assert_eq!(body_kind(None), Ok(BodyKind::Json));
        assert_eq!(body_kind(Some("application/json")), Ok(BodyKind::Json));
        assert_eq!(body_kind(Some("text/plain")), Ok(BodyKind::Json));
        assert_eq!(body_kind(Some("IMAGE/PNG")), Ok(BodyKind::Image));
        assert_eq!(body_kind(Some("image/jpeg; q=1")), Ok(BodyKind::Image));
        assert_eq!(
            body_kind(Some("multipart/form-data; boundary=x")),
            Ok(BodyKind::Form)
        );
        let gif = body_kind(Some("image/gif")).unwrap_err();
        assert_eq!(gif.status, 415);
        assert!(gif.message.contains("image/gif is not supported"), "{gif}");
        assert_eq!(body_kind(Some("image/")).unwrap_err().status, 415);
        assert_eq!(body_kind(Some("imag\u{65e5}e")), Ok(BodyKind::Json));
    }

    #[test]
    fn a_uint8_input_takes_raw_pixels_unless_told_otherwise() {
        let raw = signature(DataType::Uint8, &[1, 3, 8, 8]);
        assert!(matches!(
            Images::for_model(&raw, &ImageSettings::default()),
            Ok(Images::Taken(_))
        ));
        let scaled = ImageSettings {
            range: Some(1.0),
            ..ImageSettings::default()
        };
        let err = Images::for_model(&raw, &scaled).unwrap_err();
        assert!(err.contains("is UINT8"), "{err}");
    }

    #[test]
    fn flags_for_a_model_without_an_image_input_are_an_error() {
        let table = signature(DataType::Fp32, &[1, 64]);
        let Ok(Images::NotTaken(why)) = Images::for_model(&table, &ImageSettings::default()) else {
            panic!("a table is no image")
        };
        assert!(why.contains("is not an image input"), "{why}");
        let with_mean = ImageSettings {
            mean: vec![0.5],
            ..ImageSettings::default()
        };
        let err = Images::for_model(&table, &with_mean).unwrap_err();
        assert!(err.starts_with("--image-scale, --image-mean and --image-std apply"));
        let err = image_tensor(
            &Images::NotTaken(why),
            BodyKind::Image,
            "image/png",
            b"\x89PNG",
        )
        .unwrap_err();
        assert_eq!(err.status, 415);
    }
}
