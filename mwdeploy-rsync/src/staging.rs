//! The staging tree on the deploy host: how much room a copy of it needs.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::TreePath;
use crate::error::RsyncError;

/// Disk usage (as `du` counts it: allocated blocks) of the tree under `root`, or of its
/// `subtrees`, without what anchored literal excludes (`/.git/`, `/cache/`) and `skip`
/// leave out. Other patterns are not evaluated: the size can only come out larger than
/// what rsync copies, never smaller.
pub(crate) fn tree_size(
    root: &Path,
    subtrees: Option<&[TreePath]>,
    excludes: &[String],
    skip: &[TreePath],
) -> Result<u64, RsyncError> {
    let meta = std::fs::metadata(root).map_err(|source| RsyncError::Staging {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(RsyncError::Staging {
            path: root.to_path_buf(),
            source: std::io::Error::other("not a folder"),
        });
    }
    let mut left_out: BTreeSet<String> = excludes
        .iter()
        .filter_map(|p| p.strip_prefix('/'))
        .map(|p| p.trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty() && !p.contains(['*', '?', '[', '\\']))
        .collect();
    left_out.extend(skip.iter().map(|s| s.as_str().to_string()));
    let starts: Vec<String> = match subtrees {
        None => vec![String::new()],
        Some(paths) => paths.iter().map(|p| p.as_str().to_string()).collect(),
    };
    let mut total = 0u64;
    let mut stack = starts;
    while let Some(rel) = stack.pop() {
        if left_out.contains(&rel) {
            continue;
        }
        let path = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // A subtree gone from staging is copied as gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !rel.is_empty() => continue,
            Err(source) => return Err(RsyncError::Staging { path, source }),
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|source| RsyncError::Staging {
                path: path.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| RsyncError::Staging {
                    path: path.clone(),
                    source,
                })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                stack.push(if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                });
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!(
            "mwdeploy-rsync-size-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        for (path, size) in [
            (".git/objects/pack", 40_000usize),
            ("cache/l10n/en.cdb", 30_000),
            ("includes/cache/ObjectCache.php", 20_000),
            ("images/upload.png", 50_000),
            ("index.php", 10_000),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![b'x'; size]).unwrap();
        }
        root
    }

    #[test]
    fn anchored_excludes_and_shared_folders_are_left_out_nested_caches_are_not() {
        let root = tree();
        let all = tree_size(&root, None, &[], &[]).unwrap();
        let excludes = vec!["/.git/".to_string(), "/cache/".to_string(), "*.tmp".into()];
        let images = [TreePath::new("images").unwrap()];
        let some = tree_size(&root, None, &excludes, &images).unwrap();
        // What is left: index.php and includes/cache/ObjectCache.php, plus folders.
        assert!(
            (30_000..30_000 + 10 * 4096 + 8192).contains(&some),
            "{some}"
        );
        assert!(all >= some + 120_000, "{all} vs {some}");
        let sub = tree_size(
            &root,
            Some(&[
                TreePath::new("includes").unwrap(),
                TreePath::new("gone").unwrap(),
            ]),
            &excludes,
            &[],
        )
        .unwrap();
        assert!((20_000..20_000 + 3 * 4096 + 4096).contains(&sub), "{sub}");
        assert!(matches!(
            tree_size(&root.join("nope"), None, &[], &[]),
            Err(RsyncError::Staging { .. })
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
