//! Image bodies to model inputs: PNG or JPEG bytes -> RGB (or grey) pixels -> resized to the
//! model's height and width -> scaled and normalised per channel -> a batch-of-one tensor in
//! the model's layout (NCHW or NHWC) and datatype.
//!
//! What a user's Python does, step for step, so the server answers what their notebook
//! answered:
//! ```python
//! img = Image.open(f).convert("RGB")            # or "L" for a one-channel model
//! img = img.resize((w, h), Image.BILINEAR)       # only when the size differs
//! x = (np.asarray(img, np.float32) / scale - mean) / std   # float32, per channel
//! ```
//! which is also torchvision's `Resize` + `ToTensor` + `Normalize` on a PIL image. PNG pixels
//! and the resize are bit-exact with Pillow; JPEG pixels differ by a few levels (another
//! decoder; see `decode`).
//!
//! Built once at start-up: `image_input` decides whether the model's input is image-shaped,
//! `ImagePipeline::new` checks the preprocessing against it; per request,
//! `ImagePipeline::tensor` does the rest.

mod decode;
mod resize;

pub use decode::{DEFAULT_MAX_PIXELS, ImageError, ImageFormat, RgbImage, decode_rgb, sniff};
pub use resize::resize_bilinear;

use crate::tensor::{DataType, Tensor, TensorData};
use crate::tensor::{Dim, TensorSpec};
use half::f16;

/// Where the channels are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[batch, channels, height, width]`: PyTorch, most ONNX exports.
    Nchw,
    /// `[batch, height, width, channels]`: TensorFlow/Keras exports.
    Nhwc,
}

/// A model input that takes one image: what `image_input` found in its declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInput {
    pub name: String,
    pub datatype: DataType,
    pub layout: Layout,
    /// 3 (RGB) or 1 (grey, as Pillow's `convert("L")`).
    pub channels: usize,
    /// The model's fixed height and width; `None` for a free one, which takes the image's.
    pub height: Option<usize>,
    pub width: Option<usize>,
}

impl ImageInput {
    /// The tensor shape for an image of `height` x `width` (after resizing).
    pub fn shape(&self, height: usize, width: usize) -> Vec<usize> {
        match self.layout {
            Layout::Nchw => vec![1, self.channels, height, width],
            Layout::Nhwc => vec![1, height, width, self.channels],
        }
    }
}

/// Decides whether `spec` is an image input: 4-D, 3 (or 1) channels first (NCHW) or last
/// (NHWC), a batch dimension that is free or 1, and FP32, FP16, FP64 or UINT8. The error
/// says why not, naming the input.
pub fn image_input(spec: &TensorSpec) -> Result<ImageInput, String> {
    let name = &spec.name;
    let not_image = |why: String| {
        format!(
            "input '{name}' {} {} is not an image input: {why}",
            spec.datatype,
            spec.shape_text()
        )
    };
    let [batch, d1, d2, d3] = spec.shape.as_slice() else {
        return Err(not_image(
            "an image input has 4 dimensions, [batch, channels, height, width] or \
             [batch, height, width, channels]"
                .into(),
        ));
    };
    if !matches!(
        spec.datatype,
        DataType::Fp32 | DataType::Fp16 | DataType::Fp64 | DataType::Uint8
    ) {
        return Err(not_image(
            "an image input is FP32, FP16, FP64 or UINT8".into(),
        ));
    }
    if let Dim::Fixed(n) = batch
        && *n != 1
    {
        return Err(not_image(format!(
            "its batch dimension is fixed at {n}, and one image makes a batch of 1"
        )));
    }
    let channels_at = |d: &Dim, c: usize| matches!(d, Dim::Fixed(n) if *n == c);
    // Three channels decide first: [1, 3, 3, 3] is NCHW, [1, 1, 28, 3] is NHWC RGB.
    let (layout, channels, h, w) = if channels_at(d1, 3) {
        (Layout::Nchw, 3, d2, d3)
    } else if channels_at(d3, 3) {
        (Layout::Nhwc, 3, d1, d2)
    } else if channels_at(d1, 1) {
        (Layout::Nchw, 1, d2, d3)
    } else if channels_at(d3, 1) {
        (Layout::Nhwc, 1, d1, d2)
    } else {
        return Err(not_image(
            "neither its second dimension (NCHW) nor its last (NHWC) is a fixed 3 or 1 \
             channels"
                .into(),
        ));
    };
    let size = |d: &Dim, what: &str| match d {
        Dim::Fixed(0) => Err(not_image(format!("its {what} is 0"))),
        Dim::Fixed(n) => Ok(Some(*n)),
        Dim::Symbolic(_) => Ok(None),
    };
    Ok(ImageInput {
        name: name.clone(),
        datatype: spec.datatype,
        layout,
        channels,
        height: size(h, "height")?,
        width: size(w, "width")?,
    })
}

/// How pixel values 0..=255 become the model's numbers: `(pixel / scale - mean) / std`, per
/// channel (torchvision's `ToTensor` then `Normalize`).
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Pixels are divided by this: 255 gives [0, 1] (the default); 1 keeps 0..=255.
    pub scale: f64,
    /// One value for every channel, or one per channel (R, G, B).
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Default for Preprocess {
    fn default() -> Preprocess {
        Preprocess {
            scale: 255.0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }
}

impl Preprocess {
    /// The ImageNet statistics most torchvision and timm models were trained with.
    pub fn imagenet() -> Preprocess {
        Preprocess {
            scale: 255.0,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// The `scale` for a model that wants pixel values in `[0, range_max]`: an
    /// `--image-scale 255`-style setting (values in 0..255) gives scale 1, 1 gives 255.
    pub fn scale_for_range(range_max: f64) -> f64 {
        255.0 / range_max
    }

    fn is_identity_on_bytes(&self) -> bool {
        self.scale == 1.0
            && self.mean.iter().all(|&m| m == 0.0)
            && self.std.iter().all(|&s| s == 1.0)
    }

    /// Mean and std for channel `c` (a single value applies to every channel).
    fn channel(&self, c: usize) -> (f64, f64) {
        let pick = |v: &[f64]| if v.len() == 1 { v[0] } else { v[c] };
        (pick(&self.mean), pick(&self.std))
    }

    fn check(&self, channels: usize) -> Result<(), String> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(format!(
                "image scale must be a positive number, not {}",
                self.scale
            ));
        }
        for (what, values) in [("mean", &self.mean), ("std", &self.std)] {
            if values.len() != 1 && values.len() != channels {
                return Err(format!(
                    "image {what} has {} values: give 1, or {channels} (one per channel)",
                    values.len()
                ));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(format!("image {what} has {v}, not a number"));
            }
        }
        if self.std.contains(&0.0) {
            return Err("image std has a 0: it divides".into());
        }
        Ok(())
    }
}

/// Everything needed to turn an uploaded image into the model's input, made once at start-up.
#[derive(Clone, Debug)]
pub struct ImagePipeline {
    input: ImageInput,
    max_pixels: u64,
    /// The model value of each pixel value, per channel: a table, since there are only 256.
    values: Values,
}

#[derive(Clone, Debug)]
enum Values {
    Fp32(Vec<[f32; 256]>),
    Fp16(Vec<[f16; 256]>),
    Fp64(Vec<[f64; 256]>),
    Uint8,
}

impl ImagePipeline {
    /// Checks `preprocess` against the input (channel counts; a UINT8 input takes raw pixel
    /// values, so it accepts only the identity) and precomputes the value tables.
    pub fn new(
        input: ImageInput,
        preprocess: &Preprocess,
        max_pixels: u64,
    ) -> Result<ImagePipeline, String> {
        preprocess
            .check(input.channels)
            .map_err(|e| format!("input '{}': {e}", input.name))?;
        let values = match input.datatype {
            DataType::Uint8 if preprocess.is_identity_on_bytes() => Values::Uint8,
            DataType::Uint8 => {
                return Err(format!(
                    "input '{}' is UINT8: it takes the pixel values 0..255 as they are, so an \
                     image scale, mean or std cannot apply (scale must be 1, mean 0, std 1)",
                    input.name
                ));
            }
            DataType::Fp64 => Values::Fp64(tables(&input, |c| {
                let (mean, std) = preprocess.channel(c);
                move |p: u8| (f64::from(p) / preprocess.scale - mean) / std
            })),
            DataType::Fp16 => Values::Fp16(tables(&input, |c| {
                let f = f32_value(preprocess, c);
                move |p: u8| f16::from_f32(f(p))
            })),
            _ => Values::Fp32(tables(&input, |c| f32_value(preprocess, c))),
        };
        Ok(ImagePipeline {
            input,
            max_pixels,
            values,
        })
    }

    pub fn input(&self) -> &ImageInput {
        &self.input
    }

    pub fn max_pixels(&self) -> u64 {
        self.max_pixels
    }

    /// Decodes PNG or JPEG bytes and makes the model's input tensor of them.
    pub fn tensor(&self, bytes: &[u8]) -> Result<Tensor, ImageError> {
        let image = decode_rgb(bytes, self.max_pixels)?;
        Ok(self.tensor_from_rgb(&image))
    }

    /// The input tensor for decoded RGB pixels: grey conversion for a one-channel model,
    /// resize to the model's fixed height/width, values, layout.
    pub fn tensor_from_rgb(&self, image: &RgbImage) -> Tensor {
        let grey;
        let (pixels, channels) = if self.input.channels == 1 {
            grey = rgb_to_grey(&image.pixels);
            (&grey[..], 1)
        } else {
            (&image.pixels[..], 3)
        };
        let height = self.input.height.unwrap_or(image.height);
        let width = self.input.width.unwrap_or(image.width);
        let resized;
        let pixels = if (height, width) != (image.height, image.width) {
            resized = resize_bilinear(pixels, image.width, image.height, channels, width, height);
            &resized[..]
        } else {
            pixels
        };
        let data = match &self.values {
            Values::Fp32(t) => TensorData::Fp32(self.arrange(pixels, |p, c| t[c][p as usize])),
            Values::Fp16(t) => TensorData::Fp16(self.arrange(pixels, |p, c| t[c][p as usize])),
            Values::Fp64(t) => TensorData::Fp64(self.arrange(pixels, |p, c| t[c][p as usize])),
            Values::Uint8 => TensorData::Uint8(self.arrange(pixels, |p, _| p)),
        };
        Tensor {
            shape: self.input.shape(height, width),
            data,
        }
    }

    /// Maps interleaved pixels to values in the input's layout.
    fn arrange<T: Copy + Default>(&self, pixels: &[u8], value: impl Fn(u8, usize) -> T) -> Vec<T> {
        let channels = self.input.channels;
        match self.input.layout {
            Layout::Nhwc => pixels
                .iter()
                .enumerate()
                .map(|(i, &p)| value(p, i % channels))
                .collect(),
            Layout::Nchw => {
                let plane = pixels.len() / channels;
                let mut out = vec![T::default(); pixels.len()];
                for (c, out_plane) in out.chunks_exact_mut(plane.max(1)).enumerate() {
                    for (o, px) in out_plane.iter_mut().zip(pixels.chunks_exact(channels)) {
                        *o = value(px[c], c);
                    }
                }
                out
            }
        }
    }
}

/// float32 all the way, as numpy with float32 arrays and torchvision compute it: the
/// division by the scale, then the mean subtracted, then the division by std.
fn f32_value(preprocess: &Preprocess, c: usize) -> impl Fn(u8) -> f32 {
    let (mean, std) = preprocess.channel(c);
    let (scale, mean, std) = (preprocess.scale as f32, mean as f32, std as f32);
    move |p: u8| (f32::from(p) / scale - mean) / std
}

fn tables<T: Copy + Default, F: Fn(u8) -> T>(
    input: &ImageInput,
    per_channel: impl Fn(usize) -> F,
) -> Vec<[T; 256]> {
    (0..input.channels)
        .map(|c| {
            let f = per_channel(c);
            let mut table = [T::default(); 256];
            for (p, v) in table.iter_mut().enumerate() {
                *v = f(p as u8);
            }
            table
        })
        .collect()
}

/// Pillow's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point,
/// `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`. A grey source comes back unchanged.
fn rgb_to_grey(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            let l = u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471;
            ((l + 0x8000) >> 16) as u8
        })
        .collect()
}

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(datatype: DataType, dims: &[&str]) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datatype,
            shape: dims
                .iter()
                .map(|d| match d.parse() {
                    Ok(n) => Dim::Fixed(n),
                    Err(_) => Dim::Symbolic(d.to_string()),
                })
                .collect(),
            map_keys: None,
        }
    }

    #[test]
    fn finds_nchw_and_nhwc_with_fixed_or_free_sizes() {
        let i = image_input(&spec(DataType::Fp32, &["1", "3", "224", "224"])).unwrap();
        assert_eq!(
            (i.layout, i.channels, i.height, i.width),
            (Layout::Nchw, 3, Some(224), Some(224))
        );
        let i = image_input(&spec(DataType::Fp32, &["N", "3", "H", "W"])).unwrap();
        assert_eq!((i.layout, i.height, i.width), (Layout::Nchw, None, None));
        let i = image_input(&spec(DataType::Uint8, &["batch", "300", "400", "3"])).unwrap();
        assert_eq!(
            (i.layout, i.channels, i.height, i.width),
            (Layout::Nhwc, 3, Some(300), Some(400))
        );
        let i = image_input(&spec(DataType::Fp16, &["1", "1", "28", "28"])).unwrap();
        assert_eq!((i.layout, i.channels), (Layout::Nchw, 1));
        let i = image_input(&spec(DataType::Fp32, &["1", "28", "28", "1"])).unwrap();
        assert_eq!((i.layout, i.channels), (Layout::Nhwc, 1));
        // Three channels decide before one: a 1-pixel-high RGB NHWC strip.
        let i = image_input(&spec(DataType::Fp32, &["1", "1", "64", "3"])).unwrap();
        assert_eq!((i.layout, i.channels, i.height), (Layout::Nhwc, 3, Some(1)));
        // Mixed: a fixed height and a free width.
        let i = image_input(&spec(DataType::Fp32, &["1", "3", "32", "w"])).unwrap();
        assert_eq!((i.height, i.width), (Some(32), None));
    }

    #[test]
    fn says_why_an_input_is_not_an_image() {
        let why = |dt, dims: &[&str]| image_input(&spec(dt, dims)).unwrap_err();
        assert_eq!(
            why(DataType::Fp32, &["batch", "64"]),
            "input 'x' FP32 [batch, 64] is not an image input: an image input has 4 \
             dimensions, [batch, channels, height, width] or [batch, height, width, channels]"
        );
        assert!(why(DataType::Int64, &["1", "3", "8", "8"]).contains("FP32, FP16, FP64 or UINT8"));
        assert!(why(DataType::Fp32, &["8", "3", "8", "8"]).contains("fixed at 8"));
        assert!(why(DataType::Fp32, &["1", "4", "8", "8"]).contains("3 or 1 channels"));
        assert!(why(DataType::Fp32, &["1", "C", "H", "W"]).contains("3 or 1 channels"));
        assert!(why(DataType::Fp32, &["1", "3", "0", "8"]).contains("height is 0"));
    }

    fn pipeline(
        dims: &[&str],
        datatype: DataType,
        pre: &Preprocess,
    ) -> Result<ImagePipeline, String> {
        ImagePipeline::new(image_input(&spec(datatype, dims)).unwrap(), pre, 1_000_000)
    }

    #[test]
    fn preprocessing_is_checked_against_the_input() {
        let rgb = ["1", "3", "4", "4"];
        assert!(pipeline(&rgb, DataType::Fp32, &Preprocess::imagenet()).is_ok());
        let two_means = Preprocess {
            mean: vec![0.5, 0.5],
            ..Preprocess::default()
        };
        let err = pipeline(&rgb, DataType::Fp32, &two_means).unwrap_err();
        assert_eq!(
            err,
            "input 'x': image mean has 2 values: give 1, or 3 (one per channel)"
        );
        let grey = ["1", "1", "4", "4"];
        assert!(pipeline(&grey, DataType::Fp32, &Preprocess::imagenet()).is_err());
        let zero_std = Preprocess {
            std: vec![0.0],
            ..Preprocess::default()
        };
        assert!(
            pipeline(&rgb, DataType::Fp32, &zero_std)
                .unwrap_err()
                .contains("0")
        );
        let bad_scale = Preprocess {
            scale: 0.0,
            ..Preprocess::default()
        };
        assert!(pipeline(&rgb, DataType::Fp32, &bad_scale).is_err());
        // UINT8 takes raw pixels: only the identity preprocessing is accepted.
        let raw = Preprocess {
            scale: Preprocess::scale_for_range(255.0),
            ..Preprocess::default()
        };
        assert!(pipeline(&rgb, DataType::Uint8, &raw).is_ok());
        let err = pipeline(&rgb, DataType::Uint8, &Preprocess::default()).unwrap_err();
        assert!(err.contains("is UINT8"), "{err}");
    }

    fn two_by_one() -> RgbImage {
        RgbImage {
            width: 2,
            height: 1,
            pixels: vec![0, 51, 255, 255, 102, 0],
        }
    }

    #[test]
    fn lays_out_nchw_and_nhwc_with_per_channel_values() {
        let pre = Preprocess {
            scale: 255.0,
            mean: vec![0.0, 0.2, 1.0],
            std: vec![1.0, 2.0, 0.5],
        };
        let nchw = pipeline(&["1", "3", "h", "w"], DataType::Fp32, &pre).unwrap();
        let t = nchw.tensor_from_rgb(&two_by_one());
        assert_eq!(t.shape, [1, 3, 1, 2]);
        let value = |p: u8, mean: f32, std: f32| (f32::from(p) / 255.0 - mean) / std;
        let expected_nchw = vec![
            value(0, 0.0, 1.0),
            value(255, 0.0, 1.0),
            value(51, 0.2, 2.0),
            value(102, 0.2, 2.0),
            value(255, 1.0, 0.5),
            value(0, 1.0, 0.5),
        ];
        assert_eq!(t.data, TensorData::Fp32(expected_nchw.clone()));

        let nhwc = pipeline(&["1", "h", "w", "3"], DataType::Fp32, &pre).unwrap();
        let t = nhwc.tensor_from_rgb(&two_by_one());
        assert_eq!(t.shape, [1, 1, 2, 3]);
        let e = &expected_nchw;
        assert_eq!(
            t.data,
            TensorData::Fp32(vec![e[0], e[2], e[4], e[1], e[3], e[5]])
        );
    }

    #[test]
    fn other_datatypes_get_their_own_values() {
        let one = ["1", "3", "h", "w"];
        let t = pipeline(
            &one,
            DataType::Uint8,
            &Preprocess {
                scale: 1.0,
                ..Default::default()
            },
        )
        .unwrap()
        .tensor_from_rgb(&two_by_one());
        assert_eq!(t.data, TensorData::Uint8(vec![0, 255, 51, 102, 255, 0]));

        let t = pipeline(&one, DataType::Fp64, &Preprocess::default())
            .unwrap()
            .tensor_from_rgb(&two_by_one());
        let TensorData::Fp64(v) = t.data else {
            panic!()
        };
        assert_eq!(v[2], 51.0 / 255.0);

        let t = pipeline(&one, DataType::Fp16, &Preprocess::default())
            .unwrap()
            .tensor_from_rgb(&two_by_one());
        let TensorData::Fp16(v) = t.data else {
            panic!()
        };
        assert_eq!(v[2], f16::from_f32(51.0 / 255.0));
        assert_eq!(v[1], f16::ONE);
    }

    #[test]
    fn grey_follows_pillows_luma() {
        // Pillow: Image.new("RGB", (1, 1), (255, 0, 0)).convert("L") is 76, green 150, blue 29.
        assert_eq!(
            rgb_to_grey(&[255, 0, 0, 0, 255, 0, 0, 0, 255, 7, 7, 7]),
            [76, 150, 29, 7]
        );
    }

    #[test]
    fn free_sizes_keep_the_image_and_fixed_ones_resize() {
        let free = pipeline(
            &["1", "3", "h", "w"],
            DataType::Fp32,
            &Preprocess::default(),
        )
        .unwrap();
        assert_eq!(free.tensor_from_rgb(&two_by_one()).shape, [1, 3, 1, 2]);
        let fixed = pipeline(
            &["1", "3", "5", "7"],
            DataType::Fp32,
            &Preprocess::default(),
        )
        .unwrap();
        let t = fixed.tensor_from_rgb(&two_by_one());
        assert_eq!(t.shape, [1, 3, 5, 7]);
        assert_eq!(t.data.len(), 3 * 5 * 7);
    }

    #[test]
    fn tensor_reports_decode_errors() {
        let p = pipeline(
            &["1", "3", "8", "8"],
            DataType::Fp32,
            &Preprocess::default(),
        )
        .unwrap();
        assert_eq!(
            p.tensor(b"not an image").unwrap_err().to_string(),
            "not a PNG or JPEG image"
        );
    }
}
