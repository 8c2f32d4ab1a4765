//! `tunelab kernel install` / `uninstall`: the kernelspec directory `kernels/tunelab/` in a
//! Jupyter data directory, made from the template in `kernel/` (kernel.json and the logos)
//! with `argv[0]` set to the absolute path of the running `tunelab` binary.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::KernelError;

/// The kernelspec template.
const KERNEL_JSON: &str = include_str!("../../kernel/kernel.json");
/// The logos JupyterLab shows in its launcher and tabs.
const LOGOS: [(&str, &[u8]); 2] = [
    ("logo-32x32.png", include_bytes!("../../kernel/logo-32x32.png")),
    ("logo-64x64.png", include_bytes!("../../kernel/logo-64x64.png")),
];
/// The kernel's name in `jupyter kernelspec list` and in notebooks' metadata.
pub const KERNEL_NAME: &str = "tunelab";

/// Which Jupyter data directory to install into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// The user's (`$JUPYTER_DATA_DIR`, else `~/.local/share/jupyter` on Linux,
    /// `~/Library/Jupyter` on macOS, `%APPDATA%\jupyter` on Windows).
    User,
    /// The active Python environment's (`$VIRTUAL_ENV`, `$CONDA_PREFIX`, else `sys.prefix`
    /// of `python3`) `share/jupyter`.
    SysPrefix,
    /// `P/share/jupyter`.
    Path(PathBuf),
}

impl Prefix {
    /// The Jupyter data directory this prefix names.
    pub fn data_dir(&self) -> Result<PathBuf, KernelError> {
        match self {
            Prefix::User => match std::env::var_os("JUPYTER_DATA_DIR").filter(|d| !d.is_empty()) {
                Some(dir) => Ok(PathBuf::from(dir)),
                None => jupyter_zmq_client::user_data_dir().map_err(|e| {
                    KernelError::Install(format!(
                        "cannot find your Jupyter data directory ({e}); set JUPYTER_DATA_DIR or use --prefix P"
                    ))
                }),
            },
            Prefix::SysPrefix => Ok(python_prefix()?.join("share").join("jupyter")),
            Prefix::Path(p) => Ok(absolute(p)?.join("share").join("jupyter")),
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf, KernelError> {
    std::path::absolute(p).map_err(|e| KernelError::Install(format!("cannot resolve '{}': {e}", p.display())))
}

/// The prefix of the active Python environment.
fn python_prefix() -> Result<PathBuf, KernelError> {
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
    }
    let out = std::process::Command::new("python3").args(["-c", "import sys; print(sys.prefix)"]).output();
    match out {
        Ok(o) if o.status.success() => Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())),
        _ => Err(KernelError::Install(
            "cannot find the Python environment for --sys-prefix: activate it, or use --user or --prefix P"
                .into(),
        )),
    }
}

/// The kernel.json to install: the template with `argv[0]` set to `binary`.
pub fn kernel_json(binary: &Path) -> String {
    let mut spec: Value = serde_json::from_str(KERNEL_JSON).expect("kernel/kernel.json is valid JSON");
    spec["argv"][0] = Value::String(binary.display().to_string());
    serde_json::to_string_pretty(&spec).expect("plain JSON") + "\n"
}

/// Writes `kernels/tunelab/` under the data directory of `prefix`; returns that directory.
pub fn install(prefix: &Prefix) -> Result<PathBuf, KernelError> {
    let binary = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| KernelError::Install(format!("cannot find the path of the tunelab binary: {e}")))?;
    let dir = prefix.data_dir()?.join("kernels").join(KERNEL_NAME);
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|e| {
            KernelError::Install(format!(
                "cannot write '{}': {e}; check the directory is writable",
                dir.join(name).display()
            ))
        })
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        KernelError::Install(format!(
            "cannot create '{}': {e}; check the directory is writable",
            dir.display()
        ))
    })?;
    write("kernel.json", kernel_json(&binary).as_bytes())?;
    for (name, bytes) in LOGOS {
        write(name, bytes)?;
    }
    Ok(dir)
}

/// Removes `kernels/tunelab/` from the data directory of `prefix`; returns that directory.
pub fn uninstall(prefix: &Prefix) -> Result<PathBuf, KernelError> {
    let dir = prefix.data_dir()?.join("kernels").join(KERNEL_NAME);
    if !dir.join("kernel.json").exists() {
        return Err(KernelError::Install(format!(
            "no tunelab kernelspec at '{}'; `jupyter kernelspec list` shows where it is",
            dir.display()
        )));
    }
    std::fs::remove_dir_all(&dir)
        .map_err(|e| KernelError::Install(format!("cannot remove '{}': {e}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_json_runs_this_binary_with_the_connection_file() {
        let spec: Value = serde_json::from_str(&kernel_json(Path::new("/opt/bin/tunelab"))).unwrap();
        assert_eq!(
            spec["argv"],
            serde_json::json!(["/opt/bin/tunelab", "kernel", "--connection-file", "{connection_file}"])
        );
        assert_eq!(spec["display_name"], "tunelab");
        assert_eq!(spec["language"], "tunelab");
        assert_eq!(spec["interrupt_mode"], "message");
    }

    #[test]
    fn install_and_uninstall_under_a_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = Prefix::Path(tmp.path().to_path_buf());
        let dir = install(&prefix).unwrap();
        assert_eq!(dir, tmp.path().join("share/jupyter/kernels/tunelab"));
        for name in ["kernel.json", "logo-32x32.png", "logo-64x64.png"] {
            assert!(dir.join(name).is_file(), "{name}");
        }
        let png = std::fs::read(dir.join("logo-64x64.png")).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
        uninstall(&prefix).unwrap();
        assert!(!dir.exists());
        assert!(uninstall(&prefix).unwrap_err().to_string().contains("no tunelab kernelspec"));
    }
}
