//! Where `load NAME` finds a model: a local directory, then the Hugging Face cache
//! (`$HF_HOME/hub/models--org--name/snapshots/REV/`), then a download with hf-hub when
//! online (into that same cache).

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo};

use crate::error::{bail, Result};

/// Files a model directory may hold, in the order they are fetched.
const FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The directory holding model `name`: `name` itself when it is a directory, else its
/// snapshot in the Hugging Face cache, else a fresh download (unless `HF_HUB_OFFLINE` is set).
pub fn resolve(name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let cache = Cache::from_env();
    if let Some(dir) = cached(&cache, name) {
        return Ok(dir);
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v != "0" && !v.is_empty());
    let looks_like_id = !name.contains(char::is_whitespace) && !name.starts_with('.') && !name.ends_with('/');
    if offline || !looks_like_id {
        bail!(
            "no model '{name}': not a directory, and not in the Hugging Face cache ({}){}",
            cache.path().display(),
            if offline { "; HF_HUB_OFFLINE is set, so nothing is downloaded" } else { "" }
        )
    }
    download(name).map_err(|why| {
        crate::error::Error::invalid(format!(
            "no model '{name}': not a directory, not in the Hugging Face cache ({}), and the download failed ({why}); \
             copy the model directory here and `load` that path",
            cache.path().display()
        ))
    })
}

/// The snapshot directory of `name` in `cache`, if its config.json is there.
pub fn cached(cache: &Cache, name: &str) -> Option<PathBuf> {
    let config = cache.repo(Repo::model(name.to_string())).get("config.json")?;
    config.parent().map(Path::to_path_buf)
}

fn download(name: &str) -> std::result::Result<PathBuf, String> {
    let api =
        hf_hub::api::sync::ApiBuilder::from_env().with_progress(true).build().map_err(|e| e.to_string())?;
    let repo = api.model(name.to_string());
    let config = repo.get("config.json").map_err(|e| e.to_string())?;
    for file in &FILES[1..] {
        // Optional files: a model has safetensors or a .bin, tokenizer.json or vocab.txt.
        let _ = repo.get(file);
    }
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_snapshot_in_the_cache_layout() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("models--org--tiny-bert");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        let cache = Cache::new(root.path().to_path_buf());
        assert_eq!(cached(&cache, "org/tiny-bert"), Some(snap));
        assert_eq!(cached(&cache, "org/other"), None);
    }
}
