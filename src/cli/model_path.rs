//! Which `.onnx` file a `--model` path means.
//!
//! A file is itself. A directory may hold:
//! - exactly one `*.onnx` file (what KServe's storage initializer leaves in `/mnt/models`);
//! - Triton's model layout, `VERSION/model.onnx` (the highest numeric version is served);
//! - a Triton repository with one model, `NAME/VERSION/model.onnx`.

use crate::api::DEFAULT_VERSION;
use std::fs;
use std::path::{Path, PathBuf};

/// The file to load, and the model name and version the layout suggests (`NAME` and
/// `VERSION` in Triton's layouts, else the file stem and version "1").
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    pub file: PathBuf,
    pub name: String,
    pub version: String,
}

pub fn resolve(path: &Path) -> Result<Resolved, String> {
    let meta =
        fs::metadata(path).map_err(|e| format!("cannot open model {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(Resolved {
            file: path.to_owned(),
            name: stem(path),
            version: DEFAULT_VERSION.into(),
        });
    }
    let onnx_files = entries(path)?
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "onnx"))
        .collect::<Vec<_>>();
    match onnx_files.as_slice() {
        [one] => {
            return Ok(Resolved {
                file: one.clone(),
                name: stem(one),
                version: DEFAULT_VERSION.into(),
            });
        }
        [] => {}
        many => {
            let names: Vec<String> = many.iter().map(|p| p.display().to_string()).collect();
            return Err(format!(
                "{} holds several .onnx files ({}); pass one of them with --model",
                path.display(),
                names.join(", ")
            ));
        }
    }
    if let Some((version, file)) = latest_version(path)? {
        return Ok(Resolved {
            file,
            name: dir_name(path),
            version: version.to_string(),
        });
    }
    let models: Vec<PathBuf> = entries(path)?.into_iter().filter(|p| p.is_dir()).collect();
    if let [model_dir] = models.as_slice()
        && let Some((version, file)) = latest_version(model_dir)?
    {
        return Ok(Resolved {
            file,
            name: dir_name(model_dir),
            version: version.to_string(),
        });
    }
    Err(format!(
        "no model found in {}: expected one .onnx file, VERSION/model.onnx or NAME/VERSION/model.onnx",
        path.display()
    ))
}

/// `dir/N/model.onnx` with the highest numeric N, and that N.
fn latest_version(dir: &Path) -> Result<Option<(u64, PathBuf)>, String> {
    let best = entries(dir)?
        .into_iter()
        .filter_map(|p| {
            let version: u64 = p.file_name()?.to_str()?.parse().ok()?;
            let file = p.join("model.onnx");
            file.is_file().then_some((version, file))
        })
        .max_by_key(|(version, _)| *version);
    Ok(best)
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let read = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

fn dir_name(path: &Path) -> String {
    let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    canonical
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "onnx-serve-model-path-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    #[test]
    fn a_file_is_itself_and_names_the_model() {
        let dir = scratch("file");
        touch(&dir.join("digits.onnx"));
        let r = resolve(&dir.join("digits.onnx")).unwrap();
        assert_eq!((r.name.as_str(), r.version.as_str()), ("digits", "1"));
        assert_eq!(resolve(&dir).unwrap(), r);
    }

    #[test]
    fn triton_layouts_serve_the_highest_version() {
        let dir = scratch("triton");
        touch(&dir.join("resnet/1/model.onnx"));
        touch(&dir.join("resnet/10/model.onnx"));
        touch(&dir.join("resnet/2/model.onnx"));
        let r = resolve(&dir).unwrap();
        assert_eq!(
            (r.file, r.name.as_str(), r.version.as_str()),
            (dir.join("resnet/10/model.onnx"), "resnet", "10")
        );
        let r = resolve(&dir.join("resnet")).unwrap();
        assert_eq!(r.file, dir.join("resnet/10/model.onnx"));
    }

    #[test]
    fn ambiguous_or_empty_directories_are_refused() {
        let dir = scratch("ambiguous");
        assert!(resolve(&dir).unwrap_err().contains("no model found"));
        touch(&dir.join("a.onnx"));
        touch(&dir.join("b.onnx"));
        assert!(resolve(&dir).unwrap_err().contains("several .onnx files"));
        assert!(
            resolve(&dir.join("missing.onnx"))
                .unwrap_err()
                .contains("cannot open")
        );
    }
}
