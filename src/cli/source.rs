//! Where the model to serve comes from: `--model` (a file or a directory), else the model
//! built into the binary, else `./model.onnx`.

use super::embedded::{self, Embedded};
use super::model_path::{self, Resolved};
use crate::api::DEFAULT_VERSION;
use crate::engine::{InputShape, LoadError, Model};
use std::path::{Path, PathBuf};

pub enum Source {
    File(Resolved),
    Embedded(&'static Embedded),
}

impl Source {
    pub fn choose(model: Option<&PathBuf>) -> Result<Source, String> {
        match (model, &embedded::MODEL) {
            (Some(path), _) => model_path::resolve(path).map(Source::File),
            (None, Some(embedded)) => Ok(Source::Embedded(embedded)),
            (None, None) => model_path::resolve(Path::new("model.onnx")).map(Source::File),
        }
    }

    /// The model name the source suggests (`--model-name` overrides it).
    pub fn name(&self) -> &str {
        match self {
            Source::File(resolved) => &resolved.name,
            Source::Embedded(embedded) => embedded.name,
        }
    }

    /// The model version the source suggests (Triton's `VERSION` directory, else "1").
    pub fn version(&self) -> String {
        match self {
            Source::File(resolved) => resolved.version.clone(),
            Source::Embedded(_) => DEFAULT_VERSION.to_owned(),
        }
    }

    /// Where the model comes from, for messages.
    pub fn origin(&self) -> String {
        match self {
            Source::File(resolved) => resolved.file.display().to_string(),
            Source::Embedded(embedded) => {
                format!("the binary (built from {})", embedded.built_from)
            }
        }
    }

    /// Loads the model, with these inputs given concrete shapes.
    pub fn load(&self, fixed: &[InputShape]) -> Result<Model, LoadError> {
        match self {
            Source::File(resolved) => Model::load_with(&resolved.file, fixed),
            Source::Embedded(embedded) => Model::load_bytes(embedded.bytes, &self.origin(), fixed),
        }
    }
}
