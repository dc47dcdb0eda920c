//! Parsing a user's YAML file, with errors that name the file: the source
//! snippet is headed `--> controllers.yaml:6:3`, not `--> <input>:6:3`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A YAML file that does not parse, or not into the shape expected.
#[derive(Debug)]
pub struct YamlError {
    /// The file.
    path: PathBuf,
    /// What serde-saphyr found, with its line and column.
    error: Box<serde_saphyr::Error>,
}

impl YamlError {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// serde-saphyr's error, with its location.
    pub fn inner(&self) -> &serde_saphyr::Error {
        &self.error
    }
}

/// serde-saphyr's own rendering (the message and the source snippet), with
/// the file's path in the snippet's header.
impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.path.display().to_string();
        self.error.render_to(
            f,
            serde_saphyr::render_options! { source_name: Some(name.as_str()) },
        )
    }
}

/// No source: the rendering holds all of serde-saphyr's error.
impl std::error::Error for YamlError {}

/// Parses `text`, the content of the file at `path`, as one document.
pub fn from_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str(text).map_err(|error| named(path, error))
}

/// Parses `text`, the content of the file at `path`, as a stream of
/// documents (`---` between them); empty documents are skipped.
pub fn from_multiple<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Vec<T>, YamlError> {
    serde_saphyr::from_multiple(text).map_err(|error| named(path, error))
}

fn named(path: &Path, error: serde_saphyr::Error) -> YamlError {
    YamlError {
        path: path.to_owned(),
        error: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        memory: u32,
    }

    #[test]
    fn errors_are_headed_with_the_file_line_and_column() {
        let path = Path::new("deploy/controllers.yaml");
        let error = from_str::<Limits>(path, "memory: 64\nmemroy: 32\n").expect_err("typo");
        let text = error.to_string();
        assert!(text.contains("--> deploy/controllers.yaml:2:1"), "{text}");
        assert!(text.contains("unknown field `memroy`"), "{text}");
        assert!(!text.contains("<input>"), "{text}");
        assert_eq!(error.path(), path);

        let error = from_multiple::<serde_json::Value>(
            Path::new("cache/pods.yaml"),
            "a: 1\n---\nb: [unclosed\n",
        )
        .expect_err("bad second document");
        let text = error.to_string();
        assert!(text.contains("--> cache/pods.yaml:3:"), "{text}");
        assert!(!text.contains("<input>"), "{text}");
    }
}
