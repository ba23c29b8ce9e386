//! The embedded store: revocations kept in the process, and (with
//! `store.path`) in a small JSON file so that a restart does not forget them.
//!
//! The file is replaced whole on each change (written beside it, then
//! renamed), so a crash leaves either the old or the new list, never half.

use std::path::{Path, PathBuf};

use super::revocation::Revocation;

#[derive(serde::Serialize, serde::Deserialize)]
struct File {
    revocations: Vec<Revocation>,
}

/// Reads the list; a missing file is an empty list.
pub fn load(path: &Path) -> Result<Vec<Revocation>, String> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(bytes) => serde_json::from_slice::<File>(&bytes)
            .map(|f| f.revocations)
            .map_err(|e| format!("{} is not a revocation list: {e}", path.display())),
    }
}

/// Writes the list atomically (temporary file + rename).
pub fn save(path: &Path, entries: Vec<Revocation>) -> Result<(), String> {
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        path.with_file_name(name)
    };
    let body = serde_json::to_vec_pretty(&File {
        revocations: entries,
    })
    .map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::revocation::Rule;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("revocations.json");
        assert!(load(&p).unwrap().is_empty());
        let r = Revocation::new(Rule::Token { jti: "x".into() }, 1, 2);
        save(&p, vec![r.clone()]).unwrap();
        assert_eq!(load(&p).unwrap(), vec![r]);
        std::fs::write(&p, "nonsense").unwrap();
        assert!(load(&p).is_err());
    }
}
